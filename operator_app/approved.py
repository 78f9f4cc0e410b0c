"""Carrying out approvals that reached the cluster without going through Headwind's web.

Run by the leader every ``HEADWIND_EXPIRY_INTERVAL`` seconds (and by tests directly):

* a **Pending** request whose proven approvals (see :mod:`operator_app.attribution`) now reach
  ``approvalsRequired`` — for example ``kubectl headwind approve``, admitted by the admission
  policy — is marked Approved by Headwind and its update queued;
* an **Approved** request that never reached Completed or Failed (a lost broker message, a
  crash between approving and queueing) is queued again after ``grace_seconds``; the apply task
  is idempotent, so a duplicate costs one read;
* an **Approved** request whose approval Headwind cannot attribute (someone wrote
  ``phase: Approved`` with nothing to prove it) is marked Failed with the reason, with a
  Warning Event, and nothing is applied.

Unproven approval entries on a Pending request (kubectl approvals on a cluster without the
admission policy) are reported once per request in a Warning Event; they never count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import attribution, metrics, recorder
from .apply import UpdateCommand
from .kube import KubeError, request
from .proposals import (
    API_VERSION,
    KIND,
    PLURAL,
    Phase,
    PhaseConflict,
    StatusContention,
    parse_rfc3339,
    phase_of,
    rfc3339,
    update_status,
)

log = logging.getLogger(__name__)


@dataclass
class ApprovalReport:
    approved: list[str] = field(default_factory=list)  # Pending -> Approved (proven entries)
    resumed: list[str] = field(default_factory=list)  # Approved, re-queued
    refused: list[str] = field(default_factory=list)  # Approved without proof -> Failed


def command_for(obj: dict, actor: str) -> UpdateCommand:
    """The update an UpdateRequest asks for."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    return UpdateCommand(
        kind=ref.get("kind", ""), namespace=meta["namespace"], name=ref.get("name", ""),
        container=spec.get("containerName", ""), new_image=spec.get("newImage", ""),
        expected_image=spec.get("currentImage"), request=meta["name"], actor=actor)


class ApprovalWork:
    """The leader's pass over every UpdateRequest (see the module docstring)."""

    def __init__(self, api, queue: Callable[[UpdateCommand], None], *,
                 grace_seconds: float = 120) -> None:
        self.api = api
        self.queue = queue
        self.grace_seconds = grace_seconds
        self._reported: set[tuple[str, int]] = set()  # (uid, unproven count) already told

    def run(self, now: datetime | None = None) -> ApprovalReport:
        now = now or datetime.now(UTC)
        policy = attribution.ADMISSION.installed(self.api)
        report = ApprovalReport()
        items = request(self.api, "GET", f"/apis/{API_VERSION}/{PLURAL}")["items"]
        for obj in items:
            phase = phase_of(obj)
            proof = attribution.attribute(obj, policy_installed=policy)
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            if phase == Phase.PENDING:
                if proof.approved:
                    if self._approve(obj, policy):
                        report.approved.append(key)
                elif proof.unproven:
                    self._report_unproven(obj, proof)
            elif phase == Phase.APPROVED:
                if not proof.approved:
                    if self._refuse(obj, proof):
                        report.refused.append(key)
                elif self._overdue(obj, now):
                    self.queue(command_for(obj, (obj.get("status") or {}).get("approvedBy")
                                           or "headwind"))
                    report.resumed.append(key)
        for name, keys in (("approved", report.approved), ("re-queued", report.resumed),
                           ("refused", report.refused)):
            if keys:
                log.warning("%s %d UpdateRequests: %s", name, len(keys), ", ".join(keys))
        return report

    def _overdue(self, obj: dict, now: datetime) -> bool:
        status = obj.get("status") or {}
        approved_at = parse_rfc3339(status.get("approvedAt") or status.get("lastUpdated"))
        return approved_at is None or (now - approved_at).total_seconds() >= self.grace_seconds

    def _approve(self, obj: dict, policy: bool) -> bool:
        meta = obj["metadata"]

        def change(current: dict) -> dict:
            if phase_of(current) != Phase.PENDING:
                raise PhaseConflict(meta["namespace"], meta["name"], phase_of(current),
                                    {Phase.PENDING})
            proof = attribution.attribute(current, policy_installed=policy)
            if not proof.approved:
                raise PhaseConflict(meta["namespace"], meta["name"], Phase.PENDING, set())
            approvers = ", ".join(proof.approvers)
            status = dict(current.get("status") or {})
            status.update(phase=Phase.APPROVED.value, approvedBy=approvers,
                          approvedAt=rfc3339(datetime.now(UTC)),
                          message=f"approved by {approvers}; update queued")
            return status

        try:
            updated = update_status(self.api, meta["namespace"], meta["name"], change)
        except (PhaseConflict, StatusContention, KubeError) as exc:
            log.info("not marking %s/%s Approved: %s", meta["namespace"], meta["name"], exc)
            return False
        approvers = (updated.get("status") or {}).get("approvedBy", "")
        metrics.request_decided(updated, "approved")
        self.queue(command_for(updated, approvers or "headwind"))
        _event(self.api, updated, "Normal", "Approved", f"approved by {approvers}")
        return True

    def _refuse(self, obj: dict, proof: attribution.Attribution) -> bool:
        meta = obj["metadata"]
        reason = f"not applied: {proof.reason()}"

        def change(current: dict) -> dict:
            if phase_of(current) != Phase.APPROVED:
                raise PhaseConflict(meta["namespace"], meta["name"], phase_of(current),
                                    {Phase.APPROVED})
            status = dict(current.get("status") or {})
            status.update(phase=Phase.FAILED.value, message=reason)
            return status

        try:
            update_status(self.api, meta["namespace"], meta["name"], change)
        except (PhaseConflict, StatusContention, KubeError) as exc:
            log.info("not failing %s/%s: %s", meta["namespace"], meta["name"], exc)
            return False
        metrics.APPROVALS_UNATTRIBUTED.labels(meta["namespace"]).inc()
        _event(self.api, obj, "Warning", "ApprovalNotAttributable", reason)
        return True

    def _report_unproven(self, obj: dict, proof: attribution.Attribution) -> None:
        key = (obj["metadata"].get("uid", ""), len(proof.unproven))
        if key in self._reported:
            return
        self._reported.add(key)
        _event(self.api, obj, "Warning", "ApprovalNotAttributable",
               f"approvals by {', '.join(proof.unproven)} do not count: Headwind's admission "
               "policy is not installed, so only approvals made through Headwind can be "
               "attributed")


def _event(api, obj: dict, event_type: str, reason: str, message: str) -> None:
    meta = obj["metadata"]
    recorder.record_event(api, api_version=API_VERSION, kind=KIND,
                          namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid"),
                          event_type=event_type, reason=reason, message=message)
