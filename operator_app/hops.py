"""Where the time of one webhook-driven update goes, recorded by the product itself.

An update decided from a registry notification passes five processes' hands: the webhook view
(web), the Redis event stream, the engine (operator), the Celery broker and the task (worker).
Each hand adds a wall-clock stamp (``time.time()``; every process of one install runs on
synchronised clocks, and the hops are milliseconds long) to a small dict that travels with the
work:

``received``  the webhook view starts reading the delivery (written into the stream entry);
``queued``    Redis accepted the entry (its stream ID: millisecond resolution, Redis's clock);
``read``      the operator's consumer took the entry from the stream;
``verified``  webhook verification answered (the HEAD to the registry; ``read`` when off);
``decided``   the engine chose the update and the dispatcher hands it to Celery;
``started``   a worker thread starts the task;
``patched``   the API server accepted the patch.

The stamps ride in the stream entry and then in a Celery message header (not an argument, so a
worker that does not know them ignores them), and live in a thread-local in between, so no
signature on the path has to carry them. When an update is patched, each hop's duration is
observed in ``headwind_update_hop_seconds{hop}`` (``hop`` names the stamp it ends at, plus
``total``: received → patched), and with ``HEADWIND_LOG_HOPS=true`` one line
``update hops {json}`` is logged per update (``bench/latency.py`` reads it). Nothing samples or
profiles: a few ``time.time()`` calls and dict writes per update.

Updates that did not come from a webhook (polling, approvals, rollbacks) carry no stamps and
record nothing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)
if os.environ.get("HEADWIND_LOG_HOPS", "").strip().lower() in ("1", "true", "yes", "on"):
    log.setLevel(logging.DEBUG)

#: In the order an update passes them; a hop is named by the stamp it ends at.
STAMPS = ("received", "queued", "read", "verified", "decided", "started", "patched")
#: The Celery message header that carries the stamps from the operator to the worker.
HEADER = "headwind_hops"
#: The stream entry field that carries ``received`` from the web to the operator.
RECEIVED_FIELD = "received"

_local = threading.local()


def begin(stamps: Mapping[str, float] | None, **now: float) -> None:
    """This thread now works on an item carrying ``stamps`` (None: an untimed item, and any
    stamps left from the previous item are dropped); ``now`` adds stamps at once."""
    _local.stamps = {**stamps, **now} if stamps is not None else None


def from_entry(fields: Mapping, queued: float | None) -> None:
    """Start timing a stream entry (the consumer, before handling it): webhook deliveries
    carry ``received``; entries without it (the poller's, older webs') are not timed."""
    raw = fields.get(RECEIVED_FIELD, fields.get(RECEIVED_FIELD.encode()))
    try:
        received = float(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError):
        begin(None)
        return
    # The stream ID has millisecond resolution: never before the delivery was received.
    begin({"received": received, "queued": max(queued or received, received)},
          read=time.time())


def mark(name: str) -> None:
    """Stamp ``name`` now on this thread's item, if it is timed (first stamp wins)."""
    stamps = getattr(_local, "stamps", None)
    if stamps is not None:
        stamps.setdefault(name, time.time())


def stamped(name: str) -> dict[str, float] | None:
    """A copy of this thread's stamps with ``name`` stamped now (one per dispatched update: an
    event that moves several containers hands each its own), or None when untimed."""
    stamps = getattr(_local, "stamps", None)
    if stamps is None:
        return None
    return {**stamps, name: time.time()}


def end(label: str = "") -> dict[str, float] | None:
    """This thread's item is done; when it was patched, observe and log its hops. Returns the
    hops in seconds (None when untimed or not patched)."""
    stamps = getattr(_local, "stamps", None)
    _local.stamps = None
    if not stamps or "patched" not in stamps or "received" not in stamps:
        return None
    durations = hops_of(stamps)
    from .metrics import UPDATE_HOP_SECONDS

    for hop, seconds in durations.items():
        UPDATE_HOP_SECONDS.labels(hop).observe(seconds)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("update hops %s", json.dumps({"update": label, "stamps": stamps},
                                               separators=(",", ":")))
    return durations


def hops_of(stamps: Mapping[str, float]) -> dict[str, float]:
    """Seconds per hop (named by the stamp it ends at) and ``total``; a missing stamp makes
    the next hop span both."""
    durations: dict[str, float] = {}
    previous = None
    for name in STAMPS:
        if name not in stamps:
            continue
        if previous is not None:
            durations[name] = max(0.0, stamps[name] - stamps[previous])
        previous = name
    if "received" in stamps and "patched" in stamps:
        durations["total"] = max(0.0, stamps["patched"] - stamps["received"])
    return durations
