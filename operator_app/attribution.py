"""Who proposed an UpdateRequest and who approved it, proven rather than claimed.

Anyone who may write an UpdateRequest (or its status) could otherwise invent a proposal, or
write ``phase: Approved, approvedBy: nobody``. Two proofs are accepted:

* **Headwind's own signature.** Proposals the operator opens carry ``headwind.sh/signature``,
  an HMAC over the exact change; approvals recorded through Headwind's web, admin or API (after
  its own permission checks) carry a ``signature`` over (request uid, user, time). The key is
  derived from ``SECRET_KEY``, which the web, operator and worker share and nobody else has.
* **The cluster's admission policy** (``deploy/admission/updaterequests.yaml``). With the
  ValidatingAdmissionPolicy and its Deny binding installed, the API server itself has checked
  that whoever created a request may ``patch`` its target, and that every approval entry a
  person added names that person (``request.userInfo.username``) and that they may ``patch``
  the target. Then every request and entry on the cluster is attributable.

Without the policy only signed requests and signed approvals count; Headwind says so in a
Warning Event. ``docs/security.md`` has the whole threat model.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils.crypto import salted_hmac

from .kube import KubeError, request

log = logging.getLogger(__name__)

SIGNATURE_ANNOTATION = "headwind.sh/signature"
POLICY_NAME = "headwind-updaterequests"
_SALT = "headwind.sh/attribution/v1"
_POLICY_PATH = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
_BINDING_PATH = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"


def _mac(*parts: str) -> str:
    return salted_hmac(_SALT, "\x00".join(parts), secret=settings.SECRET_KEY,
                       algorithm="sha256").hexdigest()


def _request_parts(obj: dict) -> tuple[str, ...]:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    return ("request", str(meta.get("namespace", "")), str(meta.get("name", "")),
            str(ref.get("kind", "")), str(ref.get("name", "")), str(ref.get("uid", "")),
            str(spec.get("containerName", "")), str(spec.get("currentImage", "")),
            str(spec.get("newImage", "")), str(spec.get("approvalsRequired", 1)))


def sign_request(body: dict) -> dict:
    """``body`` (a new UpdateRequest) with Headwind's signature annotation added."""
    annotations = body.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[SIGNATURE_ANNOTATION] = _mac(*_request_parts(body))
    return body


def request_signed(obj: dict) -> bool:
    given = ((obj.get("metadata") or {}).get("annotations") or {}).get(SIGNATURE_ANNOTATION, "")
    return bool(given) and hmac.compare_digest(str(given), _mac(*_request_parts(obj)))


def _approval_parts(obj: dict, entry: dict) -> tuple[str, ...]:
    return ("approval", str((obj.get("metadata") or {}).get("uid", "")),
            str(entry.get("user", "")), str(entry.get("at", "")))


def sign_approval(obj: dict, entry: dict) -> dict:
    """An approval entry recorded by Headwind (after its own permission checks), signed."""
    return {**entry, "signature": _mac(*_approval_parts(obj, entry))}


def approval_signed(obj: dict, entry: dict) -> bool:
    given = entry.get("signature") if isinstance(entry, dict) else None
    return isinstance(given, str) and hmac.compare_digest(given,
                                                          _mac(*_approval_parts(obj, entry)))


@dataclass(frozen=True)
class Attribution:
    """What can be proven about one request."""

    proposed: bool  # by Headwind, or (policy installed) by someone allowed to change the target
    approvers: tuple[str, ...]  # distinct people whose approval is proven, in order
    unproven: tuple[str, ...]  # names on approval entries that prove nothing
    required: int

    @property
    def approved(self) -> bool:
        return self.proposed and len(self.approvers) >= self.required

    def reason(self) -> str:
        if not self.proposed:
            return ("it was not proposed by Headwind, and no admission policy proves that its "
                    "author may change the target")
        if len(self.approvers) < self.required:
            proven = ", ".join(self.approvers) or "nobody"
            text = f"approved by {proven} ({len(self.approvers)} of {self.required} proven)"
            if self.unproven:
                text += (f"; approvals by {', '.join(self.unproven)} cannot be attributed "
                         "(no Headwind signature and no admission policy)")
            return text
        return ""


def attribute(obj: dict, *, policy_installed: bool) -> Attribution:
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    try:
        required = max(1, int(spec.get("approvalsRequired") or 1))
    except (TypeError, ValueError):
        required = 1
    approvers: list[str] = []
    unproven: list[str] = []
    for entry in status.get("approvals") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("user"), str):
            continue
        user = entry["user"]
        if policy_installed or approval_signed(obj, entry):
            if user and user not in approvers:
                approvers.append(user)
        elif user not in unproven:
            unproven.append(user)
    return Attribution(proposed=policy_installed or request_signed(obj),
                       approvers=tuple(approvers), unproven=tuple(unproven), required=required)


class AdmissionPolicy:
    """Is Headwind's admission policy installed and enforcing (Deny)? Asked at most once per
    ``ttl`` seconds per process; an API error counts as "not installed" (fail safe)."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._installed = False

    def installed(self, api) -> bool:
        with self._lock:
            if time.monotonic() - self._checked_at < self.ttl:
                return self._installed
            installed = self._ask(api)
            if installed != self._installed or self._checked_at == float("-inf"):
                log.log(logging.INFO if installed else logging.WARNING,
                        "admission policy %s is %s", POLICY_NAME,
                        "installed: approvals written with kubectl count" if installed else
                        "NOT installed: only approvals made through Headwind count")
            self._installed, self._checked_at = installed, time.monotonic()
            return installed

    def forget(self) -> None:
        """Ask the cluster again on the next call (tests install and remove the policy)."""
        with self._lock:
            self._checked_at = float("-inf")

    def _ask(self, api) -> bool:
        try:
            policy = request(api, "GET", f"{_POLICY_PATH}/{POLICY_NAME}")
            binding = request(api, "GET", f"{_BINDING_PATH}/{POLICY_NAME}")
        except KubeError as exc:
            if exc.status not in (404, 403):
                log.warning("could not read admission policy %s: %s", POLICY_NAME, exc)
            return False
        failure = (policy.get("spec") or {}).get("failurePolicy", "Fail")
        actions = (binding.get("spec") or {}).get("validationActions") or []
        return failure == "Fail" and "Deny" in actions and \
            (binding.get("spec") or {}).get("policyName") == POLICY_NAME


#: One per process: the web, the worker and the operator each ask the cluster at most every 30 s.
ADMISSION = AdmissionPolicy()
