"""Rollouts, pure: what Headwind records about an update after the patch, and how to read a
target's status into "still rolling", "rolled out" or "failed".

Three annotations on the target (where its policy lives), each a JSON object keyed by slot
(a container's name, or ``chart``):

* ``headwind.sh/rollout``: the rollout Headwind follows for a slot (:class:`RolloutRecord`),
  written in the same patch as the new image, so the watch survives any restart;
* ``headwind.sh/bad-versions``: versions an automatic rollback took back; never applied again
  by an event or a poll (a newer version still is). Edit or remove the annotation to clear;
* ``headwind.sh/hold``: a slot pinned by a manual rollback (:class:`Hold`); nothing moves it
  until the hold is released.

The evaluators read the Kubernetes objects as plain dicts (the same rules as
``kubectl rollout status``), so this module imports neither Django nor Kubernetes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum

ANNOTATION_ROLLOUT = "headwind.sh/rollout"
ANNOTATION_BAD_VERSIONS = "headwind.sh/bad-versions"
ANNOTATION_HOLD = "headwind.sh/hold"

#: Container waiting reasons that mean the new version does not run.
FAILING_WAITING_REASONS = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
    "CreateContainerError", "InvalidImageName",
})
#: Restarts of one container of the new revision that count as a failure signal.
MAX_RESTARTS = 3


class InvalidState(ValueError):
    """A state annotation is not the JSON object Headwind writes."""


class RolloutState(StrEnum):
    WATCHING = "watching"  # following the rollout
    ROLLING_BACK = "rollingBack"  # failed; the rollback is queued
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failed and left as it is (no auto-rollback, or nothing to go back to)
    ROLLED_BACK = "rolledBack"
    SUPERSEDED = "superseded"  # someone else changed the slot: not ours to judge any more


FINAL_STATES = frozenset({RolloutState.SUCCEEDED, RolloutState.FAILED,
                          RolloutState.ROLLED_BACK, RolloutState.SUPERSEDED})


@dataclass(frozen=True)
class RolloutRecord:
    """One followed rollout: ``slot`` moved ``from_`` → ``to`` at ``started`` (RFC 3339), to be
    done by ``deadline``. ``rollback`` marks a rollout that is itself a rollback (never rolled
    back again); ``request`` names the UpdateRequest it came from."""

    slot: str
    to: str
    from_: str
    started: str
    deadline: str
    state: RolloutState = RolloutState.WATCHING
    auto_rollback: bool = False
    rollback: bool = False
    request: str | None = None
    by: str = "headwind"
    reason: str = ""
    finished: str | None = None
    #: When a rollback was queued (ROLLING_BACK): queued again if nothing happened for a while.
    queued: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_json(self) -> dict:
        data = asdict(self)
        data["from"] = data.pop("from_")
        data["autoRollback"] = data.pop("auto_rollback")
        data["state"] = self.state.value
        return {key: value for key, value in data.items() if value not in (None, "", False)
                or key in ("state",)}

    @classmethod
    def from_json(cls, slot: str, data: object) -> RolloutRecord:
        if not isinstance(data, Mapping):
            raise InvalidState(f"{ANNOTATION_ROLLOUT}[{slot}] is not an object")
        try:
            return cls(slot=slot, to=str(data["to"]), from_=str(data.get("from") or ""),
                       started=str(data["started"]), deadline=str(data["deadline"]),
                       state=RolloutState(data.get("state") or RolloutState.WATCHING),
                       auto_rollback=bool(data.get("autoRollback")),
                       rollback=bool(data.get("rollback")),
                       request=data.get("request") or None, by=str(data.get("by") or ""),
                       reason=str(data.get("reason") or ""),
                       finished=data.get("finished") or None,
                       queued=data.get("queued") or None)
        except (KeyError, ValueError) as exc:
            raise InvalidState(f"{ANNOTATION_ROLLOUT}[{slot}]: {exc}") from None

    def finish(self, state: RolloutState, reason: str, at: str) -> RolloutRecord:
        return replace(self, state=state, reason=reason, finished=at)


@dataclass(frozen=True)
class Hold:
    """A slot pinned at ``version`` by ``by`` at ``at`` (a manual rollback)."""

    version: str
    by: str
    at: str
    reason: str = ""


def _object(annotations: Mapping[str, str], key: str) -> dict:
    text = annotations.get(key)
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidState(f"{key} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidState(f"{key} is not a JSON object keyed by container")
    return value


def rollouts(annotations: Mapping[str, str]) -> dict[str, RolloutRecord]:
    """Every slot's rollout record (raises InvalidState)."""
    return {slot: RolloutRecord.from_json(slot, data)
            for slot, data in _object(annotations, ANNOTATION_ROLLOUT).items()}


def bad_versions(annotations: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """``{slot: versions}``: a list of versions per slot (raises InvalidState)."""
    found = {}
    for slot, versions in _object(annotations, ANNOTATION_BAD_VERSIONS).items():
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise InvalidState(f"{ANNOTATION_BAD_VERSIONS}[{slot}] is not a list of versions")
        found[slot] = frozenset(versions)
    return found


def holds(annotations: Mapping[str, str]) -> dict[str, Hold]:
    found = {}
    for slot, data in _object(annotations, ANNOTATION_HOLD).items():
        if not isinstance(data, Mapping) or not isinstance(data.get("version"), str):
            raise InvalidState(f"{ANNOTATION_HOLD}[{slot}] names no version")
        found[slot] = Hold(str(data["version"]), str(data.get("by") or ""),
                           str(data.get("at") or ""), str(data.get("reason") or ""))
    return found


def dump(values: Mapping[str, object]) -> str:
    """A state annotation's text: compact, keys sorted (one spelling for one state)."""
    def plain(value: object) -> object:
        if isinstance(value, RolloutRecord):
            return value.to_json()
        if isinstance(value, Hold):
            return {k: v for k, v in asdict(value).items() if v}
        if isinstance(value, frozenset | set):
            return sorted(value)
        return value
    return json.dumps({slot: plain(value) for slot, value in values.items()},
                      separators=(",", ":"), sort_keys=True)


# --------------------------------------------------------------------------------------------
# Reading a rollout
# --------------------------------------------------------------------------------------------


class Progress(StrEnum):
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Verdict:
    """``progress`` with a reason for people. ``signal`` marks a failure seen in pods, which
    must be seen on consecutive checks (``headwind.sh/health-check-retries``) before it counts;
    a status failure (a progress deadline, a failed Job, a failed Helm upgrade) counts at once."""

    progress: Progress
    reason: str
    signal: bool = False

    @property
    def failed(self) -> bool:
        return self.progress is Progress.FAILED


WAITING = Progress.WAITING


def _conditions(obj: Mapping) -> dict[str, Mapping]:
    status = obj.get("status") or {}
    return {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


def _observed(obj: Mapping) -> bool:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    return int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)


def _int(mapping: Mapping, key: str, default: int = 0) -> int:
    value = mapping.get(key)
    return default if value is None else int(value)


def _before(timestamp: object, since: datetime | None) -> bool:
    """Whether a condition's RFC 3339 time (whole seconds) is no later than ``since``'s second:
    then it was set before the rollout that started at ``since``."""
    if since is None or not isinstance(timestamp, str):
        return False
    try:
        when = datetime.fromisoformat(timestamp)
    except ValueError:
        return False
    if when.tzinfo is None or since.tzinfo is None:
        return False
    return when <= since.replace(microsecond=0)


def deployment(obj: Mapping, since: datetime | None = None) -> Verdict:
    """``kubectl rollout status`` for a Deployment, plus its progress deadline as a failure.

    ``since`` is when the followed rollout started. A rollback to a ReplicaSet that still
    exists keeps the broken rollout's ``ProgressDeadlineExceeded`` until the controller makes
    progress; one last updated before ``since`` belongs to that earlier rollout, not this one
    (a real one comes at least a second after ``since``: the deadline is whole seconds)."""
    if not _observed(obj):
        return Verdict(WAITING, "the controller has not seen the new template yet")
    progressing = _conditions(obj).get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded" and _before(
            progressing.get("lastUpdateTime"), since):
        return Verdict(WAITING, "no progress yet (the deadline exceeded belongs to an earlier "
                                "rollout)")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Verdict(Progress.FAILED, f"ProgressDeadlineExceeded: "
                                        f"{progressing.get('message') or 'no progress'}")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    wanted = _int(spec, "replicas", 1)
    updated = _int(status, "updatedReplicas")
    if updated < wanted:
        return Verdict(WAITING, f"{updated} of {wanted} replicas updated")
    if _int(status, "replicas") > updated:
        return Verdict(WAITING, f"{_int(status, 'replicas') - updated} old replicas pending "
                                "termination")
    if _int(status, "availableReplicas") < updated or _int(status, "unavailableReplicas") > 0:
        return Verdict(WAITING, f"{_int(status, 'availableReplicas')} of {updated} updated "
                                "replicas available")
    return Verdict(Progress.SUCCEEDED, f"{updated} of {wanted} replicas updated and available")


def statefulset(obj: Mapping) -> Verdict:
    if not _observed(obj):
        return Verdict(WAITING, "the controller has not seen the new template yet")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return Verdict(Progress.SUCCEEDED, "updateStrategy OnDelete: pods take the new version "
                                           "only when deleted")
    wanted = _int(spec, "replicas", 1)
    partition = _int(strategy.get("rollingUpdate") or {}, "partition")
    updated, ready = _int(status, "updatedReplicas"), _int(status, "readyReplicas")
    if partition:
        if updated < wanted - partition:
            return Verdict(WAITING, f"{updated} of {wanted - partition} partitioned replicas "
                                    "updated")
        return Verdict(Progress.SUCCEEDED, f"partitioned rollout: {updated} replicas updated")
    if ready < wanted:
        return Verdict(WAITING, f"{ready} of {wanted} replicas ready")
    if status.get("updateRevision") != status.get("currentRevision") or updated < wanted:
        return Verdict(WAITING, f"{updated} of {wanted} replicas at revision "
                                f"{status.get('updateRevision')}")
    return Verdict(Progress.SUCCEEDED, f"{wanted} replicas at revision "
                                       f"{status.get('updateRevision')} and ready")


def daemonset(obj: Mapping) -> Verdict:
    if not _observed(obj):
        return Verdict(WAITING, "the controller has not seen the new template yet")
    status = obj.get("status") or {}
    wanted = _int(status, "desiredNumberScheduled")
    updated = _int(status, "updatedNumberScheduled")
    if updated < wanted:
        return Verdict(WAITING, f"{updated} of {wanted} pods updated")
    if _int(status, "numberAvailable") < wanted or _int(status, "numberUnavailable") > 0:
        return Verdict(WAITING, f"{_int(status, 'numberAvailable')} of {wanted} updated pods "
                                "available")
    return Verdict(Progress.SUCCEEDED, f"{updated} of {wanted} pods updated and available")


def job(obj: Mapping) -> Verdict:
    """A CronJob's rollout is its next Job from the new template."""
    name = (obj.get("metadata") or {}).get("name", "")
    conditions = _conditions(obj)
    for kind in ("Failed", "FailureTarget"):
        condition = conditions.get(kind) or {}
        if condition.get("status") == "True":
            why = condition.get("reason") or condition.get("message")
            return Verdict(Progress.FAILED, f"Job {name} failed: {why}")
    for kind in ("Complete", "SuccessCriteriaMet"):
        if (conditions.get(kind) or {}).get("status") == "True":
            return Verdict(Progress.SUCCEEDED, f"Job {name} completed")
    return Verdict(WAITING, f"Job {name} is running")


def helmrelease(obj: Mapping, version: str) -> Verdict:
    """Flux's helm-controller reports on the HelmRelease: ``Ready`` for the generation it has
    seen, the chart version it last attempted, and its own remediation (rollback/uninstall)."""
    status = obj.get("status") or {}
    attempted = status.get("lastAttemptedRevision")
    if not _observed(obj) or (attempted and attempted != version):
        return Verdict(WAITING, f"Flux has not attempted chart {version} yet")
    conditions = _conditions(obj)
    remediated = conditions.get("Remediated") or {}
    if remediated.get("status") == "True":
        return Verdict(Progress.FAILED, f"Flux remediated the release ({remediated.get('reason')}"
                                        f"): {remediated.get('message') or ''}".rstrip(": "))
    stalled, ready = conditions.get("Stalled") or {}, conditions.get("Ready") or {}
    if stalled.get("status") == "True":
        return Verdict(Progress.FAILED, f"Flux stalled: {stalled.get('message') or ''}")
    if ready.get("status") == "True" and attempted == version:
        return Verdict(Progress.SUCCEEDED, f"Ready: {ready.get('message') or 'release ready'}")
    if ready.get("status") == "False" and ready.get("reason") in (
            "UpgradeFailed", "InstallFailed", "ArtifactFailed", "TestFailed",
            "RollbackSucceeded", "UninstallSucceeded"):
        return Verdict(Progress.FAILED, f"{ready.get('reason')}: {ready.get('message') or ''}")
    return Verdict(WAITING, f"Flux is releasing chart {version}")


def pods(items: Iterable[Mapping], *, max_restarts: int = MAX_RESTARTS) -> Verdict | None:
    """A failure signal from the new revision's pods, or None when they show none."""
    for pod in items:
        name = (pod.get("metadata") or {}).get("name", "")
        status = pod.get("status") or {}
        for container in [*(status.get("initContainerStatuses") or []),
                          *(status.get("containerStatuses") or [])]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in FAILING_WAITING_REASONS:
                return Verdict(Progress.FAILED, f"pod {name} container {container.get('name')}: "
                                                f"{reason}", signal=True)
            restarts = int(container.get("restartCount") or 0)
            if restarts >= max_restarts:
                return Verdict(Progress.FAILED, f"pod {name} container {container.get('name')} "
                                                f"restarted {restarts} times", signal=True)
    return None


@dataclass
class Signals:
    """Consecutive pod failure signals per rollout (in memory: a restart only starts the count
    again, it never loses a status failure or the deadline, both read from the cluster)."""

    retries: int
    seen: dict[tuple, int] = field(default_factory=dict)

    def count(self, key: tuple, verdict: Verdict | None) -> bool:
        """Record this check's pod verdict; True once it failed ``retries`` times in a row."""
        if verdict is None or not verdict.failed:
            self.seen.pop(key, None)
            return False
        self.seen[key] = self.seen.get(key, 0) + 1
        return self.seen[key] >= self.retries

    def forget(self, key: tuple) -> None:
        self.seen.pop(key, None)
