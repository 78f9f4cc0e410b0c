"""operator_app.hops: the stamps an update carries from the webhook to the patch, and what is
recorded from them. End to end (through Redis, the engine and a Celery message header) they are
read by bench/latency.py, which fails its run when an update's stamps never arrive."""

from __future__ import annotations

import threading

from operator_app import hops
from operator_app.metrics import UPDATE_HOP_SECONDS


def _count(hop: str) -> float:
    return UPDATE_HOP_SECONDS.labels(hop)._sum.get()  # noqa: SLF001 - the observed total


def test_an_entry_without_received_is_not_timed():
    hops.from_entry({"repository": "r", "tag": "1"}, queued=100.0)
    hops.mark("verified")
    assert hops.stamped("decided") is None
    hops.begin(None, started=1.0)
    assert hops.end("x") is None


def test_stamps_from_a_stream_entry_and_a_finished_update():
    hops.from_entry({b"received": b"100.0"}, queued=99.9995)  # ID: millisecond resolution
    stamps = hops.stamped("decided")
    assert stamps["received"] == 100.0
    assert stamps["queued"] == 100.0, "never before the delivery was received"
    assert stamps["read"] <= stamps["decided"]
    before = _count("total")
    hops.begin({"received": 100.0, "queued": 100.001, "read": 100.002, "verified": 100.003,
                "decided": 100.004}, started=100.010)
    hops.mark("patched")
    hops.mark("patched")  # the first stamp wins (a retried patch does not move it)
    durations = hops.end("Deployment ns/app container app → r:1.1.0")
    assert list(durations) == ["queued", "read", "verified", "decided", "started", "patched",
                               "total"]
    assert abs(durations["started"] - 0.006) < 1e-9
    assert durations["total"] >= durations["patched"]
    assert _count("total") > before
    assert hops.end("again") is None, "ending forgets the stamps"


def test_each_dispatched_update_gets_its_own_copy():
    hops.begin({"received": 1.0})
    first, second = hops.stamped("decided"), hops.stamped("decided")
    first["patched"] = 2.0
    assert "patched" not in second


def test_stamps_are_per_thread():
    hops.begin({"received": 1.0})
    seen = []
    thread = threading.Thread(target=lambda: seen.append(hops.stamped("decided")))
    thread.start()
    thread.join()
    assert seen == [None]
    assert hops.stamped("decided") is not None
    hops.begin(None)


def test_a_missing_stamp_makes_the_next_hop_span_both():
    assert hops.hops_of({"received": 1.0, "read": 1.5, "patched": 2.0}) == {
        "read": 0.5, "patched": 0.5, "total": 1.0}
