"""Maintenance windows (``headwind.sh/maintenance-window``) and durations, pure.

Grammar (case-insensitive; windows separated by ``;``)::

    window   = [days] time-range [zone]
    days     = day-spec *("," day-spec)          ; no days: every day
    day-spec = day | day "-" day                 ; Mon-Fri, Sat-Sun, Fri-Mon (wraps)
    day      = Mon | Tue | Wed | Thu | Fri | Sat | Sun
    time-range = HH:MM[:SS] "-" HH:MM[:SS]       ; an end at or before the start ends the next day
    zone     = an IANA time zone (Europe/Berlin), default UTC

Examples: ``Mon-Fri 02:00-04:00 Europe/Berlin``, ``Sat,Sun 22:00-06:00 America/New_York``,
``01:00-01:30``, ``Mon-Fri 02:00-04:00 Europe/Berlin; Sat 00:00-08:00 UTC``.

A window opens on each listed day at the start time, in the zone's wall-clock time, and lasts
until the end time (the next day when the end is not after the start). Daylight saving:
a start that falls in a skipped hour opens at the first existing minute after it; a repeated
hour is taken at its first occurrence. Time zones come from the standard library's
:mod:`zoneinfo` (the system's tz database).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_WINDOW = re.compile(rf"^(?:(?P<days>[a-z,\-]+)\s+)?{_TIME}\s*-\s*{_TIME}(?:\s+(?P<zone>\S+))?$",
                     re.IGNORECASE)
_DURATION = re.compile(r"(\d+)(s|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class InvalidWindow(ValueError):
    """The text is not a window (the message says why)."""


def parse_duration(text: str) -> int:
    """``90``, ``30m``, ``72h``, ``7d``, ``1h30m`` → seconds (ValueError when not one)."""
    value = text.strip().lower()
    if value.isdigit():
        return int(value)
    if not value or _DURATION.sub("", value):
        raise ValueError(f"{text!r} is not a duration such as 30m, 72h or 7d")
    return sum(int(number) * _UNITS[unit] for number, unit in _DURATION.findall(value))


def format_duration(seconds: int) -> str:
    """``259200`` → ``3d``, ``5400`` → ``1h30m``: the inverse of :func:`parse_duration`."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time
    zone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def openings(self, around: datetime) -> list[tuple[datetime, datetime]]:
        """The (start, end) instants, in UTC, of this window's openings from the day before
        ``around`` to a week after it."""
        tz = self.tz
        local_day = around.astimezone(tz).date()
        found = []
        for offset in range(-1, 9):
            day = local_day + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            start = _instant(day, self.start, tz)
            end_day = day if self.end > self.start else day + timedelta(days=1)
            end = _instant(end_day, self.end, tz)
            if end > start:
                found.append((start, end))
        return found


@dataclass(frozen=True)
class Schedule:
    """One or more windows; open when any is."""

    windows: tuple[Window, ...]
    text: str

    def is_open(self, now: datetime) -> bool:
        now = _utc(now)
        return any(start <= now < end for window in self.windows
                   for start, end in window.openings(now))

    def next_open(self, now: datetime) -> datetime:
        """``now`` when open, else when the next window opens."""
        now = _utc(now)
        if self.is_open(now):
            return now
        starts = [start for window in self.windows for start, _ in window.openings(now)
                  if start > now]
        if not starts:  # every window lists days; a week always holds one
            raise InvalidWindow(f"{self.text!r} never opens")
        return min(starts)

    def __str__(self) -> str:
        return self.text


def parse_schedule(text: str) -> Schedule:
    """Read ``headwind.sh/maintenance-window`` (InvalidWindow when it is not one)."""
    parts = [part.strip() for part in text.split(";") if part.strip()]
    if not parts:
        raise InvalidWindow("no window given")
    return Schedule(tuple(_parse_window(part) for part in parts), text.strip())


def _parse_window(text: str) -> Window:
    match = _WINDOW.match(" ".join(text.split()))
    if not match:
        raise InvalidWindow(f"{text!r} is not a window such as 'Mon-Fri 02:00-04:00 "
                            "Europe/Berlin'")
    groups = match.groups()
    start, end = _time(groups[1:4], text), _time(groups[4:7], text)
    zone = match.group("zone") or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidWindow(f"unknown time zone {zone!r}") from None
    if start == end:
        raise InvalidWindow(f"{text!r}: the window starts and ends at the same time")
    return Window(_days(match.group("days"), text), start, end, zone)


def _time(parts: tuple, text: str) -> time:
    hours, minutes, seconds = int(parts[0]), int(parts[1]), int(parts[2] or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise InvalidWindow(f"{text!r}: {parts[0]}:{parts[1]} is not a time of day")
    return time(hours, minutes, seconds)


def _days(text: str | None, whole: str) -> frozenset[int]:
    if not text:
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.lower().split(","):
        first, dash, last = item.partition("-")
        if first not in DAYS or (dash and last not in DAYS):
            raise InvalidWindow(f"{whole!r}: {item!r} is not a day or a range of days "
                                "(Mon, Tue, Wed, Thu, Fri, Sat, Sun)")
        start = DAYS.index(first)
        stop = DAYS.index(last) if dash else start
        index = start
        while True:
            days.add(index)
            if index == stop:
                break
            index = (index + 1) % 7
    return frozenset(days)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _instant(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of ``day clock`` in ``tz``: a skipped wall-clock time moves to the
    first existing minute after it; a repeated one is its first occurrence."""
    naive = datetime.combine(day, clock)
    for minute in range(0, 4 * 60):
        candidate = naive + timedelta(minutes=minute)
        local = candidate.replace(tzinfo=tz, fold=0)
        back = local.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        if back == candidate:
            if minute:  # inside a gap: the first existing minute, at its very start
                candidate = candidate.replace(second=0)
                local = candidate.replace(tzinfo=tz, fold=0)
            return local.astimezone(UTC)
    return naive.replace(tzinfo=tz).astimezone(UTC)
