"""Applying one image update to one workload container, idempotently.

An :class:`UpdateCommand` is the one value for "apply this update"; the operator's dispatcher,
the approval services and the Celery task all pass it around whole. :func:`apply_update` runs it
in three steps, so each can be read (and tested) on its own:

1. **read live**: the workload and the container's image as they are now (:func:`read_live`,
   shared with the approval services, which ask the same question before approving);
2. **checks**, in order, each of which may refuse: the image is not already the new one, the
   annotations still parse, a direct update is still wanted, nobody else moved the image
   (``expected_image``), and ``headwind.sh/min-update-interval`` has passed since
   ``headwind.sh/last-update``;
3. **patch**: a JSON Patch that first tests the resourceVersion and the container's position, so
   a concurrent edit makes the patch fail instead of being lost; the object is then read again
   and the checks run again.

Every update writes ``headwind.sh/last-update`` (plain RFC 3339 UTC, so the interval check can
always read it back) and ``headwind.sh/update-history`` for every workload kind, and, in the same
patch, the rollout Headwind will follow (``headwind.sh/rollout``, see
:mod:`operator_app.rollouts`).

A **rollback** (``purpose="rollback"``) runs the same way with its own checks: only when the slot
still runs exactly what Headwind applied (``expected_image``; a change by someone else stops
it), without policy or interval checks. It records itself in the history as a rollback, marks
the version it took back as bad (automatic rollbacks) or holds the slot (manual ones).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from . import attribution, hops, metrics, notify, proposals, recorder
from .core import rollout
from .core.policy import (
    DEFAULT_ROLLOUT_TIMEOUT_SECONDS,
    InvalidPolicy,
    Policy,
    PolicySpec,
    decide,
)
from .core.rollout import Hold, RolloutRecord, RolloutState
from .kube import KubeError, request
from .proposals import Phase, PhaseConflict, StatusContention, parse_rfc3339, rfc3339
from .target_state import StateContention, annotation_ops, update_annotations
from .workloads import (
    CHART_SLOT,
    SOURCE_KINDS,
    Location,
    SourceLookup,
    TargetKind,
    kind_of,
    parse_artifact,
)

log = logging.getLogger(__name__)

LAST_UPDATE = "headwind.sh/last-update"
UPDATE_HISTORY = "headwind.sh/update-history"
HISTORY_LIMIT = 10
MAX_ATTEMPTS = 5
#: A last-update further in the future than this is treated as unreadable (clock skew is fine).
FUTURE_TOLERANCE_SECONDS = 60

Outcome = Literal["applied", "already", "deferred", "stale", "failed"]
Purpose = Literal["update", "rollback"]


@dataclass(frozen=True, slots=True)
class UpdateCommand:
    """Move ``container`` of one workload to ``new_image``.

    ``expected_image`` is what the container ran when the update was decided (a different live
    image means someone else moved it); ``request`` names the UpdateRequest an approved update
    came from (None for a direct update); ``actor`` is who decided, for history and Events.

    A rollback (``purpose="rollback"``) puts ``new_image`` back over ``expected_image``;
    ``mark_bad`` records the version it takes back as bad (automatic rollbacks), ``hold`` pins
    the slot (manual ones); ``reason`` says why, for the history and the Events.
    """

    kind: str
    namespace: str
    name: str
    container: str
    new_image: str
    expected_image: str | None = None
    request: str | None = None
    actor: str = "headwind"
    purpose: Purpose = "update"
    mark_bad: bool = False
    hold: bool = False
    reason: str = ""
    #: "Apply now": an approver chose not to wait for the maintenance window.
    ignore_window: bool = False

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} container {self.container}"

    @property
    def is_rollback(self) -> bool:
        return self.purpose == "rollback"

    def to_message(self) -> dict:
        """The JSON-safe form a Celery message carries."""
        return asdict(self)

    @classmethod
    def from_message(cls, data: Mapping) -> UpdateCommand:
        """The inverse of :meth:`to_message`; unknown keys are an error, not ignored."""
        return cls(**dict(data))


@dataclass(frozen=True)
class ApplyResult:
    outcome: Outcome
    message: str
    retry_after: float | None = None


class WorkloadContention(RuntimeError):
    """The workload changed between every read and patch (e.g. a busy rollout); retry later."""


class TargetGone(Exception):
    """The workload or its container is not there (any more); ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class LiveContainer:
    """One artifact slot of one target as the API server has it now: the target (``obj``,
    whose annotations hold its policy), the slot's reference, and where that reference is
    written (``location``: the same object, or a HelmRelease's OCIRepository source). The
    update history and last-update annotations live with the written value."""

    kind: TargetKind
    obj: dict
    image: str
    location: Location

    @property
    def annotations(self) -> dict:
        """The target's annotations (its policy)."""
        return (self.obj.get("metadata") or {}).get("annotations") or {}

    @property
    def written_annotations(self) -> dict:
        """The annotations next to the value: last-update and update-history."""
        return (self.location.obj.get("metadata") or {}).get("annotations") or {}

    @property
    def resource_version(self) -> str:
        """Of the object the patch changes."""
        return (self.location.obj.get("metadata") or {}).get("resourceVersion", "")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying later: the API server was unreachable, overloaded or failing, or the
    workload kept changing under us."""
    if isinstance(exc, WorkloadContention | StatusContention):
        return True
    return isinstance(exc, KubeError) and exc.transient


def read_live(api, kind: str, namespace: str, name: str, container: str, *,
              uid: str | None = None) -> LiveContainer:
    """The workload and ``container``'s image now. Raises TargetGone (no such kind, workload or
    container, or a workload recreated since ``uid`` was recorded) or KubeError."""
    try:
        workload_kind = kind_of(kind)
    except ValueError:
        raise TargetGone(f"Headwind cannot update a {kind}") from None
    try:
        obj = request(api, "GET", workload_kind.object_path(namespace, name))
    except KubeError as exc:
        if exc.status == 404:
            raise TargetGone(f"{kind} {namespace}/{name} no longer exists") from None
        raise
    live_uid = (obj.get("metadata") or {}).get("uid")
    if uid and live_uid and live_uid != uid:
        raise TargetGone(f"{kind} {namespace}/{name} was deleted and created again")
    sources = api_sources(api)
    image = next((c.image for c in workload_kind.containers(obj, sources)
                  if c.name == container), None)
    location = workload_kind.locate(obj, container, sources) if image is not None else None
    if image is None or location is None:
        what = "its chart" if container == CHART_SLOT else f"container {container}"
        raise TargetGone(f"{what} not found in {kind} {namespace}/{name}")
    return LiveContainer(workload_kind, obj, image, location)


def api_sources(api) -> SourceLookup:
    """A HelmRelease's sources read from the API server (404: None)."""
    def lookup(kind: str, namespace: str, name: str) -> dict | None:
        try:
            return request(api, "GET", SOURCE_KINDS[kind].object_path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
    return lookup


def apply_update(api, command: UpdateCommand, *, now: datetime | None = None) -> ApplyResult:
    """Run ``command`` unless a check says otherwise.

    Outcomes: ``applied``; ``already`` (nothing to do); ``deferred`` (retry after
    ``retry_after`` seconds); ``stale`` (someone else changed the image, or the request was
    rejected/superseded/deleted); ``failed`` (recorded: Warning Event, metric, request Failed).
    Transient errors (KubeError with ``transient``, WorkloadContention after ``MAX_ATTEMPTS``
    conflicting patches) are raised for the caller to retry; see :func:`is_transient`.
    """
    now = now or datetime.now(UTC)
    try:
        parse_artifact(command.kind, command.new_image)
    except ValueError as exc:
        return _failed(api, command, None, str(exc))
    if command.is_rollback and not command.expected_image:
        return _failed(api, command, None, "a rollback must name the image it replaces")
    if command.request and not command.is_rollback:
        refusal = _request_refusal(api, command)
        if refusal is not None:
            return refusal
    checks = ROLLBACK_CHECKS if command.is_rollback else CHECKS

    tested_rv: str | None = None
    last_error: KubeError | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            live = read_live(api, command.kind, command.namespace, command.name,
                             command.container)
        except TargetGone as exc:
            return _failed(api, command, None, exc.reason)
        except KubeError as exc:
            if exc.transient:
                raise
            return _failed(api, command, None, f"reading {command.kind} {command.namespace}/"
                                               f"{command.name}: {exc.message}")
        if last_error is not None and live.resource_version == tested_rv:
            # Nothing changed, so the patch was refused on its merits (validation, admission).
            return _failed(api, command, live.obj,
                           f"the API server refused the patch: {last_error.message}")
        for check in checks:
            refusal = check(api, command, live, now)
            if refusal is not None:
                return refusal

        tested_rv = live.resource_version
        try:
            request(api, "PATCH", live.location.path, body=_patch(live, command, now),
                    content_type="application/json-patch+json")
        except KubeError as exc:
            if exc.status in (409, 422):
                last_error = exc
                log.debug("%s changed during the update (attempt %d): %s", command.label,
                          attempt, exc)
                time.sleep(0.1 * attempt)
                continue
            if exc.status == 404:
                return _failed(api, command, None, f"{command.kind} {command.namespace}/"
                                                   f"{command.name} no longer exists")
            if exc.transient:
                raise
            return _failed(api, command, live.obj,
                           f"the API server refused the patch: {exc.message}")
        hops.mark("patched")  # the update's last hop stamp (operator_app/hops.py)
        _write_target_state(api, command, live, now)
        return _applied(api, command, live, now)

    raise WorkloadContention(f"{command.kind} {command.namespace}/{command.name} changed during "
                             f"each of {MAX_ATTEMPTS} attempts (last: {last_error})")


def record_failure(api, command: UpdateCommand, message: str) -> ApplyResult:
    """Record a failure decided by the caller (e.g. retries exhausted); best effort."""
    return _failed(api, command, None, message)


# --------------------------------------------------------------------------------------------
# Checks: each returns None to go on, or the result that ends the attempt
# --------------------------------------------------------------------------------------------

Check = Callable[[object, UpdateCommand, LiveContainer, datetime], "ApplyResult | None"]


def _check_not_there_yet(api, command: UpdateCommand, live: LiveContainer,
                         now: datetime) -> ApplyResult | None:
    if live.image == command.new_image:
        return _already(api, command)
    return None


def _policy(live: LiveContainer) -> PolicySpec | InvalidPolicy:
    try:
        return PolicySpec.from_annotations(live.annotations)
    except InvalidPolicy as exc:
        return exc


def _check_policy_readable(api, command: UpdateCommand, live: LiveContainer,
                           now: datetime) -> ApplyResult | None:
    spec = _policy(live)
    return _failed(api, command, live.obj, str(spec)) if isinstance(spec, InvalidPolicy) else None


def _check_still_wanted(api, command: UpdateCommand, live: LiveContainer,
                        now: datetime) -> ApplyResult | None:
    """A direct update is the policy's decision: re-check it against the live object, so an
    opt-out made after the task was queued is honoured."""
    if command.request is not None:
        return None
    spec = _policy(live)
    assert isinstance(spec, PolicySpec)  # _check_policy_readable ran first
    if spec.policy is Policy.NONE:
        refusal = "the workload's policy is now none"
    elif spec.require_approval:
        refusal = "the workload now requires approval"
    elif not spec.applies_to_container(command.container):
        refusal = f"headwind.sh/images no longer includes {command.container}"
    elif command.container in spec.held:
        refusal = f"{command.container} is held by a manual rollback (headwind.sh/hold)"
    elif _marked_bad(spec, command):
        refusal = "this version was rolled back as bad (headwind.sh/bad-versions)"
    else:
        return None
    return _logged("stale", f"{command.label} → {command.new_image} not applied: {refusal}")


def _check_not_moved_by_others(api, command: UpdateCommand, live: LiveContainer,
                               now: datetime) -> ApplyResult | None:
    if command.expected_image is None or live.image == command.expected_image:
        return None
    spec = _policy(live)
    assert isinstance(spec, PolicySpec)
    if command.request is None and _still_an_upgrade(spec, command.kind, live.image,
                                                     command.new_image):
        return None
    return _failed(
        api, command, live.obj,
        f"container {command.container} runs {live.image}, not {command.expected_image} as "
        f"expected: changed by someone else, so {command.new_image} is not applied",
        outcome="stale",
    )


def _marked_bad(spec: PolicySpec, command: UpdateCommand) -> bool:
    try:
        key = spec.version_key(parse_artifact(command.kind, command.new_image))
    except ValueError:
        return False
    return key is not None and spec.is_bad(command.container, key)


def _check_rollback_expected(api, command: UpdateCommand, live: LiveContainer,
                             now: datetime) -> ApplyResult | None:
    """A rollback replaces exactly what was there when it was decided, or nothing."""
    if live.image == command.expected_image:
        return None
    message = (f"container {command.container} runs {live.image}, not {command.expected_image}:"
               f" changed by someone else, so it is not rolled back to {command.new_image}")
    metrics.ROLLBACKS_FAILED.labels(command.namespace).inc()
    _event(api, command, live.obj, "Warning", "RollbackSkipped", message)
    _notify(notify.Event.ROLLBACK_FAILED, command, live.annotations, live.image, message)
    _finish_rollout(api, command, live, RolloutState.SUPERSEDED, message, now)
    log.warning("stale: %s: %s", command.label, message)
    return ApplyResult("stale", message)


def _still_an_upgrade(spec: PolicySpec, kind: str, live: str, new_image: str) -> bool:
    """A direct update that waited (min-update-interval) while an earlier one landed may still
    go ahead when the workload's own policy would choose it from where the workload is now.

    Not for the digest policy: two rebuilds of one tag cannot be ordered by their digests.
    """
    try:
        live_ref, new_ref = parse_artifact(kind, live), parse_artifact(kind, new_image)
    except ValueError:
        return False
    if (spec.policy is Policy.DIGEST or live_ref.repository != new_ref.repository
            or not new_ref.effective_tag):
        return False
    decision = decide(spec, live_ref, {new_ref.effective_tag: new_ref.digest})
    return decision is not None and decision.tag == new_ref.effective_tag


def _check_interval(api, command: UpdateCommand, live: LiveContainer,
                    now: datetime) -> ApplyResult | None:
    spec = _policy(live)
    assert isinstance(spec, PolicySpec)
    wait = _interval_wait(spec.min_update_interval_seconds,
                          live.written_annotations.get(LAST_UPDATE), now, command)
    if wait is None:
        return None
    metrics.UPDATES_SKIPPED_INTERVAL.labels(command.kind, command.namespace).inc()
    message = (f"deferred {command.label} → {command.new_image}: min-update-interval "
               f"{spec.min_update_interval_seconds}s not yet passed; retry in {wait:.0f}s")
    log.info("%s", message)
    return ApplyResult("deferred", message, wait)


def _check_window(api, command: UpdateCommand, live: LiveContainer,
                  now: datetime) -> ApplyResult | None:
    """Outside ``headwind.sh/maintenance-window`` the update waits for the window to open:
    the task re-queues itself (in steps below the broker's visibility timeout) and is applied
    at the window's start, after the same checks against the live object then. The wait is
    shown on the target (``headwind.sh/scheduled``) and on its UpdateRequest."""
    spec = _policy(live)
    assert isinstance(spec, PolicySpec)
    window = spec.maintenance_window
    if window is None or command.ignore_window or window.is_open(now):
        return None
    opens = window.next_open(now)
    _mark_scheduled(api, command, live, opens)
    wait = max((opens - now).total_seconds(), 1.0)
    message = (f"{command.label} → {command.new_image} scheduled for {rfc3339(opens)} "
               f"(headwind.sh/maintenance-window {window})")
    log.info("deferred %s", message)
    return ApplyResult("deferred", message, wait)


#: In order; the first refusal wins.
CHECKS: tuple[Check, ...] = (
    _check_not_there_yet,
    _check_policy_readable,
    _check_still_wanted,
    _check_not_moved_by_others,
    _check_interval,
    _check_window,
)
#: A rollback is not the policy's decision: no policy, interval or still-wanted checks.
ROLLBACK_CHECKS: tuple[Check, ...] = (
    _check_not_there_yet,
    _check_rollback_expected,
)


def _request_refusal(api, command: UpdateCommand) -> ApplyResult | None:
    """The UpdateRequest still asks for this change; else a result that applies nothing."""
    name = command.request or ""
    try:
        obj = proposals.get(api, command.namespace, name)
    except KubeError as exc:
        if exc.status == 404:
            return _logged("stale", f"UpdateRequest {command.namespace}/{name} no longer "
                                    f"exists; {command.new_image} is not applied")
        if exc.transient:
            raise
        return _failed(api, command, None, f"reading UpdateRequest {name}: {exc.message}",
                       record_request=False)
    phase = proposals.phase_of(obj)
    if phase in (Phase.REJECTED, Phase.SUPERSEDED, Phase.EXPIRED, Phase.PENDING):
        return _logged("stale", f"UpdateRequest {command.namespace}/{name} is {phase}; "
                                f"{command.new_image} is not applied")
    spec = obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    asked = (ref.get("kind"), ref.get("name"), spec.get("containerName"), spec.get("newImage"))
    if asked != (command.kind, command.name, command.container, command.new_image):
        return _failed(api, command, None,
                       f"UpdateRequest {name} asks for {asked[0]} {asked[1]} container "
                       f"{asked[2]} → {asked[3]}, not this update", record_request=False)
    # The phase says Approved; only proven approvals make it so (operator_app/attribution.py).
    proof = attribution.attribute(obj, policy_installed=attribution.ADMISSION.installed(api))
    if not proof.approved:
        metrics.APPROVALS_UNATTRIBUTED.labels(command.namespace).inc()
        return _failed(api, command, None, f"not applied: {proof.reason()}")
    return None


def _interval_wait(interval: int, last_text: str | None, now: datetime,
                   command: UpdateCommand) -> float | None:
    """Seconds still to wait, or None when the update may go ahead."""
    if interval <= 0:
        return None
    last = parse_rfc3339(last_text)
    if last is None:
        if last_text:
            log.warning("%s: unreadable %s=%r ignored", command.label, LAST_UPDATE, last_text)
        return None
    elapsed = (now - last).total_seconds()
    if elapsed < -FUTURE_TOLERANCE_SECONDS:
        log.warning("%s: %s=%s is in the future; ignored", command.label, LAST_UPDATE,
                    last_text)
        return None
    remaining = interval - max(elapsed, 0.0)
    return max(remaining, 1.0) if remaining > 0 else None


# --------------------------------------------------------------------------------------------
# The patch
# --------------------------------------------------------------------------------------------


def _history(existing: str | None, entry: dict) -> str:
    try:
        previous = json.loads(existing) if existing else []
    except ValueError:
        previous = []
    if not isinstance(previous, list):
        previous = []
    entries = [entry] + [item for item in previous if isinstance(item, dict)]
    return json.dumps(entries[:HISTORY_LIMIT], separators=(",", ":"))


def _patch(live: LiveContainer, command: UpdateCommand, now: datetime) -> list[dict]:
    """The value, the history and last-update (next to the value) and, when the value lives in
    the target itself, the target's rollout state: one atomic write."""
    location = live.location
    stamp = rfc3339(now)
    entry = {"at": stamp, "container": command.container, "from": live.image,
             "to": command.new_image, "by": command.actor, "request": command.request}
    if command.is_rollback:
        entry.update(rollback=True, reason=command.reason or None)
    changes = {LAST_UPDATE: stamp,
               UPDATE_HISTORY: _history(live.written_annotations.get(UPDATE_HISTORY), entry)}
    if _state_with_value(live):
        changes.update(_state_changes(live, command, now))
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": live.resource_version},
        *location.tests,
        {"op": "replace", "path": location.pointer,
         "value": location.value_for(command.new_image)},
        *annotation_ops(live.written_annotations, changes),
    ]


def _state_with_value(live: LiveContainer) -> bool:
    """Pod-template kinds and HelmRepository-sourced HelmReleases hold the value themselves;
    an OCIRepository-sourced HelmRelease keeps it in the OCIRepository."""
    return live.location.obj is live.obj


SCHEDULED = "headwind.sh/scheduled"


def _scheduled(annotations: dict) -> dict:
    try:
        values = json.loads(annotations.get(SCHEDULED) or "{}")
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}


def _mark_scheduled(api, command: UpdateCommand, live: LiveContainer, opens: datetime) -> None:
    """Record the wait once (the annotation on the target, the request's status)."""
    entry = {"to": command.new_image, "at": rfc3339(opens)}
    if command.request:
        entry["request"] = command.request
    if _scheduled(live.annotations).get(command.container) != entry:
        path = live.kind.object_path(command.namespace, command.name)

        def change(obj: dict) -> dict | None:
            values = _scheduled((obj.get("metadata") or {}).get("annotations") or {})
            if values.get(command.container) == entry:
                return None
            values[command.container] = entry
            return {SCHEDULED: json.dumps(values, separators=(",", ":"), sort_keys=True)}

        try:
            update_annotations(api, path, change)
        except (KubeError, StateContention) as exc:
            log.warning("%s: schedule not recorded: %s", command.label, exc)
    if command.request:
        def status(obj: dict) -> dict:
            current = dict(obj.get("status") or {})
            if current.get("scheduledFor") == entry["at"]:
                raise PhaseConflict(command.namespace, command.request or "",
                                    proposals.phase_of(obj), set())
            current["scheduledFor"] = entry["at"]
            current["message"] = (f"approved; waiting for the maintenance window, scheduled "
                                  f"for {entry['at']}")
            return current

        try:
            proposals.update_status(api, command.namespace, command.request, status)
        except PhaseConflict:
            pass  # already says so
        except (KubeError, StatusContention) as exc:
            log.warning("UpdateRequest %s/%s: schedule not recorded: %s", command.namespace,
                        command.request, exc)


def _state_changes(live: LiveContainer, command: UpdateCommand, now: datetime) -> dict:
    """The target's state annotations after this change: the rollout to follow, and for a
    rollback the bad version or the hold."""
    annotations = live.annotations
    try:
        followed = rollout.rollouts(annotations)
        bad = rollout.bad_versions(annotations)
        held = rollout.holds(annotations)
    except rollout.InvalidState as exc:  # written by hand: start over rather than refuse
        log.warning("%s: %s; rewritten", command.label, exc)
        followed, bad, held = {}, {}, {}
    spec = _policy(live)
    timeout = (spec.rollout_timeout_seconds if isinstance(spec, PolicySpec)
               else DEFAULT_ROLLOUT_TIMEOUT_SECONDS)
    followed[command.container] = RolloutRecord(
        slot=command.container, to=command.new_image, from_=live.image, started=precise_time(now),
        deadline=rfc3339(now + timedelta(seconds=timeout)),
        auto_rollback=bool(isinstance(spec, PolicySpec) and spec.auto_rollback
                           and not command.is_rollback),
        rollback=command.is_rollback, request=command.request, by=command.actor,
        reason=command.reason)
    changes: dict[str, str | None] = {rollout.ANNOTATION_ROLLOUT: rollout.dump(followed)}
    scheduled = _scheduled(annotations)
    if scheduled.pop(command.container, None) is not None:
        changes[SCHEDULED] = json.dumps(scheduled, separators=(",", ":"),
                                        sort_keys=True) if scheduled else None
    if command.mark_bad and isinstance(spec, PolicySpec):
        try:
            key = spec.version_key(parse_artifact(command.kind, live.image))
        except ValueError:
            key = None
        if key:
            bad[command.container] = bad.get(command.container, frozenset()) | {key}
            changes[rollout.ANNOTATION_BAD_VERSIONS] = rollout.dump(bad)
    if command.hold:
        try:
            version = str(parse_artifact(command.kind, command.new_image).effective_tag or "")
        except ValueError:
            version = command.new_image
        held[command.container] = Hold(version or command.new_image, command.actor,
                                       rfc3339(now), command.reason)
        changes[rollout.ANNOTATION_HOLD] = rollout.dump(held)
    return changes


def _write_target_state(api, command: UpdateCommand, live: LiveContainer,
                        now: datetime) -> None:
    """For a value kept in another object (an OCIRepository), the target's state follows in
    a second, guarded write. Should this process die in between, the update stands without a
    followed rollout (documented in docs/rollback.md)."""
    if _state_with_value(live):
        return
    path = live.kind.object_path(command.namespace, command.name)

    def change(obj: dict) -> dict:
        fresh = LiveContainer(live.kind, obj, live.image, live.location)
        return _state_changes(fresh, command, now)

    try:
        update_annotations(api, path, change)
    except (KubeError, StateContention) as exc:
        log.warning("%s: rollout state not written: %s", command.label, exc)


def precise_time(moment: datetime) -> str:
    """RFC 3339 with milliseconds: rollout timings are measured from it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


def _finish_rollout(api, command: UpdateCommand, live: LiveContainer, state: RolloutState,
                    reason: str, now: datetime) -> None:
    """Close the slot's watched rollout (a rollback that cannot go ahead)."""
    path = live.kind.object_path(command.namespace, command.name)

    def change(obj: dict) -> dict | None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        try:
            followed = rollout.rollouts(annotations)
        except rollout.InvalidState:
            return None
        record = followed.get(command.container)
        if record is None or record.final:
            return None
        followed[command.container] = record.finish(state, reason, rfc3339(now))
        return {rollout.ANNOTATION_ROLLOUT: rollout.dump(followed)}

    try:
        update_annotations(api, path, change)
    except (KubeError, StateContention) as exc:
        log.warning("%s: rollout state not written: %s", command.label, exc)


# --------------------------------------------------------------------------------------------
# Outcomes: one log line each, Events, metrics, the UpdateRequest's phase
# --------------------------------------------------------------------------------------------


def _logged(outcome: Outcome, message: str) -> ApplyResult:
    log.info("%s: %s", outcome, message)
    return ApplyResult(outcome, message)


def _describe(command: UpdateCommand, old: str) -> str:
    by = f"by {command.actor}"
    if command.request:
        by += f", request {command.request}"
    return f"container {command.container}: {old} → {command.new_image} ({by})"


def _applied(api, command: UpdateCommand, live: LiveContainer, now: datetime) -> ApplyResult:
    message = _describe(command, live.image)
    if command.is_rollback:
        return _rolled_back(api, command, live, message, now)
    metrics.UPDATES_APPLIED.labels(command.kind, command.namespace).inc()
    if command.container == CHART_SLOT:
        metrics.HELM_UPDATES_APPLIED.labels(command.namespace).inc()
    _event(api, command, live.obj, "Normal", "ImageUpdated", message)
    _set_request(api, command, Phase.COMPLETED, message, completed=True)
    _notify(notify.Event.UPDATE_APPLIED, command, live.annotations, live.image)
    log.info("applied: %s %s/%s %s", command.kind, command.namespace, command.name, message)
    return ApplyResult("applied", message)


def _rolled_back(api, command: UpdateCommand, live: LiveContainer, message: str,
                 now: datetime) -> ApplyResult:
    metrics.ROLLBACKS.labels(command.kind, command.namespace).inc()
    if command.mark_bad:
        metrics.ROLLBACKS_AUTOMATIC.labels(command.namespace).inc()
        queued = _queued_at(live, command.container)
        if queued is not None:
            metrics.ROLLBACK_SECONDS.observe(max((now - queued).total_seconds(), 0.0))
    else:
        metrics.ROLLBACKS_MANUAL.labels(command.namespace).inc()
    why = f": {command.reason}" if command.reason else ""
    text = f"rolled back {message}{why}"
    _event(api, command, live.obj, "Normal", "RolledBack", text)
    _notify(notify.Event.ROLLBACK_COMPLETED, command, live.annotations, live.image,
            command.reason)
    if command.request:
        try:
            proposals.set_phase(api, command.namespace, command.request, Phase.ROLLED_BACK,
                                message=text, expect_phases=set(proposals.APPLIED_PHASES))
        except PhaseConflict as exc:
            log.info("UpdateRequest left as it is: %s", exc)
        except (KubeError, StatusContention) as exc:
            log.warning("could not mark UpdateRequest %s/%s RolledBack: %s", command.namespace,
                        command.request, exc)
    log.info("rolled back: %s %s/%s %s", command.kind, command.namespace, command.name, message)
    return ApplyResult("applied", text)


def _queued_at(live: LiveContainer, slot: str) -> datetime | None:
    try:
        record = rollout.rollouts(live.annotations).get(slot)
    except rollout.InvalidState:
        return None
    return parse_rfc3339(record.queued) if record is not None else None


def _already(api, command: UpdateCommand) -> ApplyResult:
    message = f"{command.label} already runs {command.new_image}"
    if command.is_rollback:
        return _logged("already", message)
    _set_request(api, command, Phase.COMPLETED, message, completed=True)
    return _logged("already", message)


def _failed(api, command: UpdateCommand, obj: dict | None, message: str, *,
            outcome: Outcome = "failed", record_request: bool = True) -> ApplyResult:
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    if command.is_rollback:
        metrics.ROLLBACKS_FAILED.labels(command.namespace).inc()
        _event(api, command, obj, "Warning", "RollbackFailed",
               f"container {command.container} → {command.new_image}: {message}")
        _notify(notify.Event.ROLLBACK_FAILED, command, annotations,
                command.expected_image or "", message)
        log.warning("%s: rollback %s → %s: %s", outcome, command.label, command.new_image,
                    message)
        return ApplyResult(outcome, message)
    metrics.UPDATES_FAILED.labels(command.kind, command.namespace).inc()
    _event(api, command, obj, "Warning", "ImageUpdateFailed",
           f"container {command.container} → {command.new_image}: {message}")
    if outcome == "failed":
        _notify(notify.Event.UPDATE_FAILED, command, annotations, command.expected_image or "",
                message)
    if record_request:
        _set_request(api, command, Phase.FAILED, message)
    log.warning("%s: %s → %s: %s", outcome, command.label, command.new_image, message)
    return ApplyResult(outcome, message)


def _set_request(api, command: UpdateCommand, phase: Phase, message: str, *,
                 completed: bool = False) -> None:
    if not command.request:
        return
    allowed = {Phase.PENDING, Phase.APPROVED, Phase.FAILED}
    extra = {"completedAt": rfc3339(datetime.now(UTC))} if completed else None
    try:
        proposals.set_phase(api, command.namespace, command.request, phase, message=message,
                            extra_status=extra, expect_phases=allowed)
    except PhaseConflict as exc:
        if exc.current != phase:
            log.info("UpdateRequest left as it is: %s", exc)
    except (KubeError, StatusContention) as exc:
        log.warning("could not mark UpdateRequest %s/%s %s: %s", command.namespace,
                    command.request, phase, exc)


def _notify(event: notify.Event, command: UpdateCommand, annotations: dict, from_ref: str,
            reason: str = "") -> None:
    """Tell people (``operator_app.notify``: queued in the background, never raises)."""
    notify.emit(notify.Notice(
        event=event, kind=command.kind, namespace=command.namespace, name=command.name,
        slot=command.container, from_ref=from_ref, to_ref=command.new_image,
        policy=annotations.get("headwind.sh/policy", ""), actor=command.actor, reason=reason,
        request=command.request, annotations=annotations))


def _event(api, command: UpdateCommand, obj: dict | None, event_type: str, reason: str,
           message: str) -> None:
    try:
        workload_kind = kind_of(command.kind)
    except ValueError:
        return
    recorder.record_event(
        api, api_version=workload_kind.api_version, kind=command.kind,
        namespace=command.namespace, name=command.name,
        uid=((obj or {}).get("metadata") or {}).get("uid"), event_type=event_type,
        reason=reason, message=message)
