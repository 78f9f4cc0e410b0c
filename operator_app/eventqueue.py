"""The durable hand-off from triggers (webhook views, poller) to the operator's engine.

A Redis stream with one consumer group: a webhook returns 202 only after its events are in the
stream, and the operator acknowledges an entry only after the engine has dispatched it, so a crash
in between replays it (the engine's effects are idempotent).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import redis

from .core.events import EventSource, ImagePushEvent

log = logging.getLogger(__name__)

STREAM = "headwind:image-events"
GROUP = "headwind-operator"
MAX_LENGTH = 100_000


def connect(url: str | None = None) -> redis.Redis:
    from django.conf import settings

    return redis.Redis.from_url(url or settings.REDIS_URL, socket_timeout=10,
                                socket_connect_timeout=5, health_check_interval=30)


def publish(client: redis.Redis, events: list[ImagePushEvent],
            stream: str = STREAM) -> list[str]:
    """Append events atomically (one MULTI) so a delivery is queued whole or not at all."""
    pipe = client.pipeline(transaction=True)
    for event in events:
        pipe.xadd(stream, _encode(event), maxlen=MAX_LENGTH, approximate=True)
    return [entry.decode() if isinstance(entry, bytes) else entry for entry in pipe.execute()]


def _encode(event: ImagePushEvent) -> dict[str, str]:
    return {"repository": event.repository, "tag": event.tag, "digest": event.digest or "",
            "source": str(event.source)}


def _decode(fields: dict) -> ImagePushEvent:
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}
    return ImagePushEvent(repository=text["repository"], tag=text["tag"],
                          digest=text.get("digest") or None,
                          source=EventSource(text.get("source", "webhook")))


MAX_DELIVERIES = 10


class RetryLater(Exception):
    """Raised by a handler for a passing failure (registry down): the entry stays pending and
    is claimed again after ``CLAIM_IDLE_MS``, up to ``MAX_DELIVERIES`` times."""


CLAIM_IDLE_MS = 30_000


def consume(client: redis.Redis, handle: Callable[[ImagePushEvent], object],
            stop: threading.Event, *, may_run: Callable[[], bool] = lambda: True,
            consumer: str | None = None, block_ms: int = 1000, stream: str = STREAM,
            claim_idle_ms: int = CLAIM_IDLE_MS) -> None:
    """Feed stream entries to ``handle`` while ``may_run()`` (leadership); ack after handling.

    Redis failures never end the loop; an entry that keeps failing is dropped (logged) after
    ``MAX_DELIVERIES`` attempts instead of being retried for ever.
    """
    consumer = consumer or f"{os.uname().nodename}-{os.getpid()}"
    group_ready = False
    claim_from = "0-0"
    while not stop.is_set():
        if not may_run():
            stop.wait(0.5)
            continue
        try:
            if not group_ready:
                _create_group(client, stream)
                group_ready = True
            # Entries another (dead) leader read but never acknowledged come first.
            claim_from, claimed, _ = client.xautoclaim(
                stream, GROUP, consumer, min_idle_time=claim_idle_ms, start_id=claim_from,
                count=100,
            )
            batches = [(stream, claimed)] if claimed else []
            if not batches:
                batches = client.xreadgroup(GROUP, consumer, {stream: ">"}, count=100,
                                            block=block_ms) or []
            for _stream, entries in batches:
                for entry_id, fields in entries:
                    if not may_run():  # leadership lost mid-batch: leave the rest pending
                        break
                    _handle_entry(client, stream, entry_id, fields, handle)
        except redis.RedisError as exc:
            log.warning("event stream unavailable (%s); retrying", exc)
            stop.wait(2)


def _create_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _handle_entry(client: redis.Redis, stream: str, entry_id, fields: dict, handle) -> None:
    if not fields:  # trimmed away while pending
        client.xack(stream, GROUP, entry_id)
        return
    try:
        handle(_decode(fields))
    except Exception as exc:  # noqa: BLE001 - one bad event must not stop the operator
        deliveries = _deliveries(client, stream, entry_id)
        if deliveries >= MAX_DELIVERIES:
            log.error("event %s failed %d times; dropped: %s", entry_id, deliveries, exc)
            client.xack(stream, GROUP, entry_id)
        elif isinstance(exc, RetryLater):
            log.warning("event %s: %s; retried later", entry_id, exc)
        else:
            log.exception("event %s could not be handled; it stays pending", entry_id)
        return
    client.xack(stream, GROUP, entry_id)


def _deliveries(client: redis.Redis, stream: str, entry_id) -> int:
    pending = client.xpending_range(stream, GROUP, min=entry_id, max=entry_id, count=1)
    return int(pending[0]["times_delivered"]) if pending else MAX_DELIVERIES
