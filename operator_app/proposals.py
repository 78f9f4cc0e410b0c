"""UpdateRequest custom resources: proposing an update that waits for approval.

An UpdateRequest (``headwind.sh/v1alpha1``, in the target's namespace) is the source of truth for
one proposed image change; the database only mirrors it. This module creates them, keeps at most
one live proposal per target container, and changes their phase with optimistic concurrency.

Rules (each fixes a bug of the original operator):

* The name is deterministic and DNS-1123 safe: a readable slug plus a hash of the full target and
  the new image, so unusual tags (``V1.2_RC+build``) work and different targets never collide.
* Proposing the same change again finds the same object and leaves it alone, whatever its phase:
  a rejection is permanent and a completed request is never recreated.
* A newer proposal supersedes older Pending ones; an older proposal never replaces a newer live
  one, so an old request cannot be approved into a downgrade after a newer one was proposed.
* Every request is owned by its workload (ownerReference), so deleting the workload removes its
  requests through the garbage collector.
* Status is written through the status subresource with the object's resourceVersion; a conflict
  re-reads and re-checks instead of overwriting someone else's approval or rejection.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from . import attribution, metrics
from .core.charts import ChartRef, parse_chart
from .core.images import ImageRef, parse_image
from .core.policy import Policy, PolicySpec, decide
from .core.versions import parse_tag
from .kube import KubeError, request
from .workloads import TargetKind, WorkloadProjection

log = logging.getLogger(__name__)

GROUP = "headwind.sh"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "UpdateRequest"
PLURAL = "updaterequests"

LABEL_TARGET = "headwind.sh/target"
LABEL_TARGET_KIND = "headwind.sh/target-kind"
LABEL_TARGET_NAME = "headwind.sh/target-name"
LABEL_CONTAINER = "headwind.sh/container"


class Phase(StrEnum):
    """An UpdateRequest's ``status.phase``, in lifecycle order."""

    PENDING = "Pending"
    APPROVED = "Approved"
    REJECTED = "Rejected"
    COMPLETED = "Completed"  # applied; its rollout is being followed
    ROLLED_OUT = "RolledOut"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    EXPIRED = "Expired"
    SUPERSEDED = "Superseded"


#: Requests that may still lead to an update.
LIVE_PHASES = frozenset({Phase.PENDING, Phase.APPROVED})
#: Applied requests whose rollout may still end (or be rolled back).
APPLIED_PHASES = frozenset({Phase.COMPLETED, Phase.ROLLED_OUT, Phase.FAILED})

_NAME_MAX = 63  # a DNS-1123 label: also valid wherever a subdomain is
_HASH_LEN = 10
_STATUS_WRITE_ATTEMPTS = 8


class PhaseConflict(RuntimeError):
    """The request is not in a phase the caller allowed; nothing was written."""

    def __init__(self, namespace: str, name: str, current: str, expected: set[str]) -> None:
        wanted = ", ".join(sorted(expected)) or "none"
        super().__init__(
            f"UpdateRequest {namespace}/{name} is {current}; expected one of: {wanted}"
        )
        self.namespace = namespace
        self.name = name
        self.current = current
        self.expected = frozenset(expected)


@dataclass
class Proposal:
    """What ``propose`` did: ``created`` is False when it already existed or was skipped."""

    name: str
    created: bool
    superseded: list[str] = field(default_factory=list)
    skipped_reason: str | None = None


# --------------------------------------------------------------------------------------------
# Names, labels, small helpers
# --------------------------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    """``2025-01-02T03:04:05Z``: UTC, whole seconds, no suffix (what Kubernetes writes too)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> datetime | None:
    """The inverse of :func:`rfc3339`, lenient on fractions and offsets; None when unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:_HASH_LEN]


def target_key(kind: str, namespace: str, name: str, container: str) -> str:
    """The ``headwind.sh/target`` label: one value per workload container."""
    return _short_hash(kind, namespace, name, container)


def _tag_of(image: str) -> str | None:
    """The tag (or chart version) a reference names."""
    try:
        if "://" in image:
            return parse_chart(image).version
        return parse_image(image).effective_tag
    except ValueError:  # still name it readably; the hash keeps it unique
        reference = image.partition("@")[0]
        _, colon, tag = reference.rpartition("/")[2].rpartition(":")
        return tag if colon and tag else None


def request_name(kind: str, namespace: str, name: str, container: str, new_image: str) -> str:
    """``<workload>-<container>-<tag>-<hash>``, lowercased, at most 63 characters.

    The hash covers the whole target and the exact new image (digest included), so two targets
    whose slugs coincide after sanitising or truncation still get different names.
    """
    digest = _short_hash(kind, namespace, name, container, new_image)
    tag = _tag_of(new_image) or "digest"
    slug = re.sub(r"[^a-z0-9]+", "-", f"{name}-{container}-{tag}".lower()).strip("-")
    slug = slug[: _NAME_MAX - _HASH_LEN - 1].rstrip("-")
    return f"{slug}-{digest}" if slug else f"ur-{digest}"


def _label_value(text: str) -> str:
    """A label value (≤ 63, alphanumeric at both ends); long workload names are cut.

    The exact match is always ``headwind.sh/target``; this label is for people and kubectl.
    """
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def phase_of(obj: dict) -> Phase:
    """The request's phase; a request whose status was not written yet (or holds a phase we do
    not know) is Pending."""
    try:
        return Phase((obj.get("status") or {}).get("phase") or Phase.PENDING)
    except ValueError:
        return Phase.PENDING


def _collection(namespace: str) -> str:
    return f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}"


def _path(namespace: str, name: str) -> str:
    return f"{_collection(namespace)}/{name}"


def get(api, namespace: str, name: str) -> dict:
    """The UpdateRequest as a dict; KubeError(404) when it does not exist."""
    return request(api, "GET", _path(namespace, name))


def list_for_target(
    api, kind: str, namespace: str, name: str, container: str
) -> list[dict]:
    """Every UpdateRequest for one workload container, in any phase."""
    selector = f"{LABEL_TARGET}={target_key(kind, namespace, name, container)}"
    found = request(api, "GET", _collection(namespace), query={"labelSelector": selector})
    return [
        item for item in found.get("items") or []
        if _targets(item, kind, name, container)
    ]


def _targets(obj: dict, kind: str, name: str, container: str) -> bool:
    spec = obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    return (ref.get("kind"), ref.get("name"), spec.get("containerName")) == (kind, name, container)


class StatusContention(RuntimeError):
    """The request changed under every one of our status writes; nothing was written."""


def update_status(api, namespace: str, name: str, change: Callable[[dict], dict]) -> dict:
    """The one writer of UpdateRequest status (operator, apply task, web, API, admin).

    Reads the request, lets ``change(obj)`` compute the new ``status`` from it (``change`` may
    raise to refuse; nothing is written then), stamps ``lastUpdated`` and writes through the
    status subresource guarded by the resourceVersion it read. On a 409 the request is read
    again and ``change`` asked again, so a concurrent approval or rejection is never
    overwritten. Returns the updated object; KubeError(404) when the request does not exist.
    """
    for attempt in range(1, _STATUS_WRITE_ATTEMPTS + 1):
        obj = get(api, namespace, name)
        status = dict(change(obj))
        status["lastUpdated"] = rfc3339(datetime.now(UTC))
        obj["status"] = status  # metadata.resourceVersion stays: the write is conditional
        try:
            return request(api, "PUT", f"{_path(namespace, name)}/status", body=obj)
        except KubeError as exc:
            if exc.status != 409:
                raise
            log.debug("UpdateRequest %s/%s changed while writing its status (attempt %d); "
                      "re-reading", namespace, name, attempt)
            time.sleep(0.02 * attempt)
    raise StatusContention(f"UpdateRequest {namespace}/{name} kept changing while its status "
                           f"was written")


def set_phase(
    api,
    namespace: str,
    name: str,
    phase: Phase,
    *,
    message: str | None = None,
    extra_status: dict | None = None,
    expect_phases: set[Phase] | None = None,
) -> dict:
    """Write ``status.phase`` plus ``message`` and ``extra_status`` (see :func:`update_status`).

    Raises PhaseConflict when the current phase (missing counts as Pending) is not in
    ``expect_phases``.
    """
    phase = Phase(phase)

    def change(obj: dict) -> dict:
        current = phase_of(obj)
        if expect_phases is not None and current not in expect_phases:
            raise PhaseConflict(namespace, name, current, set(expect_phases))
        status = dict(obj.get("status") or {})
        status["phase"] = phase.value
        if message is not None:
            status["message"] = message
        status.update(extra_status or {})
        return status

    return update_status(api, namespace, name, change)


# --------------------------------------------------------------------------------------------
# Proposing
# --------------------------------------------------------------------------------------------


def _compare(spec: PolicySpec, current: ImageRef | ChartRef | None, our_image: str,
             their_image: str) -> str | None:
    """Which proposal moves further: "ours", "theirs", "equal", or None when not comparable."""
    our_tag = _tag_of(our_image) or our_image
    their_tag = _tag_of(their_image) or their_image
    if our_tag == their_tag:
        if spec.policy is Policy.DIGEST and our_image != their_image:
            return "ours"  # the same tag rebuilt again: the latest digest is the one to pin
        return "equal"
    mine, other = parse_tag(our_tag), parse_tag(their_tag)
    if mine is not None and other is not None and mine.version == other.version:
        return "equal"  # 1.4.0 and v1.4.0: one version, spelled twice
    if current is not None:
        decision = decide(spec, current, {their_tag: None, our_tag: None})
        if decision is not None and decision.tag in (our_tag, their_tag):
            return "ours" if decision.tag == our_tag else "theirs"
    # The policy picks neither (e.g. it changed since): compare as versions when both are.
    if mine is None or other is None:
        return None
    return "ours" if mine.version > other.version else "theirs"


def _parsed(image: str) -> ImageRef | ChartRef | None:
    try:
        return parse_chart(image) if "://" in image else parse_image(image)
    except ValueError:
        return None


def propose(
    api,
    *,
    kind: TargetKind,
    workload: WorkloadProjection,
    container: str,
    current_image: str,
    new_image: str,
    new_digest: str | None,
    spec: PolicySpec,
    reason: str,
    source: str,
) -> Proposal:
    """Create the UpdateRequest for moving ``container`` to ``new_image`` (idempotent)."""
    if spec.policy is Policy.NONE:
        raise ValueError("policy none never proposes updates")
    namespace = workload.namespace
    name = request_name(kind.kind, namespace, workload.name, container, new_image)
    current = _parsed(current_image)

    existing = list_for_target(api, kind.kind, namespace, workload.name, container)
    others = [item for item in existing if item["metadata"]["name"] != name]
    mine = next((item for item in existing if item["metadata"]["name"] == name), None)
    if mine is not None and _worth_renewing(mine, current_image):
        # An Expired or Failed request, or a Pending one whose starting point is gone (the
        # workload moved meanwhile, so approving it would only ever be refused as stale), must
        # not block this target for ever: replace it. Rejected and Completed ones stand.
        if _delete_if_unchanged(api, mine):
            log.info("UpdateRequest %s/%s (%s, from %s) replaced", namespace, name,
                     phase_of(mine), (mine.get("spec") or {}).get("currentImage"))
            mine = None
    if mine is not None:
        # Already proposed: leave it as it is. If it is still live, finish superseding older
        # requests (a previous call may have stopped between creating and superseding).
        superseded = []
        if phase_of(mine) in LIVE_PHASES:
            superseded = _supersede_older(api, kind, spec, current, name, new_image, others)
        return Proposal(name=name, created=False, superseded=superseded)

    for other in others:
        if phase_of(other) not in LIVE_PHASES:
            continue
        their_image = (other.get("spec") or {}).get("newImage", "")
        verdict = _compare(spec, current, new_image, their_image)
        if verdict in ("theirs", "equal"):
            reason_text = (
                f"UpdateRequest {other['metadata']['name']} ({phase_of(other)}) already proposes "
                f"{their_image}, which is {'the same as' if verdict == 'equal' else 'newer than'} "
                f"{new_image}"
            )
            log.info("not proposing %s for %s %s/%s container %s: %s", new_image, kind.kind,
                     namespace, workload.name, container, reason_text)
            return Proposal(name=name, created=False, skipped_reason=reason_text)

    now = datetime.now(UTC)
    body = attribution.sign_request(_build(kind, workload, name, container, current_image,
                                           new_image, new_digest, spec, reason, source, now))
    try:
        request(api, "POST", _collection(namespace), body=body)
    except KubeError as exc:
        if exc.status == 409 and exc.reason == "AlreadyExists":
            return Proposal(name=name, created=False)
        raise
    try:
        set_phase(api, namespace, name, Phase.PENDING, expect_phases={Phase.PENDING})
    except PhaseConflict as exc:  # someone acted on it within milliseconds; theirs stands
        log.info("%s", exc)
    metrics.UPDATE_REQUESTS_CREATED.labels(kind.kind, namespace).inc()
    log.info("UpdateRequest %s/%s created: %s %s container %s %s → %s", namespace, name,
             kind.kind, workload.name, container, current_image, new_image)
    superseded = _supersede_older(api, kind, spec, current, name, new_image, others)
    return Proposal(name=name, created=True, superseded=superseded)


def _worth_renewing(existing: dict, current_image: str) -> bool:
    phase = phase_of(existing)
    if phase in (Phase.EXPIRED, Phase.FAILED):
        return True
    spec = existing.get("spec") or {}
    return phase == Phase.PENDING and spec.get("currentImage") != current_image


def _delete_if_unchanged(api, existing: dict) -> bool:
    """Delete exactly the version we looked at; someone acting on it meanwhile wins."""
    meta = existing["metadata"]
    try:
        request(api, "DELETE", f"{_collection(meta['namespace'])}/{meta['name']}",
                body={"preconditions": {"resourceVersion": meta["resourceVersion"],
                                        "uid": meta["uid"]}})
    except KubeError as exc:
        if exc.status in (404, 409):
            return exc.status == 404
        raise
    return True


def _supersede_older(api, kind: TargetKind, spec: PolicySpec, current: ImageRef | ChartRef | None,
                     name: str, new_image: str, others: list[dict]) -> list[str]:
    superseded: list[str] = []
    for other in others:
        if phase_of(other) != Phase.PENDING:
            continue
        namespace = other["metadata"]["namespace"]
        other_name = other["metadata"]["name"]
        their_image = (other.get("spec") or {}).get("newImage", "")
        if _compare(spec, current, new_image, their_image) != "ours":
            continue
        try:
            set_phase(
                api, namespace, other_name, Phase.SUPERSEDED,
                message=f"superseded by {name} ({new_image})",
                extra_status={"supersededBy": name},
                expect_phases={Phase.PENDING},
            )
        except PhaseConflict as exc:
            log.info("not superseding: %s", exc)
            continue
        except KubeError as exc:
            if exc.status == 404:
                continue
            raise
        metrics.UPDATE_REQUESTS_SUPERSEDED.labels(kind.kind, namespace).inc()
        log.info("UpdateRequest %s/%s superseded by %s", namespace, other_name, name)
        superseded.append(other_name)
    return superseded


def _build(kind: TargetKind, workload: WorkloadProjection, name: str, container: str,
           current_image: str, new_image: str, new_digest: str | None, spec: PolicySpec,
           reason: str, source: str, now: datetime) -> dict:
    body_spec: dict = {
        "targetRef": {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "namespace": workload.namespace,
            "name": workload.name,
            "uid": workload.uid,
        },
        "containerName": container,
        "currentImage": current_image,
        "newImage": new_image,
        "policy": spec.policy.value,
        "reason": reason,
        "source": str(source),
        "approvalsRequired": spec.approvals_required,
        "expiresAt": rfc3339(now + timedelta(seconds=spec.approval_timeout_seconds)),
    }
    if new_digest:
        body_spec["newDigest"] = new_digest
    if "://" in new_image:  # a chart version: say so, for people and kubectl
        current, new = _parsed(current_image), _parsed(new_image)
        if isinstance(current, ChartRef) and isinstance(new, ChartRef):
            body_spec["chart"] = {"name": new.chart, "sourceURL": new.source,
                                  "currentVersion": current.version, "newVersion": new.version}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": workload.namespace,
            "labels": {
                LABEL_TARGET: target_key(kind.kind, workload.namespace, workload.name, container),
                LABEL_TARGET_KIND: kind.kind,
                LABEL_TARGET_NAME: _label_value(workload.name),
                LABEL_CONTAINER: container,
            },
            "ownerReferences": [{
                "apiVersion": kind.api_version,
                "kind": kind.kind,
                "name": workload.name,
                "uid": workload.uid,
                "controller": False,
                "blockOwnerDeletion": False,
            }],
        },
        "spec": body_spec,
    }
