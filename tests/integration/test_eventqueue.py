"""The webhook → operator queue on the testbed's real Redis: ack after handling, redelivery of
what failed, a cap on retries, and survival of Redis outages."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

import pytest
import redis

from operator_app import eventqueue
from operator_app.core.events import EventSource, ImagePushEvent
from tests.waiting import eventually

pytestmark = pytest.mark.testbed


def run_consumer(client, stream, handle, **kwargs):
    stop = threading.Event()
    thread = threading.Thread(target=eventqueue.consume, daemon=True, args=(client, handle, stop),
                              kwargs={"stream": stream, "block_ms": 50, "claim_idle_ms": 50,
                                      **kwargs})
    thread.start()
    return stop, thread


def test_events_round_trip_and_are_acknowledged(redis_url):
    client = redis.Redis.from_url(redis_url)
    stream = f"test:{uuid.uuid4().hex}"
    events = [ImagePushEvent("ghcr.io/a/b", "1.0.0", "sha256:" + "a" * 64),
              ImagePushEvent("docker.io/library/nginx", "1.27.1", None, EventSource.POLLING)]
    before = time.time()
    eventqueue.publish(client, events, stream=stream)
    seen = []
    stop, thread = run_consumer(client, stream, seen.append)
    try:
        eventually(lambda: len(seen) == 2)
        eventually(lambda: client.xpending(stream, eventqueue.GROUP)["pending"] == 0)
        assert client.xlen(stream) == 2  # acknowledged, not deleted
    finally:
        stop.set()
        thread.join(5)
    # Each comes back with the time Redis accepted it (from its stream ID), for bounded retries.
    assert [dataclasses.replace(e, received_at=None) for e in seen] == events
    assert all(before - 1 <= e.received_at <= time.time() + 1 for e in seen)


def test_a_batch_is_prepared_whole_before_its_events_are_handled(redis_url):
    """``prepare`` (webhook verification's parallel HEADs) sees a batch of queued events before
    the first is handled; an entry that cannot be decoded, or a failing ``prepare``, changes
    nothing for the others."""
    client = redis.Redis.from_url(redis_url)
    stream = f"test:{uuid.uuid4().hex}"
    events = [ImagePushEvent("ghcr.io/a/b", f"1.{minor}.0", "sha256:" + "a" * 64)
              for minor in range(3)]
    eventqueue.publish(client, events, stream=stream)
    client.xadd(stream, {"bogus": "entry"})  # not an event: _run drops it after its retries
    log: list[tuple[str, object]] = []

    def prepare(batch):
        log.append(("prepare", [e.tag for e in batch]))
        raise RuntimeError("a failing prepare is only a slower batch")

    stop, thread = run_consumer(client, stream, lambda e: log.append(("handle", e.tag)),
                                prepare=prepare)
    try:
        eventually(lambda: len([entry for entry in log if entry[0] == "handle"]) == 3)
    finally:
        stop.set()
        thread.join(5)
    assert log[:4] == [("prepare", ["1.0.0", "1.1.0", "1.2.0"]), ("handle", "1.0.0"),
                       ("handle", "1.1.0"), ("handle", "1.2.0")]


def test_failing_event_is_retried_then_dropped_after_the_cap(redis_url):
    client = redis.Redis.from_url(redis_url)
    stream = f"test:{uuid.uuid4().hex}"
    eventqueue.publish(client, [ImagePushEvent("ghcr.io/a/b", "1.0.0")], stream=stream)
    attempts = []

    def flaky(event):
        attempts.append(event)
        raise eventqueue.RetryLater("registry is down")

    stop, thread = run_consumer(client, stream, flaky)
    try:  # (pending is also 0 before the first read: wait for attempts first)
        eventually(lambda: attempts and client.xpending(stream, eventqueue.GROUP)["pending"] == 0,
                   30)
    finally:
        stop.set()
        thread.join(5)
    assert len(attempts) == eventqueue.MAX_DELIVERIES


def test_consumer_survives_redis_going_away(redis_url, testbed, caplog):
    """Pointed at a Redis that is not there, the loop keeps trying instead of dying."""
    caplog.set_level(logging.WARNING, logger=eventqueue.__name__)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    stream = f"test:{uuid.uuid4().hex}"
    stop, thread = run_consumer(dead, stream, lambda event: None)

    def failures() -> int:
        return sum(r.getMessage().startswith("event stream unavailable") for r in caplog.records)

    # Two failed attempts: the first error was handled and the loop came round to try again.
    eventually(lambda: failures() >= 2, 15, "a second attempt on the dead Redis")
    assert thread.is_alive()
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_consumer_recreates_its_group_when_redis_lost_it(redis_url):
    """A Redis restart without persistence loses the stream and the group: every read then
    answers NOGROUP. The consumer creates the group again from the last entry it acknowledged,
    and goes on with what is published next (before, it kept failing for ever)."""
    client = redis.Redis.from_url(redis_url)
    stream = f"test:{uuid.uuid4().hex}"
    seen = []
    stop, thread = run_consumer(client, stream, seen.append)
    try:
        eventqueue.publish(client, [ImagePushEvent("ghcr.io/a/b", "1.0.0")], stream=stream)
        eventually(lambda: len(seen) == 1, what="the first event")
        client.delete(stream)  # what a restart without persistence leaves: no stream, no group
        eventqueue.publish(client, [ImagePushEvent("ghcr.io/a/b", "1.1.0")], stream=stream)
        eventually(lambda: len(seen) == 2, what="the event after Redis lost the group")
        assert [event.tag for event in seen] == ["1.0.0", "1.1.0"]
        eventually(lambda: client.xpending(stream, eventqueue.GROUP)["pending"] == 0,
                   what="acknowledged in the new group")
    finally:
        stop.set()
        thread.join(5)
