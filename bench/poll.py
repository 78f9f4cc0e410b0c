"""Requests per poll cycle: 1,000 workloads on 100 repositories of the testbed registry.

Needs a running testbed (``python -m tests.testbed up``; the env file is read from
``$HEADWIND_TESTBED_DIR`` or ``/tmp/headwind-testbed/env.sh`` when the variables are not set).
One tag is pushed per repository, one pull Secret is created in a bench namespace, and the
workloads are cache projections (a third each on minor, patch and digest policy, so every
repository has workloads that need a digest). Nothing new is pushed, so every cycle should find
nothing. Every HTTP request is counted with a ``requests`` response hook, by kind.

Run: ``.venv/bin/python bench/poll.py [--workloads 1000 --repositories 100 --cycles 3 --token]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "headwind_site.settings")
os.environ.setdefault("HEADWIND_DEV", "true")
# The tag book records every listing: a throwaway SQLite database, migrated below.
os.environ.setdefault("DATABASE_URL", "sqlite:///" + str(
    Path(tempfile.mkdtemp(prefix="headwind-bench-poll-")) / "db.sqlite3"))


def _load_testbed_env() -> None:
    if os.environ.get("HEADWIND_TESTBED_REGISTRY"):
        return
    directory = Path(os.environ.get("HEADWIND_TESTBED_DIR", "/tmp/headwind-testbed"))
    env_file = directory / "env.sh"
    if not env_file.exists():
        sys.exit(f"no testbed env in {env_file}: run `python -m tests.testbed up` first")
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            os.environ[key] = value.strip("'")


_load_testbed_env()

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)

import requests  # noqa: E402
from kubernetes import config  # noqa: E402

from operator_app import kube  # noqa: E402
from operator_app.cache import WorkloadCache  # noqa: E402
from operator_app.engine import Engine  # noqa: E402
from operator_app.workloads import ContainerImage, WorkloadProjection  # noqa: E402
from registry.poller import Poller  # noqa: E402
from tests.testbed.registry import RegistryPusher  # noqa: E402

NAMESPACE = "headwind-bench-poll"
POLICIES = ("minor", "patch", "digest")


class CountingDispatcher:
    def __init__(self) -> None:
        self.plans = 0

    def propose(self, plan) -> None:
        self.plans += 1

    def apply(self, plan) -> None:
        self.plans += 1


class HttpCounter:
    """Session factory whose sessions count every response by request kind."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self) -> requests.Session:
        session = requests.Session()
        session.hooks["response"].append(self.record)
        return session

    def record(self, response, *args, **kwargs) -> None:
        method = response.request.method
        path = urlsplit(response.request.url).path
        if path.endswith("/tags/list"):
            kind = "tag lists"
        elif "/manifests/" in path:
            kind = "manifest HEADs" if method == "HEAD" else "manifest GETs"
        elif response.request.url.find("/v2/") == -1:
            kind = "token requests"
        else:
            kind = f"other {method}"
        with self.lock:
            self.counts[kind] += 1
            if response.status_code == 401:
                self.counts["401 challenges"] += 1

    def take(self) -> Counter:
        with self.lock:
            counts, self.counts = self.counts, Counter()
        return counts


def ensure_secret(api, registry: str, user: str, password: str) -> None:
    try:
        kube.request(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
    except kube.KubeError as exc:
        if exc.status != 409:
            raise
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    document = {"auths": {registry: {"username": user, "password": password, "auth": auth}}}
    body = {"metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(document).encode()).decode()}}
    try:
        kube.request(api, "POST", f"/api/v1/namespaces/{NAMESPACE}/secrets", body=body)
    except kube.KubeError as exc:
        if exc.status != 409:
            raise
        kube.request(api, "PUT", f"/api/v1/namespaces/{NAMESPACE}/secrets/regcred",
                     body={**body, "apiVersion": "v1", "kind": "Secret"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--repositories", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="per registry host")
    parser.add_argument("--token", action="store_true", help="use the bearer-token registry")
    args = parser.parse_args()

    registry = os.environ["HEADWIND_TESTBED_TOKEN_REGISTRY" if args.token
                          else "HEADWIND_TESTBED_REGISTRY"]
    user = os.environ["HEADWIND_TESTBED_REGISTRY_USER"]
    password = os.environ["HEADWIND_TESTBED_REGISTRY_PASSWORD"]
    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    ensure_secret(api, registry, user, password)

    started = time.perf_counter()
    pusher = RegistryPusher(registry, user, password)
    digests = [pusher.push_image(f"bench-poll/repo-{index:03d}", "1.0.0", f"bench {index}")
               for index in range(args.repositories)]
    print(f"pushed {args.repositories} repositories in {time.perf_counter() - started:.1f}s")

    cache = WorkloadCache()
    for index in range(args.workloads):
        repo_index = index % args.repositories
        policy = POLICIES[(index // args.repositories) % len(POLICIES)]
        image = f"{registry}/bench-poll/repo-{repo_index:03d}:1.0.0"
        if policy == "digest":
            image += f"@{digests[repo_index]}"
        cache.upsert(WorkloadProjection(
            "Deployment", NAMESPACE, f"svc-{index}", f"uid-{index}", "1",
            (("headwind.sh/policy", policy),), (ContainerImage("app", image),), ("regcred",)))

    dispatcher = CountingDispatcher()
    clock_now = [0.0]
    http = HttpCounter()
    poller = Poller(api, cache, Engine(cache, dispatcher), interval=300, jitter=0,
                    max_concurrency_per_registry=args.concurrency, clock=lambda: clock_now[0],
                    session_factory=http)
    print(f"{args.workloads} workloads on {args.repositories} repositories of {registry} "
          f"({'bearer' if args.token else 'basic'} auth), {args.concurrency} requests at a time")
    header = ("cycle", "tag lists", "manifest HEADs", "manifest GETs", "token requests",
              "401 challenges", "seconds", "plans", "k8s reads")
    print(" | ".join(header))
    reads = 0
    cycles = {}
    try:
        for cycle in range(1, args.cycles + 1):
            report = poller.run_once()
            counts = http.take()
            cycles[f"cycle {cycle}"] = {kind: counts[kind] for kind in header[1:6]}
            cycles[f"cycle {cycle}"]["seconds"] = report.seconds
            store_reads = poller.credentials.api_reads
            print(" | ".join(str(x) for x in (
                cycle, counts["tag lists"], counts["manifest HEADs"], counts["manifest GETs"],
                counts["token requests"], counts["401 challenges"], f"{report.seconds:.2f}",
                len(report.plans), store_reads - reads)))
            reads = store_reads
            if report.errors:
                print("errors:", *report.errors[:5], sep="\n  ")
            clock_now[0] += 301  # everything is due again
        radar = radar_cost(cache)
        for label, value in radar.items():
            print(f"{label}: {value}")
    finally:
        poller.close()
        api.close()
    from _results import bars, save  # bench/_results.py: figures for make bench

    save("poll", {"workloads": args.workloads, "repositories": args.repositories, **radar,
                  **{f"{cycle} {kind}": value for cycle, row in cycles.items()
                     for kind, value in row.items()}},
         [bars(f"Requests per poll cycle ({args.workloads:,} workloads, "
               f"{args.repositories} repositories)",
               {cycle: {k: v for k, v in row.items() if k != "seconds"}
                for cycle, row in cycles.items()}, "requests"),
          bars("Seconds per cycle", {cycle: row["seconds"] for cycle, row in cycles.items()},
               "s")])


def radar_cost(cache: WorkloadCache) -> dict:
    """What the update radar adds to polling: it reads the tag book the cycles above filled, so
    a pass over every workload must make no registry request (every HTTP request this process
    sends is counted while it runs)."""
    import requests.adapters

    from headwind_site.inventory import Inventory
    from registry.models import SeenTag

    sent = [0]
    send = requests.adapters.HTTPAdapter.send

    def counting(self, *args, **kwargs):
        sent[0] += 1
        return send(self, *args, **kwargs)

    inventory = Inventory(cache, threading.Event(), lambda: True, lambda event: None)
    inventory.reconcile()
    requests.adapters.HTTPAdapter.send = counting
    try:
        started = time.perf_counter()
        surveyed = inventory.radar_pass()
        seconds = time.perf_counter() - started
    finally:
        requests.adapters.HTTPAdapter.send = send
    return {"radar: slots surveyed": surveyed, "radar: seconds per pass": round(seconds, 3),
            "radar: HTTP requests": sent[0], "tag book: tags recorded": SeenTag.objects.count()}


if __name__ == "__main__":
    main()
