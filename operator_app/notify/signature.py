"""The generic webhook's signature: HMAC-SHA256 over ``timestamp + "." + body``.

Headwind sends ``X-Headwind-Signature: t=<unix seconds>,v1=<hex digest>``, where the digest is
``HMAC-SHA256(secret, f"{t}." + body)`` and ``body`` is exactly the bytes of the request body.
The timestamp is signed with the body, so a receiver that refuses old timestamps also refuses a
replayed request. :func:`verify` is the receiver's side (docs/notifications.md has a standalone
copy). Pure module (stdlib only).
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Headwind-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300  # seconds either side of the receiver's clock


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def digest(body: bytes, timestamp: int, secret: str | bytes) -> str:
    return hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str | bytes, timestamp: int | None = None) -> str:
    """The header value for ``body``: ``t=<unix>,v1=<hex>``."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={stamp},{SCHEME}={digest(body, stamp, secret)}"


def verify(body: bytes | str, header: str | None, secret: str | bytes,
           tolerance: int = DEFAULT_TOLERANCE, *, now: float | None = None) -> bool:
    """True when ``header`` signs exactly ``body`` with ``secret`` and its timestamp is within
    ``tolerance`` seconds of now. Never raises on malformed input: it is just not valid.

    Several ``v1=`` entries are accepted (any one matching), so a sender may sign with an old
    and a new secret while they are rotated. Comparisons are constant-time.
    """
    if not header or not secret:
        return False
    if isinstance(body, str):
        body = body.encode()
    stamp, candidates = None, []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            if stamp is not None or not value.isdigit() or len(value) > 12:
                return False
            stamp = int(value)
        elif name == SCHEME:
            candidates.append(value.strip().lower())
    if stamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    expected = digest(body, stamp, secret)
    matched = False
    for candidate in candidates:  # no early exit: the time taken does not tell which matched
        matched |= hmac.compare_digest(expected.encode(), candidate.encode("ascii", "replace"))
    return matched
