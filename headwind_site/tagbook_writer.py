"""The operator records every pushed tag in the tag book (registry.tagbook) on a thread of its
own, so the event consumer goes on to the next event instead of waiting for the database.

Recording a push is a transaction of a few statements (about half of the consumer's time per
event at 50 pushes/s, bench/latency.py) and nothing on the update's path needs it: the update
was already dispatched when the push is recorded. What does read the tag book, the engine's
``headwind.sh/min-release-age`` check, reads it through :meth:`TagBookWriter.released`, which
first waits for every push handed over before, so a decision sees exactly what it saw when the
push was recorded inline.

Writes keep their order (one thread). When the queue is full (the database much slower than
the pushes) a push is recorded inline, as before: back-pressure, not loss. A push still queued
when the operator stops is written by :meth:`close`; a crash loses at most those few first-seen
times, which the next listing of the repository (polling, the radar) records again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from django.db import close_old_connections, connection

from registry import tagbook

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000


class TagBookWriter:
    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=MAX_QUEUED)
        self._thread = threading.Thread(target=self._run, name="tagbook-writer", daemon=True)
        self._thread.start()

    def record_push(self, repository: str, tag: str, digest: str | None, *,
                    source: str = "webhook") -> None:
        """``tagbook.record_push``, on the writer's thread (inline when its queue is full)."""
        # now: the push's first-seen time, however long it waits in the queue
        item = (repository, tag, digest, source, datetime.now(UTC))
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._write(item)

    def released(self, repository: str) -> Mapping[str, datetime]:
        """``tagbook.released``, once every push handed over before is written."""
        self._queue.join()
        return tagbook.released(repository)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                try:
                    if item is None:
                        return
                    self._write(item)
                finally:
                    self._queue.task_done()
        finally:
            connection.close()

    @staticmethod
    def _write(item: tuple) -> None:
        repository, tag, digest, source, now = item
        close_old_connections()
        try:
            tagbook.record_push(repository, tag, digest, source=source, now=now)
        except Exception:  # noqa: BLE001 - the writer must outlive one bad row
            log.exception("tag book: push %s:%s not recorded", repository, tag)

