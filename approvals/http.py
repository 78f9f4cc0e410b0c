"""How the edges answer a service error: one HTTP status per error class."""

from __future__ import annotations

from .errors import Conflict, InvalidInput, NotAllowed, NotFound, ServiceError, Unavailable

STATUS_OF: dict[type[ServiceError], int] = {
    InvalidInput: 400,
    NotAllowed: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
}


def status_for(error: ServiceError) -> int:
    """The HTTP status for ``error`` (500 only for an error class nobody mapped)."""
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500
