"""Celery tasks of the operator. Tasks parse arguments and call a service; they are idempotent."""

from __future__ import annotations

import logging
import os

import urllib3
from celery import shared_task
from celery.signals import worker_init

from . import kube, metrics, updates

log = logging.getLogger(__name__)

#: Transient failures (API server unreachable, 429, 5xx) retried before the update is failed.
TRANSIENT_RETRIES = 10
#: Longest single countdown. Redis redelivers unacknowledged messages after its visibility
#: timeout (1 h), so longer waits are split; a re-check that is still too early defers again.
MAX_COUNTDOWN_SECONDS = 3000


@shared_task
def cluster_version() -> str:
    """Which API server the worker reaches: a cheap end-to-end check of worker, broker and creds."""
    api = kube.api_client()
    try:
        return kube.probe(api).version
    finally:
        api.close()


def _backoff(attempt: int) -> int:
    """1, 2, 4 … 256, then 300 seconds: about 9 minutes over ten attempts."""
    return min(2 ** attempt, 300)


@shared_task(bind=True, acks_late=True, max_retries=None)
def apply_update_task(
    self,
    kind: str,
    namespace: str,
    name: str,
    container: str,
    new_image: str,
    expected_image: str | None = None,
    update_request: str | None = None,
    actor: str = "headwind",
    transient_attempt: int = 0,
) -> dict:
    """Apply one update (``updates.apply_update``); returns ``{"outcome", "message"}``.

    ``deferred`` re-queues the task for when the min-update-interval has passed; transient API
    errors are retried with backoff ``TRANSIENT_RETRIES`` times and then recorded as a failure.
    ``transient_attempt`` is internal bookkeeping for that count.
    """
    call = {
        "kind": kind, "namespace": namespace, "name": name, "container": container,
        "new_image": new_image, "expected_image": expected_image,
        "update_request": update_request, "actor": actor,
    }
    api = None
    try:
        api = kube.api_client()
        result = updates.apply_update(api, **call)
    except (kube.KubeError, kube.ClusterUnreachable, updates.WorkloadContention,
            urllib3.exceptions.HTTPError, OSError) as exc:
        if not updates.is_transient(exc):
            raise
        if transient_attempt >= TRANSIENT_RETRIES:
            message = f"gave up after {transient_attempt + 1} attempts: {exc}"
            if api is not None:
                updates.record_failure(api, message=message, **_without(call))
            else:
                log.warning("failed: %s %s/%s container %s → %s: %s", kind, namespace, name,
                            container, new_image, message)
            return {"outcome": "failed", "message": message}
        countdown = _backoff(transient_attempt)
        log.warning("transient error applying %s %s/%s container %s (attempt %d; retry in "
                    "%ds): %s", kind, namespace, name, container, transient_attempt + 1,
                    countdown, exc)
        raise self.retry(
            args=(), kwargs={**call, "transient_attempt": transient_attempt + 1},
            countdown=countdown, exc=exc,
        ) from None
    finally:
        if api is not None:
            api.close()
    if result.outcome == "deferred":
        raise self.retry(
            args=(), kwargs={**call, "transient_attempt": 0},
            countdown=min(result.retry_after or 1.0, MAX_COUNTDOWN_SECONDS),
        )
    return {"outcome": result.outcome, "message": result.message}


def _without(call: dict) -> dict:
    """``record_failure``'s arguments: everything but ``expected_image``."""
    return {key: value for key, value in call.items() if key != "expected_image"}


@worker_init.connect
def serve_worker_metrics(**_kwargs) -> None:
    """Worker metrics on ``HEADWIND_WORKER_METRICS_PORT`` (default 9091, ``0`` disables)."""
    text = os.environ.get("HEADWIND_WORKER_METRICS_PORT", "9091").strip() or "0"
    try:
        port = int(text)
    except ValueError:
        log.error("HEADWIND_WORKER_METRICS_PORT=%r is not a port number; no worker metrics", text)
        return
    try:
        metrics.serve(port)
    except OSError as exc:  # a busy port must not keep the worker from applying updates
        log.error("worker metrics not served on :%d: %s", port, exc)
