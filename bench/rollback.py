"""Time from a rollout's failure signal to Headwind's rollback patch (goal: under 2 s).

On the testbed (kube-apiserver, kube-controller-manager, kwok), with a whole Headwind running
as real processes (``run_operator`` leading, one Celery worker; tests/testbed/installation.py),
each round:

1. creates a Deployment at ``1.0.0`` with ``headwind.sh/auto-rollback: "true"`` and a progress
   deadline of ``--deadline`` seconds, and waits until it is available;
2. queues an update to ``1.1.0-broken`` (pods that never become Ready);
3. watches the Deployment: **t0** is when the watch shows the ``Progressing`` condition with
   reason ``ProgressDeadlineExceeded`` (the controller's failure signal), **t1** when it shows
   the template back at ``1.0.0`` (Headwind's rollback patch, through the Celery task).

The benchmark's own watch and the operator's see the same events, so t1 - t0 is Headwind's
reaction: the informer event, the check, the ``rollingBack`` mark, the queue, the worker's
guarded patch. Printed: every round, then p50/p95/max.

Run: ``.venv/bin/python bench/rollback.py [--rounds 10] [--deadline 3]``. Uses a running
testbed (``make testbed-up``) when ``HEADWIND_TESTBED_DIR`` (default /tmp/headwind-testbed)
holds one, else starts its own and stops it at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.testbed import cluster  # noqa: E402
from tests.testbed.installation import Installation  # noqa: E402

IMAGE = "reg.example/bench/app"


def testbed_state(work: Path) -> tuple[cluster.TestbedState, bool]:
    """A running testbed's state, or a new one (True: ours to stop)."""
    directory = cluster.DEFAULT_STATE_DIR
    try:
        state = cluster.TestbedState.load(directory)
        if not cluster.crashed(directory):
            return state, False
    except (FileNotFoundError, OSError, ValueError):
        pass
    return cluster.Testbed(work / "testbed").up(), True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--deadline", type=int, default=3,
                        help="the Deployments' progressDeadlineSeconds")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="headwind-bench-rollback-"))
    state, owned = testbed_state(work)
    db_path = str(work / "headwind.sqlite3")
    installation = Installation(state, work / "installation", db_path=db_path, redis_db=14,
                                operators=1, workers=1, verify=False)
    os.environ.update(installation.env())
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_ROOT,
                   env=installation.env(), check=True)

    import django

    django.setup()
    from kubernetes import config

    from operator_app import kube
    from operator_app.apply import UpdateCommand
    from operator_app.tasks import queue_update
    from operator_app.workloads import DEPLOYMENT

    installation.start()
    api = config.new_client_from_config(config_file=state.kubeconfig)
    namespace = f"bench-rollback-{uuid.uuid4().hex[:6]}"
    kube.request(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    seen: dict[str, dict[str, float]] = {}
    stop = threading.Event()

    def watch() -> None:
        watcher_api = config.new_client_from_config(config_file=state.kubeconfig)
        query = {"watch": "true", "timeoutSeconds": 600}
        for event in kube.stream(watcher_api, DEPLOYMENT.collection_path(namespace), query,
                                 read_timeout=630):
            now = time.perf_counter()
            obj = event.get("object") or {}
            name = (obj.get("metadata") or {}).get("name")
            if not name:
                continue
            times = seen.setdefault(name, {})
            conditions = (obj.get("status") or {}).get("conditions") or []
            if any(c.get("reason") == "ProgressDeadlineExceeded" for c in conditions):
                times.setdefault("deadline", now)
            image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
            if image.endswith("-broken"):
                times.setdefault("broken", now)
            elif "broken" in times and image == f"{IMAGE}:1.0.0":
                times.setdefault("rolled_back", now)
            if stop.is_set():
                return

    threading.Thread(target=watch, daemon=True).start()
    annotations = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false",
                   "headwind.sh/min-update-interval": "0", "headwind.sh/auto-rollback": "true"}
    results = []
    try:
        for round_ in range(args.rounds):
            name = f"app-{round_}"
            kube.request(api, "POST", DEPLOYMENT.collection_path(namespace), body={
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"replicas": 1, "progressDeadlineSeconds": args.deadline,
                         "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {
                             "containers": [{"name": "app", "image": f"{IMAGE}:1.0.0"}]}}}})
            _wait(lambda name=name: (kube.request(
                api, "GET", DEPLOYMENT.object_path(namespace, name)).get("status") or {}
            ).get("availableReplicas") == 1, 60)
            queue_update(UpdateCommand(kind="Deployment", namespace=namespace, name=name,
                                       container="app", new_image=f"{IMAGE}:1.1.0-broken",
                                       expected_image=f"{IMAGE}:1.0.0"))
            _wait(lambda name=name: "rolled_back" in seen.get(name, {}), args.deadline + 60)
            times = seen[name]
            elapsed = times["rolled_back"] - times["deadline"]
            results.append(elapsed)
            print(f"round {round_ + 1}: deadline exceeded → rolled back in "
                  f"{elapsed * 1000:.0f} ms", flush=True)
    finally:
        stop.set()
        installation.stop()
        try:
            kube.request(api, "DELETE", f"/api/v1/namespaces/{namespace}")
        except kube.KubeError:
            pass
        api.close()
        if owned:
            cluster.stop(work / "testbed")
    results.sort()
    p95 = results[min(len(results) - 1, int(round(0.95 * (len(results) - 1))))]
    print(f"ProgressDeadlineExceeded → rollback patch over {len(results)} rounds: "
          f"p50 {statistics.median(results) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
          f"max {results[-1] * 1000:.0f} ms (goal: under 2000 ms)")
    from _results import distribution, save  # bench/_results.py: figures for make bench

    save("rollback", {"rounds": len(results), "p50_ms": round(statistics.median(results) * 1000),
                      "p95_ms": round(p95 * 1000), "max_ms": round(results[-1] * 1000)},
         [distribution("ProgressDeadlineExceeded → rollback patch (ms)",
                       {f"{len(results)} rounds": [r * 1000 for r in results]}, "ms",
                       goal=2000)], goals={"p95_ms": "< 2000"})


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting; see the installation's logs")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
