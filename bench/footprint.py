"""Footprint and start-up of a whole Headwind (web, worker, operator) on the testbed.

Goals (issue 14): the whole install ≤ 250 MiB PSS at idle with 1,000 opted-in Deployments; the
operator ≤ 150 MB RSS with 10,000; web ready (``/healthz`` and ``/readyz`` answering) ≤ 1 s after
start; the operator's caches synced ≤ 10 s after start with 10,000.

What runs is what ships: the three commands and the ConfigMap of ``deploy/manifests/`` (``python``
is this virtualenv's, the web binds 127.0.0.1 on a free port, the metrics listeners get free
ports), in production mode (a ``SECRET_KEY``, no ``HEADWIND_DEV``), on the testbed's PostgreSQL
and Redis. The testbed is a minimal one of its own (etcd, kube-apiserver, registries, Redis,
PostgreSQL; no controller-manager, so 10,000 Deployments stay objects and run no pods).

1. 1,000 opted-in Deployments (50 namespaces, two containers and an init container each, as in
   ``bench/fanout.py``) are created; the database is migrated.
2. web, worker and operator start together. Web ready: from spawn until ``/healthz`` and
   ``/readyz`` both answer 200. Caches synced: from spawn until the operator logs every workload
   kind listed (``<Kind>: N opted-in workloads listed``), timed by the log line's own clock.
3. At idle (``--settle`` seconds after all are ready): PSS and RSS of every process and its
   children, from ``/proc/<pid>/smaps_rollup`` (PSS divides shared pages among the processes
   sharing them, so the total is what the install really costs). Three samples, the median.
4. The web process once more after its first requests (login page, a webhook, ``/metrics``):
   what lazy imports defer shows up there.
5. The web is restarted ``--web-starts`` times for more ready-time samples.
6. 9,000 more Deployments; the operator is started again ``--operator-starts`` times: caches
   synced and RSS/PSS at idle with 10,000.

Run: ``.venv/bin/python bench/footprint.py [--workloads 1000 --large 10000]``.
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402
from _harness import (  # noqa: E402
    MIB,
    Cluster,
    Proc,
    opted_in_deployment,
    production_env,
    shipped_commands,
    tree_memory,
    wait_web_ready,
    wait_worker_ready,
)

from tests.testbed import cluster  # noqa: E402

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "HelmRelease")
LISTED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ (\w+): (\d+) opted-in "
                    r"workloads listed", re.M)


def create_workloads(kube: Cluster, start: int, stop: int, namespaces: int = 50) -> float:
    """Deployments ``start`` … ``stop - 1`` over ``namespaces`` namespaces; seconds taken."""
    for index in range(namespaces):
        kube.namespace(f"team-{index}")
    return kube.create_all((f"/apis/apps/v1/namespaces/team-{i % namespaces}/deployments",
                            opted_in_deployment(i)) for i in range(start, stop))


# --- the cluster's workloads -----------------------------------------------------------------


def wait_synced(operator: Proc, workloads: int, timeout: float = 120) -> float:
    """Seconds from spawn until every workload kind was listed, by the log lines' own times."""
    deadline = time.monotonic() + timeout
    while True:
        operator.check()
        listed = {}
        for stamp, kind, count in LISTED.findall(operator.log()):
            listed.setdefault(kind, (stamp, int(count)))
        done = (listed.get("Deployment", ("", -1))[1] == workloads
                and all(kind in listed for kind in WORKLOAD_KINDS if kind != "HelmRelease"))
        if done:
            last = max(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                       for stamp, _ in listed.values())
            return last - operator.spawned
        if time.monotonic() > deadline:
            raise SystemExit(f"caches not synced after {timeout}s:\n{operator.log()[-3000:]}")
        time.sleep(0.05)


def sample(procs: list[Proc], samples: int = 3) -> dict[str, dict]:
    """Median of ``samples`` readings, one second apart, per process tree."""
    readings: dict[str, list[dict]] = {proc.name: [] for proc in procs}
    for index in range(samples):
        for proc in procs:
            proc.check()
            readings[proc.name].append(tree_memory(proc.popen.pid))
        if index < samples - 1:
            time.sleep(1)
    return {name: {"pss": statistics.median(r["pss"] for r in rows),
                   "rss": statistics.median(r["rss"] for r in rows),
                   "processes": rows[-1]["processes"]} for name, rows in readings.items()}


# --- the run -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds of idle before memory is read")
    parser.add_argument("--web-starts", type=int, default=5)
    parser.add_argument("--operator-starts", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the work directory")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for all three processes, to try a setting "
                             "(e.g. MALLOC_ARENA_MAX=2); repeatable")
    parser.add_argument("--no-save", action="store_true", help="print only (comparisons)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="headwind-bench-footprint-"))
    print(f"work directory {work}", flush=True)
    started = time.perf_counter()
    state = cluster.Testbed(work / "testbed", cluster_extras=False).up()
    print(f"testbed up in {time.perf_counter() - started:.1f}s", flush=True)
    procs: list[Proc] = []
    try:
        return run(args, work, state, procs)
    finally:
        for proc in procs:
            proc.stop()
        cluster.stop(work / "testbed")
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path, state: cluster.TestbedState, procs: list[Proc]) -> int:
    kube = Cluster(state)
    seconds = create_workloads(kube, 0, args.workloads)
    print(f"{args.workloads:,} Deployments created in {seconds:.1f}s", flush=True)

    port = cluster.free_port()
    base = f"http://127.0.0.1:{port}"
    token = secrets.token_urlsafe(16)
    env = production_env(state, work, HEADWIND_WEBHOOK_REGISTRY_TOKEN=token,
                         **dict(item.split("=", 1) for item in args.env))
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO_ROOT,
                   env=env, check=True)
    commands = shipped_commands(port)
    for name, command in commands.items():
        print(f"{name}: {' '.join(command)}", flush=True)
    logs = work / "logs"
    logs.mkdir()
    web, worker, operator = (Proc(name, commands[name], env, logs / f"{name}.log")
                             for name in ("web", "worker", "operator"))
    procs += [web, worker, operator]
    for proc in (worker, operator, web):
        proc.start()
    web_ready = [wait_web_ready(web, base)]
    synced_small = wait_synced(operator, args.workloads)
    worker_ready = wait_worker_ready(worker)
    print(f"web ready {web_ready[0]:.2f}s, worker ready {worker_ready:.2f}s, caches synced "
          f"({args.workloads:,}) {synced_small:.2f}s", flush=True)
    time.sleep(args.settle)
    idle = sample([web, worker, operator])
    total_pss = sum(v["pss"] for v in idle.values())
    total_rss = sum(v["rss"] for v in idle.values())
    for name, row in idle.items():
        print(f"  {name:9} PSS {row['pss']:6.1f} MiB  RSS {row['rss']:6.1f} MiB  "
              f"({row['processes']} process{'es' if row['processes'] > 1 else ''})")
    print(f"  {'total':9} PSS {total_pss:6.1f} MiB  RSS {total_rss:6.1f} MiB  "
          f"(goal: PSS ≤ 250 MiB)", flush=True)

    # The web process after its first requests.
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=10).raise_for_status()
    session.get(f"{base}/metrics", timeout=10).raise_for_status()
    body = ('{"events": [{"action": "push", "target": {"mediaType": "application/vnd.docker.'
            'distribution.manifest.v2+json", "digest": "sha256:' + "ab" * 32 + '", "repository":'
            ' "team/svc-1", "tag": "1.2.4"}, "request": {"host": "registry.example.com"}}]}')
    response = session.post(f"{base}/webhook/registry", data=body, timeout=10, headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/vnd.docker.distribution.events.v1+json"})
    assert response.status_code == 202, (response.status_code, response.text)
    time.sleep(2)
    warm = sample([web])["web"]
    print(f"  web after its first requests: PSS {warm['pss']:.1f} MiB  RSS {warm['rss']:.1f} MiB",
          flush=True)

    for _ in range(args.web_starts - 1):
        web.stop()
        web.start()
        web_ready.append(wait_web_ready(web, base))
    print("web ready: " + ", ".join(f"{s:.2f}s" for s in web_ready), flush=True)

    # 10,000 workloads: the operator alone, started again.
    operator.stop()
    seconds = create_workloads(kube, args.workloads, args.large)
    print(f"{args.large - args.workloads:,} more Deployments created in {seconds:.1f}s",
          flush=True)
    synced_large, large_memory = [], []
    for attempt in range(args.operator_starts):
        operator.log_path = logs / f"operator-large-{attempt}.log"
        operator.start()
        synced_large.append(wait_synced(operator, args.large))
        time.sleep(args.settle)
        large_memory.append(sample([operator])["operator"])
        operator.stop()
    large_rss = statistics.median(m["rss"] for m in large_memory)
    large_pss = statistics.median(m["pss"] for m in large_memory)
    print(f"operator with {args.large:,}: caches synced "
          + ", ".join(f"{s:.2f}s" for s in synced_large)
          + f"; RSS {large_rss:.1f} MiB ({large_rss * MIB / 1e6:.1f} MB), PSS {large_pss:.1f} MiB",
          flush=True)

    web_ready_p50 = statistics.median(web_ready)
    synced_p50 = statistics.median(synced_large)
    verdicts = {
        "whole install PSS at idle ≤ 250 MiB": total_pss <= 250,
        "operator RSS at 10,000 ≤ 150 MB": large_rss * MIB / 1e6 <= 150,
        "web ready ≤ 1 s (median)": web_ready_p50 <= 1.0,
        "caches synced at 10,000 ≤ 10 s (median)": synced_p50 <= 10.0,
    }
    for goal, met in verdicts.items():
        print(f"{goal}: {'met' if met else 'MISSED'}")
    figures = {
        "workloads": args.workloads, "large": args.large,
        "total_pss_mib": round(total_pss, 1), "total_rss_mib": round(total_rss, 1),
        **{f"{name}_pss_mib": round(row["pss"], 1) for name, row in idle.items()},
        **{f"{name}_rss_mib": round(row["rss"], 1) for name, row in idle.items()},
        **{f"{name}_processes": row["processes"] for name, row in idle.items()},
        "web_warm_pss_mib": round(warm["pss"], 1), "web_warm_rss_mib": round(warm["rss"], 1),
        "web_ready_s_median": round(web_ready_p50, 3), "web_ready_s_max": round(max(web_ready), 3),
        "worker_ready_s": round(worker_ready, 3),
        "synced_s_at_workloads": round(synced_small, 3),
        "synced_s_at_large_median": round(synced_p50, 3),
        "operator_rss_mb_at_large": round(large_rss * MIB / 1e6, 1),
        "operator_rss_mib_at_large": round(large_rss, 1),
        "operator_pss_mib_at_large": round(large_pss, 1),
        "commands": {name: " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))
                     for name, cmd in commands.items()},
    }
    goals = {"total_pss_mib": "≤ 250", "operator_rss_mb_at_large": "≤ 150",
             "web_ready_s_median": "≤ 1", "synced_s_at_large_median": "≤ 10"}
    charts = [
        _results.bars(f"Memory at idle, {args.workloads:,} workloads (MiB)",
                      {**{name: {"PSS": row["pss"], "RSS": row["rss"]}
                          for name, row in idle.items()},
                       "web (warm)": {"PSS": warm["pss"], "RSS": warm["rss"]},
                       f"operator at {args.large:,}": {"PSS": large_pss, "RSS": large_rss}},
                      "MiB"),
        _results.bars("Whole install at idle: PSS by process (MiB)",
                      {"install": {name: row["pss"] for name, row in idle.items()}}, "MiB",
                      goal=250, stacked=True),
        _results.distribution("Start-up (s)", {
            "web ready": web_ready, f"caches synced ({args.large:,})": synced_large}, "s",
            goal=1.0),
    ]
    if args.no_save:
        return 0 if all(verdicts.values()) else 1
    _results.save("footprint", figures, charts, goals=goals,
                  notes="deploy/manifests commands and ConfigMap, production mode, testbed "
                        "PostgreSQL and Redis; PSS/RSS from /proc/<pid>/smaps_rollup")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
