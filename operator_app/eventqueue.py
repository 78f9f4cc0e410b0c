"""The durable hand-off from triggers (webhook views, poller) to the operator's engine.

A Redis stream with one consumer group: a webhook returns 202 only after its events are in the
stream, and the operator acknowledges an entry only after the engine has dispatched it, so a crash
in between replays it (the engine's effects are idempotent).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import redis

from . import hops, metrics
from .core.events import EventSource, ImagePushEvent

log = logging.getLogger(__name__)

STREAM = "headwind:image-events"
GROUP = "headwind-operator"
MAX_LENGTH = 100_000


def connect(url: str | None = None) -> redis.Redis:
    from django.conf import settings

    return redis.Redis.from_url(url or settings.REDIS_URL, socket_timeout=10,
                                socket_connect_timeout=5, health_check_interval=30)


_shared: dict[str, redis.Redis] = {}
_shared_lock = threading.Lock()


def shared(url: str | None = None) -> redis.Redis:
    """One client (and so one connection pool) per URL for the whole process: the webhook view
    publishes on a connection it already has instead of opening one per delivery."""
    from django.conf import settings

    url = url or settings.REDIS_URL
    client = _shared.get(url)
    if client is None:
        with _shared_lock:
            client = _shared.get(url)
            if client is None:
                client = _shared[url] = connect(url)
    return client


def publish(client: redis.Redis, events: list[ImagePushEvent],
            stream: str = STREAM, *, received: float | None = None) -> list[str]:
    """Append events atomically (one MULTI) so a delivery is queued whole or not at all.

    ``received`` (``time.time()`` when the delivery arrived) rides along for the update's hop
    timing (operator_app/hops.py)."""
    pipe = client.pipeline(transaction=True)
    for event in events:
        fields = _encode(event)
        if received is not None:
            fields[hops.RECEIVED_FIELD] = repr(received)
        pipe.xadd(stream, fields, maxlen=MAX_LENGTH, approximate=True)
    return [entry.decode() if isinstance(entry, bytes) else entry for entry in pipe.execute()]


def _encode(event: ImagePushEvent) -> dict[str, str]:
    return {"repository": event.repository, "tag": event.tag, "digest": event.digest or "",
            "source": str(event.source)}


def _decode(fields: dict, entry_id: str = "") -> ImagePushEvent:
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}
    return ImagePushEvent(repository=text["repository"], tag=text["tag"],
                          digest=text.get("digest") or None,
                          source=EventSource(text.get("source", "webhook")),
                          received_at=_entry_time(entry_id))


def _entry_time(entry_id: str) -> float | None:
    """A stream ID is ``<milliseconds>-<sequence>``: when Redis accepted the entry."""
    milliseconds, _, _ = str(entry_id).partition("-")
    return int(milliseconds) / 1000 if milliseconds.isdigit() else None


MAX_DELIVERIES = 10


class RetryLater(Exception):
    """Raised by a handler for a passing condition (registry down, a tag not readable yet).

    The entry stays pending. With ``delay`` the consumer tries it again after that many
    seconds (bounded by the handler itself); without, it is claimed again after
    ``CLAIM_IDLE_MS``, up to ``MAX_DELIVERIES`` times. A crash loses nothing either way: the
    entry is pending in Redis and claimed by the next leader.
    """

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


CLAIM_IDLE_MS = 30_000


def _id(entry_id) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


class _Consumer:
    """One leader's reading of the stream; see :func:`consume`."""

    def __init__(self, client: redis.Redis, handle: Callable[[ImagePushEvent], object],
                 stream: str, consumer: str, claim_idle_ms: int,
                 prepare: Callable[[list[ImagePushEvent]], object] | None = None) -> None:
        self.client = client
        self.handle = handle
        self.prepare = prepare
        self.stream = stream
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.group_ready = False
        self.claim_from = "0-0"
        self.last_acked: str | None = None
        self.delayed: dict[str, tuple[float, dict]] = {}  # entry id -> (due, fields)

    def ensure_group(self) -> None:
        """Create the group if needed. After a Redis restart (group gone, stream maybe empty)
        it is recreated from the last entry we acknowledged, so nothing newer is skipped and
        nothing we already handled is handled again."""
        if self.group_ready:
            return
        start = self.last_acked or "0"
        try:
            self.client.xgroup_create(self.stream, GROUP, id=start, mkstream=True)
            if self.last_acked is not None:
                log.warning("event stream group recreated from %s (Redis lost it)", start)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.group_ready = True
        self.claim_from = "0-0"

    def step(self, block_ms: int, may_run: Callable[[], bool]) -> None:
        self.ensure_group()
        for entry_id, fields in self._due():
            if not may_run():
                return
            self._run(entry_id, fields)
        # Entries another (dead) leader read but never acknowledged come first.
        self.claim_from, claimed, _ = self.client.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_time=self.claim_idle_ms,
            start_id=self.claim_from, count=100)
        entries = [(entry_id, fields) for entry_id, fields in claimed
                   if _id(entry_id) not in self.delayed]
        if not claimed:
            wait = block_ms
            if self.delayed:
                soonest = min(due for due, _ in self.delayed.values())
                wait = int(max(1, min(block_ms, (soonest - time.monotonic()) * 1000)))
            batches = self.client.xreadgroup(GROUP, self.consumer, {self.stream: ">"},
                                             count=100, block=wait) or []
            entries = [entry for _stream, found in batches for entry in found]
        if self.prepare is not None and len(entries) > 1:
            self._prepare(entries)
        for entry_id, fields in entries:
            if not may_run():  # leadership lost mid-batch: leave the rest pending
                return
            self._run(_id(entry_id), fields)

    def _prepare(self, entries: list) -> None:
        """Let the handler start slow work for a whole batch at once (webhook verification's
        HEADs, in parallel); it only warms what ``handle`` then does one entry at a time, so a
        failure here changes nothing but speed."""
        events = []
        for entry_id, fields in entries:
            try:
                events.append(_decode(fields, _id(entry_id)))
            except Exception:  # noqa: BLE001, S112 - _run reports a bad entry
                continue
        try:
            self.prepare(events)
        except Exception:  # noqa: BLE001 - an optimisation only
            log.debug("preparing a batch of %d events failed", len(events), exc_info=True)

    def _due(self) -> list[tuple[str, dict]]:
        now = time.monotonic()
        due = [(entry_id, fields) for entry_id, (when, fields) in self.delayed.items()
               if when <= now]
        for entry_id, _fields in due:
            del self.delayed[entry_id]
            # Reset its idle time, so XAUTOCLAIM does not hand it to us a second time.
            self.client.xclaim(self.stream, GROUP, self.consumer, 0, [entry_id], justid=True)
        return due

    def _run(self, entry_id: str, fields: dict) -> None:
        if not fields:  # trimmed away while pending
            self._ack(entry_id)
            return
        try:
            # Inside the try: an entry that cannot be decoded is one bad event, retried and
            # then dropped like any other, never the end of the consumer.
            event = _decode(fields, entry_id)
            hops.from_entry(fields, event.received_at)
            self.handle(event)
        except RetryLater as exc:
            if exc.delay is not None:
                log.info("event %s: %s; trying again in %.1fs", entry_id, exc, exc.delay)
                self.delayed[entry_id] = (time.monotonic() + exc.delay, fields)
                return
            self._failed(entry_id, exc, quiet=True)
            return
        except redis.RedisError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad event must not stop the operator
            self._failed(entry_id, exc)
            return
        self._ack(entry_id)

    def _failed(self, entry_id: str, exc: Exception, *, quiet: bool = False) -> None:
        deliveries = self._deliveries(entry_id)
        if deliveries >= MAX_DELIVERIES:
            log.error("event %s failed %d times; dropped: %s", entry_id, deliveries, exc)
            self._ack(entry_id)
            metrics.EVENT_ERRORS.labels("dropped").inc()
            return
        metrics.EVENT_ERRORS.labels("retried").inc()
        if quiet:
            log.warning("event %s: %s; retried later", entry_id, exc)
        else:
            log.exception("event %s could not be handled; it stays pending", entry_id)

    def _ack(self, entry_id: str) -> None:
        self.client.xack(self.stream, GROUP, entry_id)
        self.last_acked = entry_id

    def _deliveries(self, entry_id: str) -> int:
        pending = self.client.xpending_range(self.stream, GROUP, min=entry_id, max=entry_id,
                                             count=1)
        return int(pending[0]["times_delivered"]) if pending else MAX_DELIVERIES


def consume(client: redis.Redis, handle: Callable[[ImagePushEvent], object],
            stop: threading.Event, *, may_run: Callable[[], bool] = lambda: True,
            consumer: str | None = None, block_ms: int = 1000, stream: str = STREAM,
            claim_idle_ms: int = CLAIM_IDLE_MS,
            prepare: Callable[[list[ImagePushEvent]], object] | None = None) -> None:
    """Feed stream entries to ``handle`` while ``may_run()`` (leadership); ack after handling.
    ``prepare(events)``, when given, sees each batch of more than one entry first (see
    ``_Consumer._prepare``).

    Redis failures never end the loop: it retries every 2 s, and when Redis comes back without
    our consumer group (a restart without persistence: every command answers NOGROUP) the group
    is created again from the last acknowledged entry. An entry that keeps failing is dropped
    (logged) after ``MAX_DELIVERIES`` attempts instead of being retried for ever.
    """
    state = _Consumer(client, handle, stream, consumer or f"{os.uname().nodename}-{os.getpid()}",
                      claim_idle_ms, prepare)
    while not stop.is_set():
        if not may_run():
            state.delayed.clear()  # the next leader claims them from Redis
            stop.wait(0.5)
            continue
        try:
            state.step(block_ms, may_run)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                log.warning("event stream consumer group is gone (Redis restarted?); "
                            "recreating it")
                state.group_ready = False
                state.delayed.clear()
                continue
            log.warning("event stream error (%s); retrying", exc)
            stop.wait(2)
        except redis.RedisError as exc:
            log.warning("event stream unavailable (%s); retrying", exc)
            state.group_ready = False  # Redis may come back empty: make sure the group exists
            stop.wait(2)
