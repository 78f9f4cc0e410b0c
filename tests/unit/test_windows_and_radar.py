"""Maintenance windows (daylight saving, midnight, several windows), durations, minimum release
age and the radar: the pure rules behind docs/radar.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from operator_app.core.images import parse_image
from operator_app.core.policy import InvalidPolicy, PolicySpec, decide
from operator_app.core.radar import TagFacts, survey
from operator_app.core.windows import (
    InvalidWindow,
    format_duration,
    parse_duration,
    parse_schedule,
)


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("30m", 1800), ("72h", 259200), ("7d", 604800), ("1h30m", 5400), ("2w", 1209600),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "3x", "h", "1.5h", "-3h", "3 h"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_weekday_window_in_berlin():
    window = parse_schedule("Mon-Fri 02:00-04:00 Europe/Berlin")
    # Wednesday 2026-01-14, winter (UTC+1): 02:00 local is 01:00 UTC.
    assert window.is_open(utc(2026, 1, 14, 1, 30))
    assert not window.is_open(utc(2026, 1, 14, 3, 0))  # 04:00 local: closed (end excluded)
    assert window.next_open(utc(2026, 1, 14, 3, 0)) == utc(2026, 1, 15, 1, 0)
    # Friday evening → Monday.
    assert window.next_open(utc(2026, 1, 16, 12, 0)) == utc(2026, 1, 19, 1, 0)
    # Summer (UTC+2).
    assert window.next_open(utc(2026, 7, 14, 12, 0)) == utc(2026, 7, 15, 0, 0)


def test_daylight_saving_spring_forward_and_fall_back():
    # 2026-03-29: Berlin skips 02:00-03:00. A 02:30-04:00 window opens at 03:00 CEST (01:00 UTC).
    window = parse_schedule("Sun 02:30-04:00 Europe/Berlin")
    assert window.next_open(utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 1, 0)
    assert window.is_open(utc(2026, 3, 29, 1, 30))
    assert not window.is_open(utc(2026, 3, 29, 2, 0))  # 04:00 CEST
    # 2026-10-25: 02:00-03:00 happens twice; the window opens at the first 02:30 (CEST, 00:30 UTC)
    # and closes at 04:00 CET (03:00 UTC): two and a half hours that night.
    assert window.next_open(utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 0, 30)
    assert window.is_open(utc(2026, 10, 25, 2, 59))
    assert not window.is_open(utc(2026, 10, 25, 3, 0))


def test_window_across_midnight_and_several_windows():
    window = parse_schedule("Sat 22:00-06:00 America/New_York; Mon-Fri 01:00-01:30")
    # Saturday 2026-01-17 22:00 EST is Sunday 03:00 UTC; it lasts until Sunday 06:00 EST.
    assert window.next_open(utc(2026, 1, 17, 12, 0)) == utc(2026, 1, 18, 3, 0)
    assert window.is_open(utc(2026, 1, 18, 10, 59))
    assert not window.is_open(utc(2026, 1, 18, 11, 0))
    # The UTC window on Monday.
    assert window.next_open(utc(2026, 1, 18, 12, 0)) == utc(2026, 1, 19, 1, 0)
    assert parse_schedule("Fri-Mon 10:00-11:00").is_open(utc(2026, 1, 18, 10, 30))  # Sunday
    assert parse_schedule("10:00:05-10:00:30").next_open(utc(2026, 1, 18, 10, 0)) == \
        utc(2026, 1, 18, 10, 0, 5)


@pytest.mark.parametrize("text", ["", "Mon-Fri", "Mon-Fri 02:00", "Mon-Fry 02:00-03:00",
                                  "Mon 25:00-26:00", "Mon 02:00-02:00", "02:00-03:00 Mars/Base",
                                  "Mon 02:00-03:00 UTC extra"])
def test_bad_windows(text):
    with pytest.raises(InvalidWindow):
        parse_schedule(text)


def test_policy_reads_both_annotations():
    spec = PolicySpec.from_annotations({
        "headwind.sh/policy": "minor", "headwind.sh/min-release-age": "72h",
        "headwind.sh/maintenance-window": "Mon-Fri 02:00-04:00 Europe/Berlin"})
    assert spec.min_release_age_seconds == 72 * 3600
    assert str(spec.maintenance_window) == "Mon-Fri 02:00-04:00 Europe/Berlin"
    for bad in ({"headwind.sh/min-release-age": "soon"},
                {"headwind.sh/maintenance-window": "weekends"}):
        with pytest.raises(InvalidPolicy):
            PolicySpec.from_annotations({"headwind.sh/policy": "minor", **bad})


NOW = utc(2026, 6, 1, 12, 0)
AGED = PolicySpec.from_annotations({"headwind.sh/policy": "minor",
                                    "headwind.sh/min-release-age": "1d"})


def test_min_release_age_in_decide():
    current = parse_image("r/app:1.0.0")
    candidates = {"1.1.0": None, "1.2.0": None}
    released = {"1.1.0": NOW - timedelta(days=3), "1.2.0": NOW - timedelta(hours=2)}
    assert decide(AGED, current, candidates, released=released, now=NOW).tag == "1.1.0"
    # Unknown release time: not old enough. No release times at all: the rule is not asked.
    assert decide(AGED, current, {"1.2.0": None}, released={}, now=NOW) is None
    assert decide(AGED, current, candidates).tag == "1.2.0"
    # Exactly old enough.
    assert decide(AGED, current, {"1.2.0": None},
                  released={"1.2.0": NOW - timedelta(days=1)}, now=NOW).tag == "1.2.0"


def test_radar_counts_what_the_policy_blocks():
    tags = {"1.0.0": TagFacts(NOW - timedelta(days=90)), "1.0.1": TagFacts(NOW - timedelta(days=9)),
            "1.1.0": TagFacts(NOW - timedelta(hours=3)), "2.0.0": TagFacts(NOW - timedelta(days=1)),
            "2.1.0-rc.1": TagFacts(NOW), "latest": TagFacts(NOW)}
    radar = survey(AGED, parse_image("r/app:1.0.0"), tags, slot="app", now=NOW)
    assert (radar.newest_allowed, radar.eligible) == ("1.1.0", "1.0.1")
    assert radar.waiting_until == NOW + timedelta(hours=21)
    assert (radar.newest_any, radar.behind_any) == ("2.1.0-rc.1", 4)
    assert radar.behind_policy == 2  # 1.0.1 and 1.1.0; majors and pre-releases blocked
    assert radar.running_released == NOW - timedelta(days=90)

    minor = PolicySpec.from_annotations({"headwind.sh/policy": "minor"})
    current = survey(minor, parse_image("r/app:1.1.0"), tags, slot="app", now=NOW)
    assert (current.newest_allowed, current.behind_policy, current.waiting_until) == \
        (None, 0, None)
    assert current.newest_any == "2.1.0-rc.1" and current.behind_any == 2
