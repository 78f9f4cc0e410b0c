"""Per-event decision cost with 100 and 10,000 opted-in workloads in the cache, and RSS.

Workloads are real Deployment objects (as the API returns them) turned into the cache's
projections; every event matches exactly one container, so the figures show what the cache size
alone costs. Run: ``.venv/bin/python bench/fanout.py [--events 5000]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "headwind_site.settings")
os.environ.setdefault("HEADWIND_DEV", "true")

import django  # noqa: E402

django.setup()

from _harness import opted_in_deployment  # noqa: E402

from operator_app.cache import WorkloadCache  # noqa: E402
from operator_app.core.events import ImagePushEvent  # noqa: E402
from operator_app.engine import Engine  # noqa: E402
from operator_app.workloads import DEPLOYMENT, project  # noqa: E402


class CountingDispatcher:
    def __init__(self) -> None:
        self.proposed = self.applied = 0

    def propose(self, plan) -> None:
        self.proposed += 1

    def apply(self, plan) -> None:
        self.applied += 1


def deployment(index: int) -> dict:
    """The benchmarks' Deployment as the API server would answer it (namespace, uid,
    resourceVersion, revision and status set)."""
    obj = opted_in_deployment(index)
    obj["metadata"].update(namespace=f"team-{index % 50}", uid=f"uid-{index}",
                           resourceVersion=str(1000 + index))
    obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"
    obj["status"] = {"replicas": 2, "readyReplicas": 2}
    return obj


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(workloads: int, events: int) -> dict:
    cache = WorkloadCache()
    started = time.perf_counter()
    for index in range(workloads):
        cache.upsert(project(DEPLOYMENT, deployment(index)))
    fill = time.perf_counter() - started
    gc.collect()
    dispatcher = CountingDispatcher()
    engine = Engine(cache, dispatcher)
    samples = []
    for n in range(events):
        target = (n * 7919) % workloads
        event = ImagePushEvent(f"registry.example.com/team/svc-{target}", "1.3.0",
                               "sha256:" + "ab" * 32)
        t0 = time.perf_counter()
        engine.handle(event)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return {
        "workloads": workloads, "fill_s": fill, "events": events,
        "mean_us": statistics.fmean(samples) * 1e6,
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p95_us": samples[int(len(samples) * 0.95)] * 1e6,
        "dispatched": dispatcher.proposed + dispatcher.applied,
        "rss_mb": rss_mb(), "cache": cache, "samples_us": [t * 1e6 for t in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    base_rss = rss_mb()
    small = measure(100, args.events)
    del small["cache"]
    gc.collect()
    large = measure(10_000, args.events)
    print(f"process RSS before caches: {base_rss:.1f} MB")
    for row in (small, large):
        print(f"{row['workloads']:>6} workloads: fill {row['fill_s'] * 1000:.0f} ms, "
              f"per event mean {row['mean_us']:.1f} µs, p50 {row['p50_us']:.1f} µs, "
              f"p95 {row['p95_us']:.1f} µs, {row['dispatched']} dispatched, "
              f"RSS {row['rss_mb']:.1f} MB")
    ratio = large["p50_us"] / small["p50_us"]
    print(f"p50 ratio 10,000 / 100: {ratio:.2f} (target ≤ 1.5); "
          f"RSS at 10,000: {large['rss_mb']:.1f} MB (target ≤ 150 MB)")
    from _results import bars, distribution, save  # bench/_results.py: figures for make bench

    save("fanout", {
        "base_rss_mb": round(base_rss, 1), "p50_ratio": round(ratio, 2),
        **{f"{key}_{row['workloads']}": round(row[key], 2) for row in (small, large)
           for key in ("mean_us", "p50_us", "p95_us", "rss_mb", "fill_s")}},
        [distribution("Decision time per event (µs)",
                      {f"{row['workloads']:,} workloads": row["samples_us"]
                       for row in (small, large)}, "µs", log=True),
         bars("Process RSS (MB)", {"before caches": base_rss, "100 workloads": small["rss_mb"],
                                   "10,000 workloads": large["rss_mb"]}, "MB", goal=150)],
        goals={"p50_ratio": "≤ 1.5", "rss_mb_10000": "≤ 150"})


if __name__ == "__main__":
    main()
