"""Printing as kubectl prints: aligned tables (its tabwriter settings), ages, JSON and YAML."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TextIO

import yaml

# kubectl's tabwriter (k8s.io/cli-runtime/pkg/printers/tabwriter.go): every column but the
# last is padded to its widest cell plus 3 spaces, and is at least 6 wide.
_MIN_WIDTH = 6
_PADDING = 3


def cell(value: object) -> str:
    """A table cell as Go's ``fmt.Sprint`` prints it; an absent value is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """``headers`` and ``rows`` aligned the way ``kubectl get`` aligns them."""
    lines = [[cell(h) for h in headers]] + [[cell(c) for c in row] for row in rows]
    columns = max(len(line) for line in lines)
    widths = [max([_MIN_WIDTH] + [len(line[i]) + _PADDING for line in lines if i < len(line)])
              for i in range(columns)]
    text = []
    for line in lines:
        padded = [value.ljust(widths[i]) for i, value in enumerate(line[:-1])]
        text.append("".join(padded) + (line[-1] if line else ""))
    return "\n".join(text) + "\n"


def fields(pairs: Iterable[tuple[str, object]], width: int = 0) -> str:
    """``Label:  value`` lines, aligned like ``kubectl describe`` (values start at column
    ``width`` at least); None and empty values are left out."""
    kept = [(label, value) for label, value in pairs if value not in (None, "")]
    width = max([width] + [len(label) + 3 for label, _ in kept])
    return "".join(f"{(label + ':').ljust(width)}{value}\n" for label, value in kept)


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, as kubectl's AGE column shows."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m" if whole % 60 == 0 else f"{minutes}m{whole % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(text: object, now: datetime | None = None) -> str | None:
    """``2026-11-27T10:00:00Z (5m ago)`` or ``(in 23h)``; the text as is when unparsable."""
    moment = parse_time(text)
    if moment is None:
        return str(text) if text else None
    delta = ((now or datetime.now(UTC)) - moment).total_seconds()
    relative = f"{human_duration(delta)} ago" if delta >= 0 else f"in {human_duration(-delta)}"
    return f"{text} ({relative})"


def emit(data: object, fmt: str, out: TextIO) -> None:
    """``-o json`` (kubectl's 4-space indent, sorted keys) or ``-o yaml``."""
    if fmt == "json":
        out.write(json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        out.write(yaml.safe_dump(data, default_flow_style=False, sort_keys=True,
                                 allow_unicode=True))
