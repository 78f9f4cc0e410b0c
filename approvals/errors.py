"""The approval services' one error family. Services raise these; only the edges (views, the
API, the admin) turn them into HTTP status codes or messages (``approvals.http``).

Every ``reason`` is short text that is safe to show to the caller: it never holds secrets,
tokens or internal addresses.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An action was not carried out; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidInput(ServiceError):
    """A missing or malformed argument (a reason that is empty, too long, control characters)."""


class NotAllowed(ServiceError):
    """The caller may not do this here (permission, namespace grant, Kubernetes RBAC)."""


class NotFound(ServiceError):
    """No such UpdateRequest (or workload)."""


class Conflict(ServiceError):
    """Not possible in the current state: already decided, expired, stale, the same approver
    twice, or the request kept changing under us."""


class Unavailable(ServiceError):
    """The Kubernetes API server (or the broker) could not be reached; try again."""
