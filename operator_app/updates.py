"""Applying one image update to one workload container, idempotently.

The live object is read again and every check is made at apply time (not at detection time):
the container still exists, the image is not already the new one, nobody else moved it
(``expected_image``), and ``headwind.sh/min-update-interval`` has passed since
``headwind.sh/last-update``. The write is a JSON Patch that first tests the resourceVersion and
the container's position, so a concurrent edit makes the patch fail instead of being lost; the
object is then re-read and the checks run again.

Every update writes ``headwind.sh/last-update`` (plain RFC 3339 UTC, so the interval check can
always read it back) and ``headwind.sh/update-history`` for every workload kind.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import urllib3

from . import metrics, update_requests
from .core.images import InvalidImageReference, parse_image
from .core.policy import InvalidPolicy, Policy, PolicySpec, choose_target
from .kube import ClusterUnreachable, KubeError, request
from .update_requests import PhaseConflict, parse_rfc3339, rfc3339
from .workloads import WorkloadKind, kind_of

log = logging.getLogger(__name__)

LAST_UPDATE = "headwind.sh/last-update"
UPDATE_HISTORY = "headwind.sh/update-history"
HISTORY_LIMIT = 10
MAX_ATTEMPTS = 5
#: A last-update further in the future than this is treated as unreadable (clock skew is fine).
FUTURE_TOLERANCE_SECONDS = 60
EVENT_COMPONENT = "headwind"

Outcome = Literal["applied", "already", "deferred", "stale", "failed"]


@dataclass(frozen=True)
class ApplyResult:
    outcome: Outcome
    message: str
    retry_after: float | None = None


class WorkloadContention(RuntimeError):
    """The workload changed between every read and patch (e.g. a busy rollout); retry later."""


def is_transient(exc: BaseException) -> bool:
    """Worth retrying later: the API server was unreachable, overloaded or failing (5xx), or
    the workload kept changing under us."""
    if isinstance(exc, WorkloadContention):
        return True
    if isinstance(exc, KubeError):
        return exc.status in (0, 429) or exc.status >= 500
    return isinstance(exc, (ClusterUnreachable, urllib3.exceptions.HTTPError, OSError))


@dataclass(frozen=True)
class _Target:
    kind: str
    namespace: str
    name: str
    container: str
    new_image: str
    update_request: str | None
    actor: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} container {self.container}"


def apply_update(
    api,
    *,
    kind: str,
    namespace: str,
    name: str,
    container: str,
    new_image: str,
    expected_image: str | None = None,
    update_request: str | None = None,
    actor: str = "headwind",
    now: datetime | None = None,
) -> ApplyResult:
    """Move ``container`` of the workload to ``new_image`` unless a check says otherwise.

    Outcomes: ``applied``; ``already`` (nothing to do); ``deferred`` (retry after
    ``retry_after`` seconds); ``stale`` (someone else changed the image, or the request was
    rejected/superseded/deleted); ``failed`` (recorded: Warning Event, metric, request Failed).
    Transient errors (unreachable, 429, 5xx, WorkloadContention after ``MAX_ATTEMPTS``
    conflicting patches) are raised for the caller to retry; see ``is_transient``.
    """
    now = now or datetime.now(UTC)
    target = _Target(kind, namespace, name, container, new_image, update_request, actor)
    try:
        workload_kind = kind_of(kind)
    except ValueError as exc:
        return _failed(api, target, None, str(exc))
    try:
        parse_image(new_image)
    except InvalidImageReference as exc:
        return _failed(api, target, None, str(exc))

    if update_request:
        refusal = _check_request(api, target)
        if refusal is not None:
            return refusal

    tested_rv: str | None = None
    last_error: KubeError | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            obj = request(api, "GET", workload_kind.object_path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return _failed(api, target, None, f"{kind} {namespace}/{name} no longer exists")
            if is_transient(exc):
                raise
            return _failed(api, target, None, f"reading {kind} {namespace}/{name}: {exc.message}")
        meta = obj.get("metadata") or {}
        if last_error is not None and meta.get("resourceVersion") == tested_rv:
            # Nothing changed, so the patch was refused on its merits (validation, admission).
            return _failed(api, target, obj, f"the API server refused the patch: "
                                              f"{last_error.message}")

        live = next((c.image for c in workload_kind.containers(obj) if c.name == container), None)
        if live is None:
            return _failed(api, target, obj, f"container {container} not found in "
                                              f"{kind} {namespace}/{name}")
        if live == new_image:
            return _already(api, target)
        annotations = meta.get("annotations") or {}
        try:
            spec = PolicySpec.from_annotations(annotations)
        except InvalidPolicy as exc:
            return _failed(api, target, obj, str(exc))
        if update_request is None:
            # A direct update is the policy's decision: re-check it against the live object,
            # so an opt-out made after the task was queued is honoured.
            refusal = _direct_update_refusal(spec, container)
            if refusal:
                return _logged("stale", f"{target.label} → {new_image} not applied: {refusal}")
        if (expected_image is not None and live != expected_image
                and (update_request or not _still_an_upgrade(spec, live, new_image))):
            return _failed(
                api, target, obj,
                f"container {container} runs {live}, not {expected_image} as expected: "
                f"changed by someone else, so {new_image} is not applied",
                outcome="stale",
            )

        wait = _interval_wait(spec.min_update_interval_seconds, annotations.get(LAST_UPDATE),
                              now, target)
        if wait is not None:
            metrics.UPDATES_SKIPPED_INTERVAL.labels(kind, namespace).inc()
            message = (f"deferred {target.label} → {new_image}: min-update-interval "
                       f"{spec.min_update_interval_seconds}s not yet passed; retry in {wait:.0f}s")
            log.info("%s", message)
            return ApplyResult("deferred", message, wait)

        tested_rv = meta.get("resourceVersion")
        patch = _patch(workload_kind, obj, container, live, target, now)
        try:
            request(api, "PATCH", workload_kind.object_path(namespace, name), body=patch,
                    content_type="application/json-patch+json")
        except KubeError as exc:
            if exc.status in (409, 422):
                last_error = exc
                log.debug("%s changed during the update (attempt %d): %s",
                          target.label, attempt, exc)
                time.sleep(0.1 * attempt)
                continue
            if exc.status == 404:
                return _failed(api, target, None, f"{kind} {namespace}/{name} no longer exists")
            if is_transient(exc):
                raise
            return _failed(api, target, obj, f"the API server refused the patch: {exc.message}")
        return _applied(api, target, obj, live)

    raise WorkloadContention(f"{kind} {namespace}/{name} changed during each of "
                             f"{MAX_ATTEMPTS} attempts (last: {last_error})")


def _direct_update_refusal(spec: PolicySpec, container: str) -> str | None:
    if spec.policy is Policy.NONE:
        return "the workload's policy is now none"
    if spec.require_approval:
        return "the workload now requires approval"
    if not spec.applies_to_container(container):
        return f"headwind.sh/images no longer includes {container}"
    return None


def _still_an_upgrade(spec: PolicySpec, live: str, new_image: str) -> bool:
    """A direct update that waited (min-update-interval) while an earlier one landed may still
    go ahead when the workload's own policy would choose it from where the workload is now."""
    try:
        live_ref, new_ref = parse_image(live), parse_image(new_image)
    except InvalidImageReference:
        return False
    if live_ref.repository != new_ref.repository or not new_ref.tag:
        return False
    decision = choose_target(spec, live_ref.effective_tag or "latest", [new_ref.tag])
    return decision is not None and decision.tag == new_ref.tag


def record_failure(
    api,
    *,
    kind: str,
    namespace: str,
    name: str,
    container: str,
    new_image: str,
    message: str,
    update_request: str | None = None,
    actor: str = "headwind",
) -> ApplyResult:
    """Record a failure decided by the caller (e.g. retries exhausted); best effort."""
    target = _Target(kind, namespace, name, container, new_image, update_request, actor)
    return _failed(api, target, None, message)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _check_request(api, target: _Target) -> ApplyResult | None:
    """The UpdateRequest still asks for this change; else a result that applies nothing."""
    name = target.update_request or ""
    try:
        obj = update_requests.get(api, target.namespace, name)
    except KubeError as exc:
        if exc.status == 404:
            return _logged("stale", f"UpdateRequest {target.namespace}/{name} no longer exists; "
                                    f"{target.new_image} is not applied")
        if is_transient(exc):
            raise
        return _failed(api, target, None, f"reading UpdateRequest {name}: {exc.message}",
                       record_request=False)
    phase = update_requests.phase_of(obj)
    if phase in (update_requests.REJECTED, update_requests.SUPERSEDED, update_requests.EXPIRED):
        return _logged("stale", f"UpdateRequest {target.namespace}/{name} is {phase}; "
                                f"{target.new_image} is not applied")
    spec = obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    asked = (ref.get("kind"), ref.get("name"), spec.get("containerName"), spec.get("newImage"))
    if asked != (target.kind, target.name, target.container, target.new_image):
        return _failed(api, target, None,
                       f"UpdateRequest {name} asks for {asked[0]} {asked[1]} container "
                       f"{asked[2]} → {asked[3]}, not this update", record_request=False)
    return None


def _interval_wait(interval: int, last_text: str | None, now: datetime,
                   target: _Target) -> float | None:
    """Seconds still to wait, or None when the update may go ahead."""
    if interval <= 0:
        return None
    last = parse_rfc3339(last_text)
    if last is None:
        if last_text:
            log.warning("%s: unreadable %s=%r ignored", target.label, LAST_UPDATE, last_text)
        return None
    elapsed = (now - last).total_seconds()
    if elapsed < -FUTURE_TOLERANCE_SECONDS:
        log.warning("%s: %s=%s is in the future; ignored", target.label, LAST_UPDATE, last_text)
        return None
    remaining = interval - max(elapsed, 0.0)
    return max(remaining, 1.0) if remaining > 0 else None


# --------------------------------------------------------------------------------------------
# The patch
# --------------------------------------------------------------------------------------------


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _history(existing: str | None, entry: dict) -> str:
    try:
        previous = json.loads(existing) if existing else []
    except ValueError:
        previous = []
    if not isinstance(previous, list):
        previous = []
    entries = [entry] + [item for item in previous if isinstance(item, dict)]
    return json.dumps(entries[:HISTORY_LIMIT], separators=(",", ":"))


def _patch(workload_kind: WorkloadKind, obj: dict, container: str, live: str, target: _Target,
           now: datetime) -> list[dict]:
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    image_path = workload_kind.image_pointer(obj, container)
    assert image_path is not None  # the container was found in the same object
    stamp = rfc3339(now)
    history = _history(annotations.get(UPDATE_HISTORY), {
        "at": stamp, "container": container, "from": live, "to": target.new_image,
        "by": target.actor, "request": target.update_request,
    })
    ops: list[dict] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
        {"op": "test", "path": image_path.rsplit("/", 1)[0] + "/name", "value": container},
        {"op": "replace", "path": image_path, "value": target.new_image},
    ]
    if not annotations:
        ops.append({"op": "add", "path": "/metadata/annotations",
                    "value": {LAST_UPDATE: stamp, UPDATE_HISTORY: history}})
    else:
        for key, value in ((LAST_UPDATE, stamp), (UPDATE_HISTORY, history)):
            ops.append({"op": "add", "path": f"/metadata/annotations/{_escape(key)}",
                        "value": value})
    return ops


# --------------------------------------------------------------------------------------------
# Outcomes: one log line each, Events, metrics, the UpdateRequest's phase
# --------------------------------------------------------------------------------------------


def _logged(outcome: Outcome, message: str) -> ApplyResult:
    log.info("%s: %s", outcome, message)
    return ApplyResult(outcome, message)


def _describe(target: _Target, old: str) -> str:
    by = f"by {target.actor}"
    if target.update_request:
        by += f", request {target.update_request}"
    return f"container {target.container}: {old} → {target.new_image} ({by})"


def _applied(api, target: _Target, obj: dict, old: str) -> ApplyResult:
    message = _describe(target, old)
    metrics.UPDATES_APPLIED.labels(target.kind, target.namespace).inc()
    _event(api, target, obj, "Normal", "ImageUpdated", message)
    _set_request(api, target, update_requests.COMPLETED, message, completed=True)
    log.info("applied: %s %s/%s %s", target.kind, target.namespace, target.name, message)
    return ApplyResult("applied", message)


def _already(api, target: _Target) -> ApplyResult:
    message = f"{target.label} already runs {target.new_image}"
    _set_request(api, target, update_requests.COMPLETED, message, completed=True)
    return _logged("already", message)


def _failed(api, target: _Target, obj: dict | None, message: str, *,
            outcome: Outcome = "failed", record_request: bool = True) -> ApplyResult:
    metrics.UPDATES_FAILED.labels(target.kind, target.namespace).inc()
    _event(api, target, obj, "Warning", "ImageUpdateFailed",
           f"container {target.container} → {target.new_image}: {message}")
    if record_request:
        _set_request(api, target, update_requests.FAILED, message)
    log.warning("%s: %s → %s: %s", outcome, target.label, target.new_image, message)
    return ApplyResult(outcome, message)


def _set_request(api, target: _Target, phase: str, message: str, *,
                 completed: bool = False) -> None:
    if not target.update_request:
        return
    allowed = {update_requests.PENDING, update_requests.APPROVED, update_requests.FAILED}
    extra = {"completedAt": rfc3339(datetime.now(UTC))} if completed else None
    try:
        update_requests.set_phase(api, target.namespace, target.update_request, phase,
                                  message=message, extra_status=extra, expect_phases=allowed)
    except PhaseConflict as exc:
        if exc.current != phase:
            log.info("UpdateRequest left as it is: %s", exc)
    except (KubeError, urllib3.exceptions.HTTPError, OSError) as exc:
        log.warning("could not mark UpdateRequest %s/%s %s: %s", target.namespace,
                    target.update_request, phase, exc)


def _event(api, target: _Target, obj: dict | None, event_type: str, reason: str,
           message: str) -> None:
    """A core/v1 Event on the workload, so ``kubectl describe`` shows what Headwind did."""
    try:
        workload_kind = kind_of(target.kind)
    except ValueError:
        return
    meta = (obj or {}).get("metadata") or {}
    stamp = rfc3339(datetime.now(UTC))
    involved = {"apiVersion": workload_kind.api_version, "kind": target.kind,
                "namespace": target.namespace, "name": target.name}
    if meta.get("uid"):
        involved["uid"] = meta["uid"]
    body = {
        "metadata": {"name": f"{target.name[:200]}.{time.time_ns():x}",
                     "namespace": target.namespace},
        "involvedObject": involved,
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": EVENT_COMPONENT},
        "reportingComponent": EVENT_COMPONENT,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        request(api, "POST", f"/api/v1/namespaces/{target.namespace}/events", body=body)
    except (KubeError, urllib3.exceptions.HTTPError, OSError) as exc:
        log.warning("could not record Event %s on %s: %s", reason, target.label, exc)
