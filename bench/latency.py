"""Push → patched latency of webhook-driven updates, with a breakdown per hop.

Goals (issue 14), at 50 pushes/s: without verification push → patched p50 ≤ 10 ms and
p99 ≤ 50 ms; with verification (``HEADWIND_WEBHOOK_VERIFY``: a HEAD to the registry confirms
the digest) p50 ≤ 25 ms.

A whole Headwind as it ships (web, worker, operator: bench/_harness.py) runs on a minimal
testbed of its own whose registry notifies the web directly (docker-registry's notification
endpoint, as in production). ``--deployments`` opted-in Deployments (policy ``minor``, no
approval, no min-update-interval) each follow a repository of their own. The benchmark pushes
new minor tags to the testbed registry, open loop, at ``--rates`` pushes per second for
``--seconds`` each, round-robin over the Deployments; every push is a distinct manifest (its
own digest) of blobs already in the registry, so a push is one manifest PUT.

Where the time goes comes from the product's own stamps (operator_app/hops.py), not from a
profiler: the web stamps ``received``, Redis's stream ID gives ``queued``, the operator stamps
``read``, ``verified`` and ``decided``, the worker ``started`` and ``patched``. The worker logs
them per update (``HEADWIND_LOG_HOPS=true``); the benchmark's own clock gives ``push`` (the
moment the registry answered the manifest PUT; same machine, same clock). Printed per case:
push → patched p50/p90/p99, p50/p90/p99/mean per hop, and the CPU time each process (Headwind's
and the testbed's) spent per push, from /proc, with its idle rate subtracted: on a small machine
the whole chain shares the cores, and that table says who takes them.

Cases: every deployment count at every rate without verification, then the largest count at
every rate with verification (the operator restarted with ``HEADWIND_WEBHOOK_VERIFY=true``;
the Deployments carry a pull secret for the HEAD).

Run: ``.venv/bin/python bench/latency.py [--deployments 30,300 --rates 10,50 --seconds 6]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402
from _harness import (  # noqa: E402
    Cluster,
    Install,
    cpu_seconds,
    migrate,
    own_testbed,
    percentile,
    production_env,
    stop_testbed,
    wait_log,
    wait_web_ready,
    wait_worker_ready,
)

from tests.testbed import cluster  # noqa: E402
from tests.testbed.registry import OCI_MANIFEST, RegistryPusher  # noqa: E402

NAMESPACE = "bench-latency"
REPOSITORY = "bench-latency/app-{index}"
STREAM, GROUP = "headwind:image-events", "headwind-operator"  # operator_app/eventqueue.py
#: In the order an update passes them (operator_app/hops.py), after the benchmark's own push.
STAMPS = ("push", "received", "queued", "read", "verified", "decided", "started", "patched")
HOP_NAMES = {"received": "push → received", "queued": "received → queued",
             "read": "queued → read", "verified": "read → verified",
             "decided": "verified → decided", "started": "decided → task started",
             "patched": "task started → patched"}
ANNOTATIONS = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false",
               "headwind.sh/min-update-interval": "0"}


# --- the registry side ---------------------------------------------------------------------------


class Pushes:
    """Tags pushed as single manifest PUTs (the blobs are there), one pusher per thread."""

    def __init__(self, state: cluster.TestbedState) -> None:
        self.state = state
        self.local = threading.local()
        self.manifests: dict[str, dict] = {}
        self.next_minor: dict[str, int] = {}

    def pusher(self) -> RegistryPusher:
        if not hasattr(self.local, "pusher"):
            self.local.pusher = RegistryPusher(self.state.registry, self.state.registry_user,
                                               self.state.registry_password)
        return self.local.pusher

    def base(self, repository: str) -> None:
        """Push ``1.0.0`` (layer, config, manifest) and keep its manifest to re-tag."""
        pusher = self.pusher()
        pusher.push_image(repository, "1.0.0", f"bench {repository}")
        response = pusher._request("GET", f"{pusher.base}/v2/{repository}/manifests/1.0.0",
                                   f"repository:{repository}:pull",
                                   headers={"Accept": OCI_MANIFEST})
        response.raise_for_status()
        self.manifests[repository] = response.json()
        self.next_minor[repository] = 1

    def tag(self, repository: str) -> str:
        """The next minor version of ``repository`` (not thread-safe: called by the pacer)."""
        minor = self.next_minor[repository]
        self.next_minor[repository] = minor + 1
        return f"1.{minor}.0"

    def push(self, repository: str, tag: str) -> tuple[float, float]:
        """PUT a manifest of its own (an annotation makes the digest unique) under ``tag``;
        returns (sent, answered) as ``time.time()``."""
        manifest = dict(self.manifests[repository],
                        annotations={"org.opencontainers.image.version": tag})
        body = json.dumps(manifest, separators=(",", ":")).encode()
        pusher = self.pusher()
        sent = time.time()
        response = pusher._request("PUT", f"{pusher.base}/v2/{repository}/manifests/{tag}",
                                   f"repository:{repository}:pull,push", data=body,
                                   headers={"Content-Type": OCI_MANIFEST})
        answered = time.time()
        response.raise_for_status()
        return sent, answered


# --- the cluster side ----------------------------------------------------------------------------


def pull_secret(state: cluster.TestbedState) -> dict:
    auth = base64.b64encode(f"{state.registry_user}:{state.registry_password}".encode()).decode()
    document = {"auths": {state.registry: {"username": state.registry_user,
                                           "password": state.registry_password, "auth": auth}}}
    return {"metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(document).encode()).decode()}}


def deployment(state: cluster.TestbedState, index: int) -> dict:
    name = f"app-{index}"
    image = f"{state.registry}/{REPOSITORY.format(index=index)}:1.0.0"
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "annotations": ANNOTATIONS},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "imagePullSecrets": [{"name": "regcred"}],
                         "containers": [{"name": "app", "image": image}]}}}}


# --- what the product recorded -----------------------------------------------------------------


class HopLog:
    """``update hops {json}`` lines of the worker's log, by the image each update moved to."""

    MARK = " update hops "

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.by_image: dict[str, dict[str, float]] = {}

    def read(self) -> dict[str, dict[str, float]]:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            _, found, rest = line.partition(self.MARK)
            if found:
                record = json.loads(rest)
                image = record["update"].rsplit(" → ", 1)[-1]
                self.by_image[image] = record["stamps"]
        return self.by_image


def wait_drained(client: redis.Redis, timeout: float = 60) -> None:
    """Every entry of the event stream read and acknowledged by the operator."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            groups = {g["name"].decode(): g for g in client.xinfo_groups(STREAM)}
        except redis.ResponseError:
            groups = {}
        group = groups.get(GROUP)
        if group and group["pending"] == 0 and group.get("lag", 1) == 0:
            return
        time.sleep(0.1)
    raise SystemExit("the event stream did not drain")


# --- one case ----------------------------------------------------------------------------------


def idle_cpu(pids: dict[str, int], seconds: float = 3.0) -> dict[str, float]:
    """CPU seconds per second each process spends with nothing pushed (watches, leases,
    heartbeats): subtracted from a case's CPU, so what is left is what the pushes cost."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}


def run_case(label: str, pushes: Pushes, hop_log: HopLog, registry: str, deployments: int,
             rate: float, seconds: float, pids: dict[str, int], threads: int = 8,
             idle: dict[str, float] | None = None) -> dict:
    """Push at ``rate``/s for ``seconds`` over the first ``deployments`` repositories and wait
    for every update's hop line; returns the per-update stamps."""
    count = max(1, int(rate * seconds))
    plan = []
    for n in range(count):
        repository = REPOSITORY.format(index=n % deployments)
        plan.append((repository, pushes.tag(repository)))
    done: dict[str, tuple[float, float]] = {}
    errors = []
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu_started = time.monotonic()
    began = time.time() + 0.2

    def one(n: int) -> None:
        repository, tag = plan[n]
        delay = began + n / rate - time.time()
        if delay > 0:
            time.sleep(delay)  # the pacer's schedule: open loop
        try:
            done[f"{registry}/{repository}:{tag}"] = pushes.push(repository, tag)
        except Exception as exc:  # noqa: BLE001 - counted and printed
            errors.append(f"{repository}:{tag}: {exc}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    behind = max(answered for _sent, answered in done.values()) - (began + (count - 1) / rate)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = hop_log.read()
        if all(image in seen for image in done):
            break
        time.sleep(0.2)
    seen = hop_log.read()
    elapsed = time.monotonic() - cpu_started
    cpu = {name: max(0.0, cpu_seconds(pid) - cpu_before[name]
                     - (idle or {}).get(name, 0.0) * elapsed) * 1000 / max(len(done), 1)
           for name, pid in pids.items()}
    updates = []
    for image, (sent, answered) in done.items():
        stamps = seen.get(image)
        if stamps is not None:
            updates.append({"push": answered, "sent": sent, **stamps})
    missing = len(done) - len(updates)
    print(f"  {label}: {len(done)} pushes in {seconds:.0f}s (pacer at most {max(behind, 0):.2f}s "
          f"late), {len(updates)} patched, {missing} not patched within 60 s, "
          f"{len(errors)} push errors", flush=True)
    for error in errors[:3]:
        print(f"    push error: {error}")
    return {"label": label, "deployments": deployments, "rate": rate, "pushes": len(done),
            "patched": len(updates), "missing": missing, "push_errors": len(errors),
            "updates": updates, "cpu_ms_per_push": cpu}


def summarise(case: dict) -> dict:
    """Milliseconds: push → patched and each hop, p50/p90/p99/mean."""
    rows: dict[str, list[float]] = {"push → patched": [], "received → patched": []}
    for name in HOP_NAMES.values():
        rows[name] = []
    for stamps in case["updates"]:
        rows["push → patched"].append((stamps["patched"] - stamps["push"]) * 1000)
        rows["received → patched"].append((stamps["patched"] - stamps["received"]) * 1000)
        previous = "push"
        for name in STAMPS[1:]:
            if name not in stamps:
                continue
            rows[HOP_NAMES[name]].append((stamps[name] - stamps[previous]) * 1000)
            previous = name
    return {name: {"p50": percentile(values, 0.5), "p90": percentile(values, 0.9),
                   "p99": percentile(values, 0.99),
                   "mean": statistics.fmean(values) if values else float("nan"),
                   "samples": values}
            for name, values in rows.items() if values}


def print_case(case: dict, summary: dict) -> None:
    print(f"\n{case['label']}: {case['patched']} updates")
    print(f"  {'':26} {'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8}  (ms)")
    for name, row in summary.items():
        print(f"  {name:26} {row['p50']:8.2f} {row['p90']:8.2f} {row['p99']:8.2f} "
              f"{row['mean']:8.2f}")
    cpu = case["cpu_ms_per_push"]
    print(f"  CPU per push, idle subtracted (ms): {sum(cpu.values()):.1f} in all: " + ", ".join(
        f"{name} {value:.1f}" for name, value in sorted(cpu.items(), key=lambda kv: -kv[1])))


# --- the run -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", default="30,300",
                        help="comma-separated Deployment counts, ascending")
    parser.add_argument("--rates", default="10,50", help="comma-separated pushes per second")
    parser.add_argument("--seconds", type=float, default=6.0, help="of pushing per case")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the case with HEADWIND_WEBHOOK_VERIFY=true")
    parser.add_argument("--keep", action="store_true", help="leave the work directory")
    args = parser.parse_args()
    counts = sorted(int(n) for n in args.deployments.split(","))
    rates = [float(r) for r in args.rates.split(",")]

    work = Path(tempfile.mkdtemp(prefix="headwind-bench-latency-"))
    print(f"work directory {work}", flush=True)
    port = cluster.free_port()
    state = own_testbed(work / "testbed", [f"http://127.0.0.1:{port}/webhook/registry"])
    install = None
    try:
        env = production_env(state, work, HEADWIND_WEBHOOK_REGISTRY_TOKEN=state.notify_token,
                             HEADWIND_WEBHOOK_VERIFY="false", HEADWIND_LOG_HOPS="true")
        migrate(env)
        install = Install(env, work / "logs", port)
        for name, command in install.commands.items():
            print(f"{name}: {' '.join(command)}", flush=True)
        install.start()
        wait_web_ready(install["web"], install.base)
        wait_worker_ready(install["worker"])
        wait_log(install["operator"], "operator running as")
        return run(args, state, install, counts, rates)
    finally:
        if install is not None:
            install.stop()
        stop_testbed(work / "testbed")
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def run(args, state: cluster.TestbedState, install: Install, counts: list[int],
        rates: list[float]) -> int:
    kube = Cluster(state)
    kube.namespace(NAMESPACE)
    kube.post(f"/api/v1/namespaces/{NAMESPACE}/secrets", pull_secret(state))
    pushes = Pushes(state)
    hop_log = HopLog(install["worker"].log_path)
    stream = redis.Redis.from_url(state.redis_url)
    cases: list[dict] = []
    created = 0

    def pids() -> dict[str, int]:
        """Every process whose CPU time a push costs: Headwind's and the testbed's."""
        found = {name: proc.popen.pid for name, proc in install.procs.items()}
        for component in state.components:
            found[component.name] = component.pid
        return found

    try:
        for count in counts:
            began = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: pushes.base(REPOSITORY.format(index=i)),
                              range(created, count)))
            seconds = kube.create_all(
                (f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", deployment(state, i))
                for i in range(created, count))
            created = count
            print(f"{count} Deployments and repositories ready "
                  f"({time.perf_counter() - began:.1f}s, of which creating {seconds:.1f}s)",
                  flush=True)
            wait_drained(stream)
            # Warm-up, not counted: connections, caches, the first task.
            run_case("warm-up", pushes, hop_log, state.registry, count, 5, 1, pids())
            wait_drained(stream)
            idle = idle_cpu(pids())
            for rate in rates:
                cases.append(run_case(f"{count} Deployments, {rate:g}/s", pushes, hop_log,
                                      state.registry, count, rate, args.seconds, pids(),
                                      idle=idle))
                wait_drained(stream)
        if not args.no_verify:
            operator = install["operator"]
            operator.stop()
            operator.log_path = operator.log_path.with_name("operator-verifying.log")
            operator.env = dict(operator.env, HEADWIND_WEBHOOK_VERIFY="true")
            operator.start()
            wait_log(operator, "operator running as")
            wait_drained(stream)
            run_case("warm-up (verifying)", pushes, hop_log, state.registry, counts[-1], 5, 1,
                     pids())
            wait_drained(stream)
            idle = idle_cpu(pids())
            for rate in rates:
                cases.append(run_case(f"{counts[-1]} Deployments, {rate:g}/s, verified",
                                      pushes, hop_log, state.registry, counts[-1], rate,
                                      args.seconds, pids(), idle=idle))
                wait_drained(stream)
    finally:
        stream.close()
    return report(cases, counts, rates)


def report(cases: list[dict], counts: list[int], rates: list[float]) -> int:
    summaries = {case["label"]: summarise(case) for case in cases}
    for case in cases:
        print_case(case, summaries[case["label"]])
    top = max(rates)
    plain = [c for c in cases if c["rate"] == top and not c["label"].endswith("verified")]
    verified = [c for c in cases if c["rate"] == top and c["label"].endswith("verified")]

    def worst(rows: list[dict], quantile: str) -> float:
        values = [summaries[c["label"]].get("push → patched", {}).get(quantile, float("nan"))
                  for c in rows]
        return max(values) if values else float("nan")

    lost = sum(c["missing"] + c["push_errors"] for c in cases)
    verdicts = {f"push → patched p50 ≤ 10 ms at {top:g}/s": worst(plain, "p50") <= 10,
                f"push → patched p99 ≤ 50 ms at {top:g}/s": worst(plain, "p99") <= 50}
    if verified:
        verdicts[f"verified push → patched p50 ≤ 25 ms at {top:g}/s"] = \
            worst(verified, "p50") <= 25
    verdicts["every push patched"] = lost == 0
    print()
    for goal, met in verdicts.items():
        print(f"{goal}: {'met' if met else 'MISSED'}")

    figures: dict = {"lost_or_failed_pushes": lost}
    for case in cases:
        key = case["label"].replace(" Deployments, ", "d_").replace("/s", "ps").replace(
            ", verified", "_verified")
        summary = summaries[case["label"]]
        figures[f"{key}_updates"] = case["patched"]
        figures[f"{key}_cpu_ms_per_push"] = round(sum(case["cpu_ms_per_push"].values()), 1)
        for quantile in ("p50", "p90", "p99"):
            if "push → patched" in summary:
                figures[f"{key}_{quantile}_ms"] = round(summary["push → patched"][quantile], 2)
        for hop in HOP_NAMES.values():
            if hop in summary:
                figures[f"{key}_{hop.replace(' → ', '_to_').replace(' ', '_')}_p50_ms"] = \
                    round(summary[hop]["p50"], 2)
    goals = {}
    for case in plain:
        key = case["label"].replace(" Deployments, ", "d_").replace("/s", "ps")
        goals[f"{key}_p50_ms"], goals[f"{key}_p99_ms"] = "≤ 10", "≤ 50"
    for case in verified:
        key = case["label"].replace(" Deployments, ", "d_").replace("/s", "ps").replace(
            ", verified", "_verified")
        goals[f"{key}_p50_ms"] = "≤ 25"
    charts = [
        _results.distribution("Push → patched (ms)", {
            c["label"].replace(" Deployments", " deploy."): summaries[c["label"]].get(
                "push → patched", {}).get("samples", []) for c in cases}, "ms", log=True,
            goal=10),
        _results.bars("Mean per hop, stacked (ms)", {
            c["label"].replace(" Deployments", " deploy."): {
                hop.split(" → ")[-1]: summaries[c["label"]][hop]["mean"]
                for hop in HOP_NAMES.values() if hop in summaries[c["label"]]}
            for c in cases}, "ms", stacked=True),
        _results.bars("CPU per push by process, idle subtracted, stacked (ms)", {
            c["label"].replace(" Deployments", " deploy."): {
                name: value for name, value in c["cpu_ms_per_push"].items() if value >= 0.05}
            for c in cases}, "ms", stacked=True),
    ]
    _results.save("latency", figures, charts, goals=goals,
                  notes="push = the registry answered the manifest PUT (the benchmark's clock); "
                        "every other stamp recorded by Headwind (operator_app/hops.py); "
                        "web, worker and operator as deploy/manifests ships them")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
