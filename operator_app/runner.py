"""The long-running operator loop (watchers + event processing)."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


def run(api) -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    log.info("operator running; waiting for work")
    while not stop.wait(5):
        pass
    log.info("operator stopped")
