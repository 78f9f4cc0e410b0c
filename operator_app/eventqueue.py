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


def publish(client: redis.Redis, events: list[ImagePushEvent]) -> list[str]:
    """Append events atomically (one MULTI) so a delivery is queued whole or not at all."""
    pipe = client.pipeline(transaction=True)
    for event in events:
        pipe.xadd(STREAM, _encode(event), maxlen=MAX_LENGTH, approximate=True)
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


def consume(client: redis.Redis, handle: Callable[[ImagePushEvent], object],
            stop: threading.Event, *, may_run: Callable[[], bool] = lambda: True,
            consumer: str | None = None, block_ms: int = 1000) -> None:
    """Feed stream entries to ``handle`` while ``may_run()`` (leadership); ack after handling."""
    consumer = consumer or f"{os.uname().nodename}-{os.getpid()}"
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    claim_from = "0-0"
    while not stop.is_set():
        if not may_run():
            stop.wait(0.5)
            continue
        try:
            # Entries another (dead) leader read but never acknowledged come first.
            claim_from, claimed, _ = client.xautoclaim(
                STREAM, GROUP, consumer, min_idle_time=30_000, start_id=claim_from, count=100
            )
            batches = [(STREAM, claimed)] if claimed else []
            if not batches:
                batches = client.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=100,
                                            block=block_ms) or []
        except redis.RedisError as exc:
            log.warning("event stream unavailable (%s); retrying", exc)
            stop.wait(2)
            continue
        for _stream, entries in batches:
            for entry_id, fields in entries:
                if not fields:  # trimmed away while pending
                    client.xack(STREAM, GROUP, entry_id)
                    continue
                try:
                    handle(_decode(fields))
                except Exception:  # noqa: BLE001 - one bad event must not stop the operator
                    log.exception("event %s could not be handled; it stays pending", entry_id)
                    continue
                client.xack(STREAM, GROUP, entry_id)
