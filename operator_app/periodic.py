"""Work the leader does every so often (expiring requests, carrying out approvals)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


class LeaderLoop(threading.Thread):
    """Every ``interval`` seconds, while ``is_leader()``, run each piece of ``work`` in turn.

    One failing piece is logged and the others still run; the loop outlives every failure.
    """

    def __init__(self, name: str, interval: float, work: Sequence[Callable[[], object]],
                 stop: threading.Event, is_leader: Callable[[], bool]) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.work = list(work)
        self.stop_event = stop
        self.is_leader = is_leader
        self.runs = 0  # passes done while leading
        self.passes = 0  # every wake-up, leading or not

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.passes += 1
            if not self.is_leader():
                continue
            for piece in self.work:
                try:
                    piece()
                except Exception:  # noqa: BLE001 - the loop must outlive one bad pass
                    log.exception("%s: %s failed", self.name, getattr(piece, "__name__", piece))
            self.runs += 1
