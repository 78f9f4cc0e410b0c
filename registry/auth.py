"""Who may deliver webhooks. Every endpoint needs a secret unless explicitly opened.

Configured from the environment:
- ``HEADWIND_WEBHOOK_TOKEN``: a shared token any source may present;
- ``HEADWIND_WEBHOOK_<SOURCE>_TOKEN``: a token for one source (``REGISTRY``, ``DOCKERHUB``, ...);
- ``HEADWIND_WEBHOOK_GHCR_SECRET``: GitHub's webhook secret (``X-Hub-Signature-256`` HMAC);
- ``HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED=true``: accept sources that have no secret at all.

A token is accepted as ``Authorization: Bearer <t>``, a raw ``Authorization: <t>`` (Harbor sends
its configured header verbatim), ``X-Headwind-Token: <t>``, as the last URL segment
``/webhook/<source>/<t>`` for registries that cannot send headers (Docker Hub, Quay), or as the
query parameter ``?token=<t>`` (Azure Event Grid and other sources that only take a URL). URL
tokens are redacted from every log (headwind_site/redact.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from headwind_site.config import parse_bool


@dataclass(frozen=True)
class Verdict:
    ok: bool
    status: int = 200
    reason: str = ""


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def tokens_for(source: str) -> list[str]:
    return [t for t in (_env(f"HEADWIND_WEBHOOK_{source.upper()}_TOKEN"),
                        _env("HEADWIND_WEBHOOK_TOKEN")) if t]


def hmac_secret_for(source: str) -> str:
    return _env(f"HEADWIND_WEBHOOK_{source.upper()}_SECRET")


def allow_unauthenticated() -> bool:
    return parse_bool("HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED",
                      _env("HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED"), False)


def is_configured(source: str) -> bool:
    return bool(tokens_for(source) or hmac_secret_for(source))


def check(source: str, headers: Mapping[str, str], body: bytes,
          path_token: str | None = None, query_token: str | None = None) -> Verdict:
    tokens = tokens_for(source)
    secret = hmac_secret_for(source)
    if not tokens and not secret:
        if allow_unauthenticated():
            return Verdict(True)
        return Verdict(False, 403, f"no secret is configured for the {source} webhook")

    if secret:
        signature = headers.get("X-Hub-Signature-256", "")
        if signature:
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(signature.encode(), expected.encode()):
                return Verdict(True)
            return Verdict(False, 403, "signature does not match")

    presented = _presented_tokens(headers, path_token, query_token)
    if not presented:
        return Verdict(False, 401, "credentials required")
    for candidate in presented:
        for token in tokens:
            if hmac.compare_digest(candidate.encode(), token.encode()):
                return Verdict(True)
    return Verdict(False, 403, "invalid credentials")


def _presented_tokens(headers: Mapping[str, str], path_token: str | None,
                      query_token: str | None = None) -> list[str]:
    found = []
    authorization = headers.get("Authorization", "").strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        found.append(value.strip() if scheme.lower() == "bearer" and value else authorization)
    if headers.get("X-Headwind-Token"):
        found.append(headers["X-Headwind-Token"].strip())
    if path_token:
        found.append(path_token)
    if query_token:
        found.append(query_token)
    return found
