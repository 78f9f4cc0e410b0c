"""What happened, as one value: :class:`Notice`, and the words every channel uses for it.

Pure module (stdlib only). A notice names its event, the target (kind, namespace, name and the
slot that changed: a container name or ``"chart"``), the references before and after, and who
or what caused it. It carries the target's ``headwind.sh/*`` annotations so routing can read
``headwind.sh/notify`` without another API call; they are not sent anywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import quote

ANNOTATION_PREFIX = "headwind.sh/"


class Event(StrEnum):
    UPDATE_DETECTED = "update_detected"
    REQUEST_CREATED = "request_created"
    REQUEST_APPROVED = "request_approved"  # each approval of N-of-M (approvals/required)
    REQUEST_REJECTED = "request_rejected"
    REQUEST_EXPIRED = "request_expired"
    REQUEST_SUPERSEDED = "request_superseded"
    UPDATE_APPLIED = "update_applied"
    UPDATE_FAILED = "update_failed"
    ROLLED_OUT = "rolled_out"
    ROLLBACK_TRIGGERED = "rollback_triggered"
    ROLLBACK_COMPLETED = "rollback_completed"
    ROLLBACK_FAILED = "rollback_failed"


#: Event → (phrase for titles, emoji, severity). Severity drives colours where a channel has them.
WORDING: dict[Event, tuple[str, str, str]] = {
    Event.UPDATE_DETECTED: ("New version detected", "🔔", "info"),
    Event.REQUEST_CREATED: ("Approval requested", "📦", "info"),
    Event.REQUEST_APPROVED: ("Update approved", "👍", "good"),
    Event.REQUEST_REJECTED: ("Update rejected", "❌", "attention"),
    Event.REQUEST_EXPIRED: ("Approval expired", "⌛", "warning"),
    Event.REQUEST_SUPERSEDED: ("Request superseded", "↪️", "info"),
    Event.UPDATE_APPLIED: ("Update applied", "🚀", "good"),
    Event.UPDATE_FAILED: ("Update failed", "⚠️", "attention"),
    Event.ROLLED_OUT: ("Rolled out", "✅", "good"),
    Event.ROLLBACK_TRIGGERED: ("Rollback triggered", "🔄", "warning"),
    Event.ROLLBACK_COMPLETED: ("Rollback completed", "↩️", "good"),
    Event.ROLLBACK_FAILED: ("Rollback failed", "💥", "attention"),
}



def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Notice:
    """One thing worth telling people about one target. Build it, then ``notify.emit(it)``.

    ``approvals``/``required`` are set for ``request_approved`` (and may be for other request
    events). ``request`` is the UpdateRequest's name, or None when there is none (a direct
    update). Only ``headwind.sh/*`` keys of ``annotations`` are kept.
    """

    event: Event
    kind: str
    namespace: str
    name: str
    slot: str  # a container name, or "chart" for a HelmRelease's chart
    from_ref: str = ""
    to_ref: str = ""
    policy: str = ""
    actor: str = ""
    reason: str = ""
    request: str | None = None
    approvals: int | None = None
    required: int | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False)
    at: datetime = field(default_factory=_now, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event", Event(self.event))  # ValueError on an unknown name
        ours = {str(k): str(v) for k, v in (self.annotations or {}).items()
                if str(k).startswith(ANNOTATION_PREFIX)}
        object.__setattr__(self, "annotations", MappingProxyType(ours))
        at = self.at
        if isinstance(at, str):
            at = datetime.fromisoformat(at.replace("Z", "+00:00"))
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        object.__setattr__(self, "at", at.astimezone(UTC))

    # --- words --------------------------------------------------------------------------------

    @property
    def phrase(self) -> str:
        return WORDING[self.event][0]

    @property
    def emoji(self) -> str:
        return WORDING[self.event][1]

    @property
    def severity(self) -> str:
        return WORDING[self.event][2]

    @property
    def target(self) -> str:
        """``Deployment team-a/web``."""
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def title(self) -> str:
        """``Update applied: Deployment team-a/web (app)``."""
        return f"{self.phrase}: {self.target} ({self.slot})"

    @property
    def change(self) -> str:
        if self.from_ref and self.to_ref:
            return f"{self.from_ref} → {self.to_ref}"
        return self.to_ref or self.from_ref

    @property
    def progress(self) -> str:
        """``1 of 2`` when approvals are counted, else empty."""
        if self.approvals is None or self.required is None:
            return ""
        return f"{self.approvals} of {self.required}"

    @property
    def at_text(self) -> str:
        return self.at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def link(self, dashboard_url: str) -> str:
        """The dashboard page of this notice's request, or the dashboard itself; "" without a
        dashboard URL. A plain page: opening it never approves anything."""
        base = (dashboard_url or "").rstrip("/")
        if not base:
            return ""
        if self.request:
            return f"{base}/updates/{quote(self.namespace, safe='')}/{quote(self.request, safe='')}"
        return f"{base}/"

    # --- identity and transport ---------------------------------------------------------------

    @property
    def key(self) -> str:
        """Stable identity of what is told (not when): the same notice emitted twice, as a
        redelivered task does, is delivered once (see ``operator_app.notify.tasks``)."""
        fields = self.to_message()
        fields.pop("at")
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def to_message(self) -> dict:
        """JSON-safe fields for a task message (annotations are routing input, not carried)."""
        return {
            "event": str(self.event), "kind": self.kind, "namespace": self.namespace,
            "name": self.name, "slot": self.slot, "from_ref": self.from_ref,
            "to_ref": self.to_ref, "policy": self.policy, "actor": self.actor,
            "reason": self.reason, "request": self.request, "approvals": self.approvals,
            "required": self.required, "at": self.at_text,
        }

    @classmethod
    def from_message(cls, message: Mapping) -> Notice:
        known = {k: message[k] for k in cls.__dataclass_fields__ if k in message}
        return cls(**known)
