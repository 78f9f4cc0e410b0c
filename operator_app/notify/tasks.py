"""Celery tasks of notifications: one ``deliver`` per (notice, destination), one ``summarise``
per storm window and destination.

Both are idempotent and acknowledged late, like the apply task (``operator_app/tasks.py``):

- transient failures (429, 5xx, no answer, a time-out, an unreadable Secret) are retried with
  backoff 1, 2, 4 … 45 s up to ``max_attempts`` attempts in all (``HEADWIND_NOTIFY_MAX_ATTEMPTS``,
  6); a ``Retry-After`` is honoured (capped at 10 minutes); every single countdown stays at or
  below 45 s, below the broker's 60 s visibility timeout, and a longer wait is a chain of them;
- anything else (another 4xx, a redirect, a missing Secret) is final and logged;
- a destination that timed out is left alone for 30 s (its deliveries wait, counting an
  attempt) so a hanging receiver cannot hold many worker threads for 15 s each.

Task messages carry the notice, the channel's name and a Secret's *name*, never a URL or a
signing secret: the worker reads a global URL from ``settings.HEADWIND_NOTIFY`` and a team's
from its Secret when it sends. Log lines name the destination (``slack (Secret ns/name)``),
never its URL; HTTP errors are described by status and a scrubbed excerpt.

This module is imported by ``operator_app.notify`` itself, so the tasks are registered in
every process that loads the settings (the worker included); it imports nothing heavy until a
task runs.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid

from celery import shared_task
from celery.exceptions import Retry

log = logging.getLogger(__name__)

#: Longest single countdown; see operator_app.tasks.MAX_COUNTDOWN_SECONDS.
MAX_COUNTDOWN_SECONDS = 45
#: A summary is sent this long after its window ends (clocks of workers differ a little).
SUMMARY_GRACE_SECONDS = 2
#: Publishing a retry rides out a short broker outage instead of losing the notification.
PATIENT_PUBLISH = {"max_retries": 20, "interval_start": 0.5, "interval_step": 0.5,
                   "interval_max": 2.0}


def _attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


def backoff(attempt: int) -> int:
    """Seconds before attempt ``attempt + 1``: 1, 2, 4 … 32, then 45."""
    return min(2 ** attempt, MAX_COUNTDOWN_SECONDS)


def _config():
    from django.conf import settings

    return settings.HEADWIND_NOTIFY


class _Defer(Exception):  # noqa: N818 — control flow inside a task, never escapes it
    def __init__(self, countdown: float, attempt: int, not_before: float = 0.0,
                 decided: str = "send") -> None:
        self.countdown = max(0.0, min(countdown, MAX_COUNTDOWN_SECONDS))
        self.attempt = attempt
        self.not_before = not_before
        self.decided = decided


def _wait(seconds: float, attempt: int, decided: str = "send") -> _Defer:
    """A wait of any length as a chain of countdowns of at most 45 s."""
    not_before = time.time() + seconds if seconds > MAX_COUNTDOWN_SECONDS else 0.0
    return _Defer(seconds, attempt, not_before, decided)


# --- one notice to one destination -----------------------------------------------------------


@shared_task(bind=True, acks_late=True, max_retries=None, ignore_result=True,
             name="operator_app.notify.tasks.deliver")
def deliver(self, message: dict, attempt: int = 0, not_before: float = 0.0,
            decided: str = "") -> str:
    """Deliver one notice to one destination; returns the outcome (``sent``, ``held``,
    ``duplicate``, ``failed``). ``attempt``, ``not_before`` and ``decided`` (the storm gate's
    answer, taken once: ``send``, or ``first:<window start>`` while the summary is still to be
    queued) are retry bookkeeping."""
    from . import metrics

    channel = str(message.get("channel", "?"))
    event = str((message.get("notice") or {}).get("event", "?"))
    try:
        return _deliver(self, message, attempt, not_before, decided)
    except _Defer as wait:
        raise self.retry(kwargs={"message": message, "attempt": wait.attempt,
                                 "not_before": wait.not_before, "decided": wait.decided},
                         countdown=wait.countdown, retry_policy=PATIENT_PUBLISH) from None
    except Retry:
        raise
    except Exception as exc:  # noqa: BLE001 — its text may name a URL: logged by type only
        log.error("notification %s to %s failed: %s", event, channel, type(exc).__name__)
        metrics.NOTIFICATIONS_FAILED.labels(channel, event).inc()
        return "failed"


def _deliver(task, message: dict, attempt: int, not_before: float, decided: str) -> str:
    import redis

    from . import metrics, payloads, sending, storm
    from .notice import Notice
    from .routing import Destination

    notice = Notice.from_message(message["notice"])
    destination = Destination(message["channel"], message.get("secret"))
    label = destination.label(notice.namespace)
    dest_key = destination.key(notice.namespace)
    config = _config()
    policy = message.get("policy") or {}
    max_attempts = int(policy.get("max_attempts") or config.max_attempts)
    key = message.get("id") or notice.key
    event = str(notice.event)
    what = f"{event} for {notice.target} ({notice.slot}) to {label}"

    if not_before and time.time() < not_before - 0.5:
        raise _Defer(not_before - time.time(), attempt, not_before, decided)

    store = storm.Store.shared()
    start, window = 0, int(policy.get("window") or config.storm_window)
    if decided:  # a retry: the gate already answered (a task redelivered after a crash asks
        decision = decided  # again, and gets its first answer back)
        if decision.startswith("first:"):
            decision, start = "first", int(decision[6:])
    else:
        try:
            decision, start = store.gate(
                dest_key, key, payloads.summary_item(notice),
                threshold=int(policy.get("threshold") or config.storm_threshold), window=window)
        except redis.RedisError as exc:
            log.warning("notification %s: storm bookkeeping unavailable (%s); sending it on its "
                        "own", what, type(exc).__name__)
            decision, store = "send", None
        if decision in ("first", "held"):
            metrics.NOTIFICATIONS_HELD.labels(destination.channel).inc()
    if decision == "first":  # this delivery owes the window its summary
        try:
            schedule_summary(destination, notice.namespace, start, window,
                             home=message.get("home") or "", max_attempts=max_attempts)
        except Exception as exc:  # noqa: BLE001 — asked again with the same answer
            if attempt + 1 >= max_attempts:
                return _give_up(None, dest_key, key, what, "its storm summary could not be "
                                f"queued ({type(exc).__name__})", destination.channel, event)
            log.warning("notification %s: storm summary not queued (%s); again in %ds",
                        what, type(exc).__name__, backoff(attempt))
            raise _wait(backoff(attempt), attempt + 1, f"first:{start}") from None
    if decision in ("first", "held"):
        return "held"

    owner = task.request.id or key
    if store is not None:
        state = store.begin(dest_key, key, owner)
        if state != "go":
            log.info("notification %s already %s; not sent again", what,
                     "being sent" if state.startswith("sending:") else state)
            return "duplicate"
        waiting = store.down_for(dest_key)
        if waiting:
            return _again(store, dest_key, key, owner, what, attempt, max_attempts,
                          f"{label} timed out lately", waiting, channel=destination.channel,
                          event=event)

    try:
        url, signing = sending.resolve(destination, notice.namespace, config)
    except sending.DestinationError as exc:
        if exc.transient:
            return _again(store, dest_key, key, owner, what, attempt, max_attempts, str(exc),
                          backoff(attempt), channel=destination.channel, event=event)
        return _give_up(store, dest_key, key, what, str(exc), destination.channel, event)

    payload = sending.payload_for(destination.channel, notice, message.get("link") or "", key)
    outcome = sending.send(destination.channel, url, payload, verify=config.verify,
                           signing_secret=signing, event=event, delivery_id=key)
    if outcome.ok:
        if store is not None:
            store.done(dest_key, key, "sent")
        metrics.NOTIFICATIONS_SENT.labels(destination.channel, event).inc()
        log.info("notification %s sent (%s)", what, outcome.detail)
        return "sent"
    if outcome.timed_out and store is not None:
        store.trip(dest_key)
    if outcome.transient:
        wait = outcome.retry_after if outcome.retry_after is not None else backoff(attempt)
        return _again(store, dest_key, key, owner, what, attempt, max_attempts, outcome.detail,
                      wait, channel=destination.channel, event=event)
    return _give_up(store, dest_key, key, what, outcome.detail, destination.channel, event)


def _again(store, dest_key: str, key: str, owner: str, what: str, attempt: int,
           max_attempts: int, detail: str, wait: float, *, channel: str, event: str) -> str:
    if attempt + 1 >= max_attempts:
        return _give_up(store, dest_key, key, what, f"{detail}; gave up after "
                        f"{_attempts(attempt + 1)}", channel, event)
    if store is not None:
        store.release(dest_key, key, owner)
    log.warning("notification %s: %s (attempt %d of %d; next in %.0fs)", what, detail,
                attempt + 1, max_attempts, wait)
    raise _wait(wait, attempt + 1)


def _give_up(store, dest_key: str, key: str, what: str, detail: str, channel: str,
             event: str) -> str:
    from . import metrics

    if store is not None:
        store.done(dest_key, key, "failed")
    metrics.NOTIFICATIONS_FAILED.labels(channel, event).inc()
    log.warning("notification %s failed: %s", what, detail)
    return "failed"


# --- storm summaries -------------------------------------------------------------------------


def schedule_summary(destination, namespace: str, start: int, window: int, *, home: str,
                     max_attempts: int) -> None:
    """Queue the summary of ``destination``'s window starting at ``start`` (raises the broker's
    error, so the delivery that held the first notice is retried and schedules it again)."""
    from . import storm

    due = start + window + SUMMARY_GRACE_SECONDS - storm.Store.shared().now()
    summarise.apply_async(
        kwargs={"channel": destination.channel, "secret": destination.secret,
                "namespace": namespace, "start": start, "window": window,
                "token": uuid.uuid4().hex, "home": home, "max_attempts": max_attempts},
        countdown=max(0.0, min(due, MAX_COUNTDOWN_SECONDS)), retry_policy=PATIENT_PUBLISH)


@shared_task(bind=True, acks_late=True, max_retries=None, ignore_result=True,
             name="operator_app.notify.tasks.summarise")
def summarise(self, channel: str, secret: str | None, namespace: str, start: int, window: int,
              token: str, home: str = "", max_attempts: int = 6, attempt: int = 0,
              not_before: float = 0.0) -> str:
    """Send the one summary of a storm window, once its window is over: ``sent``, ``empty``,
    ``duplicate`` (another task sent it) or ``failed``."""
    from . import metrics

    kwargs = {"channel": channel, "secret": secret, "namespace": namespace, "start": start,
              "window": window, "token": token, "home": home, "max_attempts": max_attempts}
    try:
        return _summarise(kwargs, attempt, not_before)
    except _Defer as wait:
        raise self.retry(kwargs={**kwargs, "attempt": wait.attempt,
                                 "not_before": wait.not_before},
                         countdown=wait.countdown, retry_policy=PATIENT_PUBLISH) from None
    except Retry:
        raise
    except Exception as exc:  # noqa: BLE001 — its text may name a URL: logged by type only
        log.error("notification summary to %s failed: %s", channel, type(exc).__name__)
        metrics.NOTIFICATIONS_FAILED.labels(channel, "summary").inc()
        return "failed"


def _summarise(kw: dict, attempt: int, not_before: float) -> str:
    from datetime import UTC, datetime

    from . import metrics, payloads, sending, storm
    from .routing import Destination

    destination = Destination(kw["channel"], kw["secret"])
    namespace, start, window = kw["namespace"], int(kw["start"]), int(kw["window"])
    label = destination.label(namespace)
    dest_key = destination.key(namespace)
    store = storm.Store.shared()
    now = store.now()
    due = start + window + SUMMARY_GRACE_SECONDS
    if now < due:
        raise _Defer(due - now, attempt)
    if not_before and time.time() < not_before - 0.5:
        raise _Defer(not_before - time.time(), attempt, not_before)

    state, held, items = store.claim(dest_key, start, kw["token"])
    if state == "done":
        return "duplicate"
    if state == "busy":  # another task has it: look again when its claim would have lapsed
        raise _Defer(held / 1000 + 1, attempt)
    if held <= 0:
        store.finish(dest_key, start, kw["token"], "empty")
        return "empty"

    what = f"summary of {held} notifications to {label}"
    delivery_id = hashlib.sha256(f"{dest_key}:{start}".encode()).hexdigest()[:32]
    summary = payloads.Summary(count=held, start=datetime.fromtimestamp(start, UTC),
                               end=datetime.fromtimestamp(start + window, UTC), items=items)
    config = _config()

    def give_up(detail: str) -> str:
        store.finish(dest_key, start, kw["token"], "failed")
        metrics.NOTIFICATIONS_FAILED.labels(destination.channel, "summary").inc()
        log.warning("notification %s failed: %s", what, detail)
        return "failed"

    def again(detail: str, wait: float) -> str:
        if attempt + 1 >= kw["max_attempts"]:
            return give_up(f"{detail}; gave up after {_attempts(attempt + 1)}")
        log.warning("notification %s: %s (attempt %d of %d; next in %.0fs)", what, detail,
                    attempt + 1, kw["max_attempts"], wait)
        raise _wait(wait, attempt + 1)

    try:
        url, signing = sending.resolve(destination, namespace, config)
    except sending.DestinationError as exc:
        return again(str(exc), backoff(attempt)) if exc.transient else give_up(str(exc))
    payload = sending.summary_payload_for(destination.channel, summary, kw["home"], delivery_id)
    outcome = sending.send(destination.channel, url, payload, verify=config.verify,
                           signing_secret=signing, event="summary", delivery_id=delivery_id)
    if outcome.ok:
        store.finish(dest_key, start, kw["token"], "sent")
        metrics.NOTIFICATIONS_SENT.labels(destination.channel, "summary").inc()
        log.info("notification %s sent (%s)", what, outcome.detail)
        return "sent"
    if outcome.timed_out:
        store.trip(dest_key)
    if outcome.transient:
        return again(outcome.detail, outcome.retry_after if outcome.retry_after is not None
                     else backoff(attempt))
    return give_up(outcome.detail)
