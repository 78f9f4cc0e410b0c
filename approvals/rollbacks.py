"""A workload's history, and the actions people take on it: roll back, release a hold, clear a
bad version. The one place that decides, for the dashboard, the admin and the REST API.

Who may act is the same as for approving (:func:`approvals.permissions.authorize`): the approve
permission plus a namespace grant for Django users, RBAC ``patch`` on the workload for
Kubernetes callers. Every attempt, allowed or not, is audited.

A manual rollback goes through the same Celery task as every update (idempotent, guarded by
the resourceVersion and by the image it replaces) and **holds** the slot: it writes
``headwind.sh/hold``, so the next push does not undo it at once. The hold shows on the
workload's page until someone releases it (or removes the annotation).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from operator_app import apply, kube
from operator_app.core import rollout
from operator_app.core.rollout import Hold, RolloutRecord
from operator_app.target_state import StateContention, update_annotations
from operator_app.workloads import KINDS, TargetKind, parse_artifact

from . import audit
from .errors import Conflict, InvalidInput, NotAllowed, NotFound, ServiceError, Unavailable
from .permissions import Actor, authorize
from .services import _api, _audit_refusal, _check_names, _text, _unavailable

log = logging.getLogger(__name__)

#: The history entries shown and offered (the annotation keeps ten per target).
HISTORY_SHOWN = 10


@dataclass(frozen=True)
class Slot:
    """One container (or ``chart``) of a workload, as it is now."""

    name: str
    current: str
    rollout: RolloutRecord | None = None
    hold: Hold | None = None
    bad_versions: tuple[str, ...] = ()
    #: Earlier values of this slot it may be rolled back to, newest first.
    rollback_targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkloadState:
    kind: str
    namespace: str
    name: str
    policy: str
    slots: tuple[Slot, ...]
    history: tuple[dict, ...] = field(default_factory=tuple)
    problem: str = ""  # a state annotation that could not be read

    @property
    def key(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class RollbackQueued:
    kind: str
    namespace: str
    name: str
    container: str
    from_image: str
    to_image: str
    hold: bool = True

    def as_dict(self) -> dict:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name,
                "container": self.container, "from": self.from_image, "to": self.to_image,
                "hold": self.hold}


def kind_named(text: str) -> TargetKind:
    """``Deployment``, ``deployment`` or ``deployments`` (NotFound otherwise)."""
    wanted = (text or "").lower()
    for kind in KINDS.values():
        if wanted in (kind.kind.lower(), kind.plural):
            return kind
    raise NotFound(f"no workload kind {text!r}; one of: "
                   + ", ".join(kind.kind for kind in KINDS.values()))


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def workload_state(kind_text: str, namespace: str, name: str) -> WorkloadState:
    """The workload now: its slots, their rollouts, holds and bad versions, and its history."""
    kind = kind_named(kind_text)
    _check_names(namespace, name)
    obj = _read(kind, namespace, name)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    problem = ""
    try:
        records, holds, bad = (rollout.rollouts(annotations), rollout.holds(annotations),
                               rollout.bad_versions(annotations))
    except rollout.InvalidState as exc:
        records, holds, bad, problem = {}, {}, {}, str(exc)
    history = _history(kind, obj)
    slots = []
    for slot in kind.containers(obj, apply.api_sources(_api())):
        slots.append(Slot(slot.name, slot.image, records.get(slot.name), holds.get(slot.name),
                          tuple(sorted(bad.get(slot.name, ()))),
                          _targets(history, slot.name, slot.image)))
    return WorkloadState(kind.kind, namespace, name,
                         annotations.get("headwind.sh/policy", "") or "none", tuple(slots),
                         tuple(history[:HISTORY_SHOWN]), problem)


def _read(kind: TargetKind, namespace: str, name: str) -> dict:
    try:
        return kube.request(_api(), "GET", kind.object_path(namespace, name))
    except kube.KubeError as exc:
        if exc.status == 404:
            raise NotFound(f"no {kind.kind} {namespace}/{name}") from None
        raise _unavailable(exc) from None


def _history(kind: TargetKind, obj: dict) -> list[dict]:
    """The update history next to the value (the target, or an OCIRepository source)."""
    written = obj
    if kind is KINDS["HelmRelease"]:
        location = kind.locate(obj, "chart", apply.api_sources(_api()))
        written = location.obj if location is not None else obj
    text = ((written.get("metadata") or {}).get("annotations") or {}).get(
        apply.UPDATE_HISTORY)
    try:
        entries = json.loads(text) if text else []
    except ValueError:
        return []
    return [entry for entry in entries if isinstance(entry, dict)] \
        if isinstance(entries, list) else []


def _targets(history: list[dict], slot: str, current: str) -> tuple[str, ...]:
    """Every value the slot had, newest first, except the current one."""
    seen: list[str] = []
    for entry in history:
        if entry.get("container") != slot:
            continue
        for value in (entry.get("to"), entry.get("from")):
            if isinstance(value, str) and value and value != current and value not in seen:
                seen.append(value)
    return tuple(seen)


# --------------------------------------------------------------------------------------------
# Acting
# --------------------------------------------------------------------------------------------


def rollback(actor: Actor, kind_text: str, namespace: str, name: str, container: str | None,
             to: str, reason: str = "", *, request: str | None = None) -> RollbackQueued:
    """Queue a rollback of ``container`` to ``to`` (an earlier value from the history: the whole
    reference, or just its tag or chart version) and hold the slot there. ``request`` names
    the UpdateRequest being undone, which then ends RolledBack."""
    target = f"{kind_text} {namespace}/{name}"[:512]
    try:
        kind = kind_named(kind_text)
        _check_names(namespace, name)
        if not isinstance(to, str) or not to.strip():
            raise InvalidInput("name the version to roll back to ('to')")
        reason = _text(reason, "reason", required=False)
        _authorize(actor, kind, namespace, name)
        state = workload_state(kind.kind, namespace, name)
        slot = _slot(state, container)
        chosen = _choose(slot, to.strip())
        command = apply.UpdateCommand(
            kind=kind.kind, namespace=namespace, name=name, container=slot.name,
            new_image=chosen, expected_image=slot.current, actor=actor.username,
            request=request, purpose="rollback", hold=True,
            reason=reason or f"manual rollback by {actor.username}")
        _queue(command)
    except ServiceError as exc:
        _audit_refusal(actor, "rollback", target, exc)
        raise
    queued = RollbackQueued(kind.kind, namespace, name, slot.name, slot.current, chosen)
    audit.record(actor.username, "rollback", f"{kind.kind} {namespace}/{name}", audit.SUCCESS,
                 reason, via=actor.via, container=slot.name, from_image=slot.current,
                 to_image=chosen)
    return queued


def apply_now(actor: Actor, kind_text: str, namespace: str, name: str,
              container: str) -> apply.UpdateCommand:
    """Apply an update waiting for the maintenance window now (``headwind.sh/scheduled``).
    The same task and checks as any update, without the window; audited."""
    target = f"{kind_text} {namespace}/{name}"[:512]
    try:
        kind = kind_named(kind_text)
        _check_names(namespace, name)
        _authorize(actor, kind, namespace, name)
        obj = _read(kind, namespace, name)
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        try:
            waiting = json.loads(annotations.get(apply.SCHEDULED) or "{}")
        except ValueError:
            waiting = {}
        entry = waiting.get(container) if isinstance(waiting, dict) else None
        if not isinstance(entry, dict) or not entry.get("to"):
            raise Conflict(f"no update of {container} is waiting for a maintenance window")
        state = workload_state(kind.kind, namespace, name)
        slot = _slot(state, container)
        command = apply.UpdateCommand(
            kind=kind.kind, namespace=namespace, name=name, container=slot.name,
            new_image=str(entry["to"]), expected_image=slot.current,
            request=entry.get("request") or None, actor=actor.username, ignore_window=True)
        _queue(command)
    except ServiceError as exc:
        _audit_refusal(actor, "apply_now", target, exc)
        raise
    audit.record(actor.username, "apply_now", f"{kind.kind} {namespace}/{name}", audit.SUCCESS,
                 f"applied before the maintenance window ({entry.get('at')})", via=actor.via,
                 container=container, to_image=command.new_image, request=command.request)
    return command


def release_hold(actor: Actor, kind_text: str, namespace: str, name: str,
                 container: str) -> None:
    """Let updates move ``container`` again."""
    _change_state(actor, "release_hold", kind_text, namespace, name, container,
                  rollout.ANNOTATION_HOLD, lambda values: values.pop(container, None))


def clear_bad_version(actor: Actor, kind_text: str, namespace: str, name: str,
                      container: str, version: str) -> None:
    """Let ``version`` of ``container`` be applied again."""
    def clear(values: dict) -> object:
        versions = [v for v in values.get(container) or [] if v != version]
        if len(versions) == len(values.get(container) or []):
            return None
        if versions:
            values[container] = versions
        else:
            values.pop(container, None)
        return True

    _change_state(actor, "clear_bad_version", kind_text, namespace, name, container,
                  rollout.ANNOTATION_BAD_VERSIONS, clear, version=version)


def _change_state(actor: Actor, action: str, kind_text: str, namespace: str, name: str,
                  container: str, annotation: str, edit, **details) -> None:
    target = f"{kind_text} {namespace}/{name}"[:512]
    try:
        kind = kind_named(kind_text)
        _check_names(namespace, name)
        _authorize(actor, kind, namespace, name)
        found = False

        def change(obj: dict) -> dict | None:
            nonlocal found
            text = ((obj.get("metadata") or {}).get("annotations") or {}).get(annotation)
            try:
                values = json.loads(text) if text else {}
            except ValueError:
                values = {}
            if not isinstance(values, dict):
                values = {}
            found = edit(values) is not None
            if not found:
                return None
            return {annotation: json.dumps(values, separators=(",", ":"), sort_keys=True)
                    if values else None}

        try:
            update_annotations(_api(), kind.object_path(namespace, name), change)
        except kube.KubeError as exc:
            if exc.status == 404:
                raise NotFound(f"no {kind.kind} {namespace}/{name}") from None
            raise _unavailable(exc) from None
        except StateContention:
            raise Conflict(f"{kind.kind} {namespace}/{name} kept changing; try again") from None
        if not found:
            raise Conflict(f"nothing to change: {annotation} has no such entry for {container}")
    except ServiceError as exc:
        _audit_refusal(actor, action, target, exc)
        raise
    audit.record(actor.username, action, f"{kind.kind} {namespace}/{name}", audit.SUCCESS,
                 via=actor.via, container=container, **details)


def _authorize(actor: Actor, kind: TargetKind, namespace: str, name: str) -> None:
    try:
        allowed, why = authorize(actor, namespace, kind.kind, name)
    except kube.KubeError as exc:
        raise _unavailable(exc) from None
    if not allowed:
        raise NotAllowed(why or "not allowed")


def _slot(state: WorkloadState, container: str | None) -> Slot:
    if container:
        for slot in state.slots:
            if slot.name == container:
                return slot
        raise NotFound(f"{state.key} has no container {container!r}")
    if len(state.slots) == 1:
        return state.slots[0]
    raise InvalidInput(f"{state.key} has {len(state.slots)} containers; name one "
                       "('container')")


def _choose(slot: Slot, to: str) -> str:
    """The history value ``to`` names: exactly, or by its tag or chart version (the newest
    such entry)."""
    if to == slot.current:
        raise Conflict(f"{slot.name} already runs {to}")
    for value in slot.rollback_targets:
        if value == to or _version(value) == to:
            return value
    offered = ", ".join(slot.rollback_targets) or "none yet"
    raise Conflict(f"{to} is not in the history of {slot.name}; it can go back to: {offered}")


def _version(reference: str) -> str | None:
    try:
        parsed = parse_artifact("HelmRelease" if "://" in reference else "Deployment", reference)
    except ValueError:
        return None
    return parsed.effective_tag


def _queue(command: apply.UpdateCommand) -> None:
    from operator_app.tasks import queue_update

    try:
        queue_update(command)
    except Exception as exc:  # noqa: BLE001 - any broker failure is "try again", not a 500
        log.error("could not queue %s of %s: %s", command.purpose, command.label, exc)
        raise Unavailable("the change could not be queued; try again") from None

