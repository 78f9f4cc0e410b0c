"""``make bench``: runs every benchmark in bench/ and draws its results.

Every ``bench/<name>.py`` (not starting with ``_``, and not this file) runs in its own process,
one after the other (two cores: benchmarks side by side would measure each other). A benchmark
hands its figures over with ``bench/_results.py`` (``save(name, figures, charts)`` writes
``bench/results/<name>.json``); this runner then draws ``bench/results/<name>.png`` from that
file with matplotlib. A benchmark that saved nothing still gets ``<name>.json`` with its exit
code and the end of its output, and no picture.

Benchmarks that need a running testbed (``bench/poll.py``) get one: when none runs at
``$HEADWIND_TESTBED_DIR`` (default /tmp/headwind-testbed) the runner starts one there and stops
it at the end. ``bench/results/summary.json`` lists every run with its duration and outcome.

Run: ``.venv/bin/python bench/run.py [NAME ...] [--plot-only] [--list]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO_ROOT = BENCH.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(BENCH))

import _results  # noqa: E402

#: Arguments for ``make bench`` where a benchmark's own defaults would take too long; anything
#: not listed runs with its defaults.
ARGS: dict[str, list[str]] = {
    "helm_index": ["--rounds", "2"],
}
#: Benchmarks that read a running testbed's environment instead of starting their own.
NEEDS_TESTBED = {"poll"}


def benchmarks() -> list[str]:
    return sorted(path.stem for path in BENCH.glob("*.py")
                  if not path.name.startswith("_") and path.name != Path(__file__).name)


# --- drawing ---------------------------------------------------------------------------------


def plot(name: str) -> Path | None:
    """Draw bench/results/<name>.png from its JSON; None when it has no charts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    document = json.loads((_results.RESULTS / f"{name}.json").read_text())
    charts = document.get("charts") or []
    if not charts:
        return None
    columns = min(2, len(charts))
    rows = (len(charts) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.2 * rows),
                                squeeze=False)
    for chart, axis in zip(charts, axes.flat, strict=False):
        DRAW[chart["kind"]](axis, chart)
        axis.set_title(chart["title"], fontsize=10)
        axis.grid(True, alpha=0.3)
    for axis in list(axes.flat)[len(charts):]:
        axis.set_visible(False)
    machine = document.get("machine") or {}
    figure.suptitle(f"{name} — {document.get('when', '')} — {machine.get('cores', '?')} cores, "
                    f"{machine.get('memory_gib', '?')} GiB, {machine.get('cpu', '')}",
                    fontsize=9)
    figure.tight_layout()
    path = _results.RESULTS / f"{name}.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _goal_line(axis, chart: dict, *, horizontal: bool = True) -> None:
    goal = chart.get("goal")
    if goal is None:
        return
    (axis.axhline if horizontal else axis.axvline)(goal, color="tab:red", linestyle="--",
                                                   linewidth=1, label=f"goal {goal:g}")
    axis.legend(fontsize=8)


def _draw_distribution(axis, chart: dict) -> None:
    labels = list(chart["data"])
    data = [chart["data"][label] or [float("nan")] for label in labels]
    axis.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
    axis.set_xticks(range(1, len(labels) + 1), labels, fontsize=8, rotation=15 if len(
        labels) > 3 else 0)
    axis.set_ylabel(chart["unit"])
    if chart.get("log"):
        axis.set_yscale("log")
    for index, values in enumerate(data, start=1):
        ordered = sorted(v for v in values if v == v)
        if ordered:
            median = ordered[len(ordered) // 2]
            axis.annotate(f"p50 {median:.3g}", (index, median), textcoords="offset points",
                          xytext=(18, 0), fontsize=7, va="center")
    _goal_line(axis, chart)


def _draw_bars(axis, chart: dict) -> None:
    labels = list(chart["data"])
    values = chart["data"]
    grouped = any(isinstance(v, dict) for v in values.values())
    if not grouped:
        bars = axis.bar(labels, [values[label] for label in labels], color="tab:blue")
        axis.bar_label(bars, fmt="%.1f", fontsize=7)
    else:
        series = sorted({key for v in values.values() for key in v},
                        key=lambda key: list(next(iter(values.values()))).index(key)
                        if key in next(iter(values.values())) else 99)
        if chart.get("stacked"):
            bottom = [0.0] * len(labels)
            tallest = max((sum(v for v in values[label].values() if v > 0) for label in labels),
                          default=0.0)
            for key in series:
                heights = [values[label].get(key, 0.0) for label in labels]
                bars = axis.bar(labels, heights, bottom=bottom, label=key)
                # Only segments tall enough to hold their label get one (the legend names all).
                axis.bar_label(bars, labels=[f"{key} {h:.3g}" if h >= 0.06 * tallest else ""
                                             for h in heights],
                               label_type="center", fontsize=7)
                bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
            for index, total in enumerate(bottom):
                axis.annotate(f"{total:.0f}", (index, total), ha="center", va="bottom",
                              fontsize=8)
        else:
            width = 0.8 / len(series)
            for offset, key in enumerate(series):
                positions = [i + (offset - (len(series) - 1) / 2) * width
                             for i in range(len(labels))]
                bars = axis.bar(positions, [values[label].get(key, 0.0) for label in labels],
                                width=width, label=key)
                axis.bar_label(bars, fmt="%.0f", fontsize=7)
            axis.set_xticks(range(len(labels)), labels)
        if chart.get("stacked"):  # beside the bars: stacked bars fill the axes
            axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        else:
            axis.legend(fontsize=8)
    axis.tick_params(axis="x", labelsize=8, rotation=15 if len(labels) > 3 else 0)
    axis.set_ylabel(chart["unit"])
    _goal_line(axis, chart)


def _draw_series(axis, chart: dict) -> None:
    for label, points in chart["data"].items():
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker=".", linewidth=1, label=label)
    axis.set_xlabel(chart["x"])
    axis.set_ylabel(chart["y"])
    axis.legend(fontsize=8)
    _goal_line(axis, chart)


DRAW = {"distribution": _draw_distribution, "bars": _draw_bars, "series": _draw_series}


# --- running ---------------------------------------------------------------------------------


def ensure_testbed() -> Path | None:
    """A running testbed for the benchmarks that need one; returns its directory when the
    runner started it (and must stop it)."""
    from tests.testbed import cluster

    directory = cluster.DEFAULT_STATE_DIR
    try:
        cluster.TestbedState.load(directory)
        if not cluster.crashed(directory):
            return None
    except (FileNotFoundError, ValueError, OSError):
        pass
    print(f"==> starting a testbed in {directory}", flush=True)
    cluster.Testbed(directory).up()
    return directory


def run_one(name: str) -> dict:
    started = time.time()
    before = _mtime(name)
    print(f"==> {name}", flush=True)
    process = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *ARGS.get(name, [])],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    sys.stdout.write(process.stdout)
    seconds = time.time() - started
    saved = _mtime(name) not in (None, before)
    if not saved:  # it handed nothing over: keep what it printed
        _results.save(name, {"returncode": process.returncode}, [],
                      notes="no figures handed over; the end of its output:\n"
                            + "\n".join(process.stdout.splitlines()[-40:]))
    picture = plot(name) if saved else None
    return {"name": name, "seconds": round(seconds, 1), "returncode": process.returncode,
            "figures_handed_over": saved, "png": picture.name if picture else None}


def _mtime(name: str) -> float | None:
    path = _results.RESULTS / f"{name}.json"
    return path.stat().st_mtime if path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"default: all of {', '.join(benchmarks())}")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw the PNGs from the saved JSON, run nothing")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    names = args.names or benchmarks()
    unknown = sorted(set(names) - set(benchmarks()))
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)}")
    if args.list:
        print("\n".join(names))
        return 0
    if args.plot_only:
        for name in names:
            if (_results.RESULTS / f"{name}.json").exists():
                print(plot(name) or f"{name}: no charts")
        return 0

    started_testbed = ensure_testbed() if NEEDS_TESTBED & set(names) else None
    summary = []
    try:
        for name in names:
            summary.append(run_one(name))
    finally:
        if started_testbed is not None:
            from tests.testbed import cluster

            cluster.stop(started_testbed)
    _results.RESULTS.mkdir(parents=True, exist_ok=True)
    (_results.RESULTS / "summary.json").write_text(json.dumps(
        {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "machine": _results.machine(), "runs": summary}, indent=1) + "\n")
    print("\n==> summary")
    for row in summary:
        print(f"{row['name']:12} {row['seconds']:7.1f}s  exit {row['returncode']}  "
              f"{row['png'] or '(no picture)'}")
    # A benchmark that missed its goal exits 1; that is a result, not a failure of the run.
    return 0 if all(row["figures_handed_over"] for row in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
