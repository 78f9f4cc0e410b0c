"""Celery tasks of the operator. Tasks parse arguments and call a service; they are idempotent."""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import worker_init
from django.conf import settings

from . import apply, hops, kube, metrics
from .hops import HEADER as HOPS_HEADER

log = logging.getLogger(__name__)

#: Transient failures (API server unreachable, 429, 5xx) retried before the update is failed.
TRANSIENT_RETRIES = 10
#: Longest single countdown. Redis hands an unacknowledged message out again after the broker's
#: visibility timeout (60 s, settings.CELERY_BROKER_VISIBILITY_TIMEOUT), and a task waiting for
#: its countdown is unacknowledged, so every wait stays well below it; a re-check that is still
#: too early simply defers again (one read per 45 s).
MAX_COUNTDOWN_SECONDS = 45
#: A task that re-queues itself (deferred, or a transient error) while Redis is away keeps
#: trying to publish for about three minutes, holding its own message unacknowledged, rather
#: than giving up after Celery's default second of retries: that turned a Redis restart into a
#: lost update (the message was rejected, the new one never sent).
PATIENT_PUBLISH = {"max_retries": 100, "interval_start": 0.5, "interval_step": 0.5,
                   "interval_max": 2.0}


@shared_task
def cluster_version() -> str:
    """Which API server the worker reaches: a cheap end-to-end check of worker, broker and creds."""
    api = kube.api_client()
    try:
        return kube.probe(api).version
    finally:
        api.close()


def _backoff(attempt: int) -> int:
    """1, 2, 4 … 32, then 45 seconds (below the visibility timeout): about 4 minutes over ten
    attempts."""
    return min(2 ** attempt, MAX_COUNTDOWN_SECONDS)


def _retry(task, **options) -> Exception:
    """``task.retry(**options)``, without ever dropping the update.

    Celery's retry publishes a new message and then acknowledges this one; when the publish
    fails it raises ``Reject(requeue=False)``, and the update is gone. That happens while the
    broker restarts (kombu's pool may then even hand out a half-closed connection, an
    AttributeError no publish retry policy covers). The message is put back instead: at once
    when the broker answers, else after the visibility timeout, as for a killed worker.

    The retry keeps the run's ``ignore_result`` (Celery's retry does not carry it over)."""
    options.setdefault("ignore_result", bool(task.request.ignore_result))
    try:
        return task.retry(**options)
    except Reject as refused:
        log.warning("retry of %s not queued (%s); the message goes back to the queue",
                    task.request.id, refused.reason)
        return Reject(refused.reason, requeue=True)


@shared_task(bind=True, acks_late=True, max_retries=None, ignore_result=True)
def apply_update_task(self, command: dict, transient_attempt: int = 0) -> dict:
    """Apply one update (``apply.apply_update``); returns ``{"outcome", "message"}``.

    The result is not stored (``ignore_result``): nothing waits on it, the outcome is recorded
    on the cluster (the workload, its Event, the UpdateRequest), and storing it cost every
    update two more Redis round trips and a key kept for a day. A caller that wants it asks
    with ``apply_async(..., ignore_result=False)`` (the tests do).

    ``command`` is an :class:`~operator_app.apply.UpdateCommand` as a message. ``deferred``
    re-queues the task for when the min-update-interval has passed; transient API errors are
    retried with backoff ``TRANSIENT_RETRIES`` times and then recorded as a failure.
    ``transient_attempt`` is internal bookkeeping for that count.
    """
    update = apply.UpdateCommand.from_message(command)
    # Only a first run is timed: a retry's wait (deferral, backoff) is not a hop of the path.
    hops.begin(self.request.get(hops.HEADER) if not self.request.retries else None,
               started=time.time())
    api = None
    healthy = False
    try:
        api = _thread_api()
        result = apply.apply_update(api, update)
        healthy = True
        hops.end(f"{update.label} → {update.new_image}")
    except (kube.KubeError, apply.WorkloadContention, apply.StatusContention) as exc:
        if not apply.is_transient(exc):
            raise
        if transient_attempt >= TRANSIENT_RETRIES:
            message = f"gave up after {transient_attempt + 1} attempts: {exc}"
            if api is not None:
                apply.record_failure(api, update, message)
            else:
                log.warning("failed: %s → %s: %s", update.label, update.new_image, message)
            return {"outcome": "failed", "message": message}
        countdown = _backoff(transient_attempt)
        log.warning("transient error applying %s (attempt %d; retry in %ds): %s", update.label,
                    transient_attempt + 1, countdown, exc)
        raise _retry(
            self,
            args=(), kwargs={"command": command, "transient_attempt": transient_attempt + 1},
            countdown=countdown, exc=exc, retry_policy=PATIENT_PUBLISH,
        ) from None
    finally:
        if api is not None and not healthy:
            _forget_api(api)  # its connection may be what failed: the next task starts afresh
    if result.outcome == "deferred":
        raise _retry(
            self,
            args=(), kwargs={"command": command, "transient_attempt": 0},
            countdown=min(result.retry_after or 1.0, MAX_COUNTDOWN_SECONDS),
            retry_policy=PATIENT_PUBLISH,
        )
    return {"outcome": result.outcome, "message": result.message}


#: A worker thread keeps its API client (its kubeconfig, its TLS connection) this long: a new
#: client per task cost a kubeconfig read and a TLS handshake on every update, about half of
#: the task's time to its patch (bench/latency.py).
API_CLIENT_MAX_AGE_SECONDS = 300.0
_threads = threading.local()


def _thread_api():
    """This worker thread's API client, made again after ``API_CLIENT_MAX_AGE_SECONDS`` (so
    rotated credentials are read) or after a failure (:func:`_forget_api`)."""
    cached = getattr(_threads, "api", None)
    if cached is not None:
        api, made = cached
        if time.monotonic() - made < API_CLIENT_MAX_AGE_SECONDS:
            return api
        _forget_api(api)
    api = kube.api_client()
    _threads.api = (api, time.monotonic())
    return api


def _forget_api(api) -> None:
    if getattr(_threads, "api", (None,))[0] is api:
        _threads.api = None
    api.close()


def queue_update(update: apply.UpdateCommand, *, hops: dict[str, float] | None = None) -> None:
    """Hand ``update`` to a worker (raises the broker's error when it cannot be queued).

    ``hops``, the stamps of a webhook-driven update (operator_app/hops.py), travel in a message
    header: a worker that does not read them still runs the task."""
    if hops:
        apply_update_task.apply_async(kwargs={"command": update.to_message()},
                                      headers={HOPS_HEADER: hops})
    else:
        apply_update_task.delay(command=update.to_message())


@worker_init.connect
def serve_worker_metrics(**_kwargs) -> None:
    """Worker metrics on ``HEADWIND_WORKER_METRICS_PORT`` (default 9091, ``0`` disables)."""
    port = settings.HEADWIND.worker_metrics_port
    try:
        metrics.serve(port)
    except OSError as exc:  # a busy port must not keep the worker from applying updates
        log.error("worker metrics not served on :%d: %s", port, exc)
