"""How a benchmark hands its figures over: ``save(name, figures, charts)`` writes
``bench/results/<name>.json`` (or ``$HEADWIND_BENCH_RESULTS/<name>.json``). ``bench/run.py``
(``make bench``) runs every benchmark and draws each one's charts into ``<name>.png``.

A benchmark keeps measuring and printing as it did; at the end it calls :func:`save` once with
its headline figures (a flat dict of numbers and short strings) and the data behind its
pictures, described by the chart helpers below. Nothing here imports matplotlib or Django, so
handing the figures over costs a benchmark nothing it would measure.

Chart kinds (``bench/run.py`` draws them):

- :func:`distribution` — samples per case (latencies): box plots on a log or linear axis;
- :func:`bars` — one value per label, or several series per label (PSS and RSS per process);
- :func:`series` — y over x per line (accepted deliveries per second over time).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(os.environ.get("HEADWIND_BENCH_RESULTS")
               or Path(__file__).resolve().parent / "results")


def distribution(title: str, samples: dict[str, list[float]], unit: str, *,
                 log: bool = False, goal: float | None = None) -> dict:
    """Samples per case, e.g. ``{"100 workloads": [...µs], "10,000 workloads": [...]}``."""
    return {"kind": "distribution", "title": title, "unit": unit, "log": log, "goal": goal,
            "data": {label: [float(v) for v in values] for label, values in samples.items()}}


def bars(title: str, values: dict[str, float | dict[str, float]], unit: str, *,
         goal: float | None = None, stacked: bool = False) -> dict:
    """``{"web": 80.1, ...}``, or grouped ``{"web": {"PSS": 60, "RSS": 80}, ...}``."""
    return {"kind": "bars", "title": title, "unit": unit, "goal": goal, "stacked": stacked,
            "data": values}


def series(title: str, lines: dict[str, list[tuple[float, float]]], *, x: str, y: str,
           goal: float | None = None) -> dict:
    """``{"accepted/s": [(t, rate), ...]}`` with axis labels ``x`` and ``y``."""
    return {"kind": "series", "title": title, "x": x, "y": y, "goal": goal,
            "data": {label: [[float(a), float(b)] for a, b in points]
                     for label, points in lines.items()}}


def machine() -> dict:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "os": _os_name()}


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def save(name: str, figures: dict, charts: list[dict] = (), *, goals: dict | None = None,
         notes: str = "") -> Path:
    """Write the results of benchmark ``name``; returns the file. ``goals`` maps a figure's
    name to a human reading of its goal (``"≤ 250"``); ``notes`` says what was measured."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "name": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "machine": machine(),
        "figures": figures,
        "goals": goals or {},
        "notes": notes,
        "charts": list(charts),
    }
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"results: {path}", file=sys.stderr)
    return path
