"""``emit(notice)``: the one entry point. Routes the notice and queues one Celery task per
destination, without ever raising and without waiting for anything.

Routing is pure and takes microseconds. Publishing to the broker can take seconds (a broker
that is down, or that accepts connections and never answers), so ``emit`` only puts the task
messages into an in-process outbox, and one daemon thread per process publishes them. The
outbox is bounded (:data:`OUTBOX_SIZE`): when the broker has been away long enough to fill it,
further notices are dropped, logged and counted as failed, and the update path never notices.

What this costs: a notice still in the outbox when the process dies is lost (at exit the
outbox gets :data:`FLUSH_SECONDS` to drain). Notifications are a courtesy; updates are not.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from django.conf import settings

from .notice import Notice
from .routing import route

log = logging.getLogger(__name__)

OUTBOX_SIZE = 10_000
FLUSH_SECONDS = 2.0
_REPORTED_MAX = 1000
#: Publishing one message: a short broker hiccup is ridden out, a dead broker is given up on.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5,
                 "interval_max": 1.0}


def _publish(message: dict) -> None:
    from .tasks import deliver

    deliver.apply_async(kwargs={"message": message}, retry=True, retry_policy=PUBLISH_RETRY)


class Outbox:
    """A bounded queue drained by one daemon thread (re-created after a fork)."""

    def __init__(self, publish: Callable[[dict], None] = _publish,
                 size: int = OUTBOX_SIZE) -> None:
        self._publish = publish
        self._size = size
        self._lock = threading.Lock()
        self._pid = -1
        self._queue: queue.Queue = queue.Queue(size)
        self._pending = 0
        self._idle = threading.Condition(self._lock)

    def _ensure_worker(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue(self._size)
            self._pending = 0
            threading.Thread(target=self._drain, args=(self._queue,), daemon=True,
                             name="headwind-notify-outbox").start()
            self._pid = os.getpid()

    def _after_fork(self) -> None:
        """In a forked child (Celery's prefork pool): fresh locks; the thread starts on use."""
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pid = -1

    def put(self, message: dict) -> bool:
        """Queue ``message`` for publishing; False (at once) when the outbox is full."""
        self._ensure_worker()
        with self._lock:
            try:
                self._queue.put_nowait(message)
            except queue.Full:
                return False
            self._pending += 1
        return True

    def _drain(self, box: queue.Queue) -> None:
        while True:
            message = box.get()
            try:
                self._publish(message)
            except Exception as exc:  # noqa: BLE001 — the broker's text may carry its URL
                _not_queued(message, type(exc).__name__)
            finally:
                with self._lock:
                    if box is self._queue:
                        self._pending -= 1
                        if self._pending <= 0:
                            self._idle.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued was handed to the broker (or given up); False when
        ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True


OUTBOX = Outbox()
os.register_at_fork(after_in_child=OUTBOX._after_fork)


@atexit.register
def _flush_at_exit() -> None:
    if OUTBOX._pid == os.getpid():
        OUTBOX.flush(FLUSH_SECONDS)


def _not_queued(message: dict, why: str) -> None:
    from . import metrics

    notice = message.get("notice") or {}
    event, channel = str(notice.get("event", "?")), str(message.get("channel", "?"))
    log.error("notification %s for %s %s/%s to %s not queued: %s", event, notice.get("kind"),
              notice.get("namespace"), notice.get("name"), channel, why)
    metrics.NOTIFICATIONS_FAILED.labels(channel, event).inc()


_reported: set[str] = set()


def _report(problem: str) -> None:
    """Log a routing problem once per process (a storm would otherwise repeat it 200 times)."""
    if problem in _reported:
        return
    if len(_reported) >= _REPORTED_MAX:
        _reported.clear()
    _reported.add(problem)
    log.warning("%s", problem)


def messages_for(notice: Notice) -> list[dict]:
    """The task messages ``emit`` would queue for ``notice`` (one per destination)."""
    config = settings.HEADWIND_NOTIFY
    routed = route(notice, config)
    if routed.problem:
        _report(routed.problem)
    if not routed.destinations:
        return []
    common = {
        "notice": notice.to_message(),
        "id": notice.key,
        "link": notice.link(config.dashboard_url),
        "home": f"{config.dashboard_url}/" if config.dashboard_url else "",
        "policy": {"threshold": config.storm_threshold, "window": config.storm_window,
                   "max_attempts": config.max_attempts},
    }
    return [{**common, "channel": d.channel, "secret": d.secret} for d in routed.destinations]


def emit(notice: Notice) -> None:
    """Tell the configured channels about ``notice``. Returns at once; never raises."""
    try:
        for message in messages_for(notice):
            if not OUTBOX.put(message):
                _not_queued(message, "the outbox is full (is the broker down?)")
    except Exception:  # noqa: BLE001 — a notification must never fail what it reports
        log.exception("notification not queued")
