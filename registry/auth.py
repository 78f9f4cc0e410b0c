"""Who may deliver webhooks. Every endpoint needs a secret unless explicitly opened.

Configured from the environment:
- ``HEADWIND_WEBHOOK_TOKEN``: a shared token any source may present;
- ``HEADWIND_WEBHOOK_<SOURCE>_TOKEN``: a token for one source (``REGISTRY``, ``DOCKERHUB``, ...);
- ``HEADWIND_WEBHOOK_<SOURCE>_SECRET``: an HMAC key for the source's signature header: GitHub's
  ``X-Hub-Signature-256`` (HMAC-SHA256, any source) and, for Nexus, ``X-Nexus-Webhook-Signature``
  (HMAC-SHA1, hex);
- ``HEADWIND_WEBHOOK_GAR_OIDC_AUDIENCE`` and ``HEADWIND_WEBHOOK_GAR_OIDC_EMAIL``: accept the OIDC
  token Pub/Sub signs for an authenticated push subscription (``HEADWIND_WEBHOOK_GAR_OIDC_JWKS_URL``
  overrides where Google's signing keys are fetched from);
- ``HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED=true``: accept sources that have no secret at all.

A token is accepted as ``Authorization: Bearer <t>``, a raw ``Authorization: <t>`` (Harbor sends
its configured header verbatim), ``X-Headwind-Token: <t>``, ``X-JFrog-Event-Auth: <t>`` (JFrog's
"Secret token"), as the last URL segment ``/webhook/<source>/<t>`` for registries that cannot send
headers (Docker Hub, Quay), or as the query parameter ``?token=<t>`` (Azure Event Grid, Pub/Sub
and other sources that only take a URL). URL tokens are redacted from every log
(headwind_site/redact.py). Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from headwind_site.config import parse_bool

if TYPE_CHECKING:  # PyJWT (and cryptography under it) load only when a Pub/Sub token comes
    import jwt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    status: int = 200
    reason: str = ""


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _header(headers: Mapping[str, str], name: str) -> str:
    """Case-insensitive (Django's request.headers is; a plain dict in a test may not be)."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value.strip() if isinstance(value, str) else ""


def tokens_for(source: str) -> list[str]:
    return [t for t in (_env(f"HEADWIND_WEBHOOK_{source.upper()}_TOKEN"),
                        _env("HEADWIND_WEBHOOK_TOKEN")) if t]


def hmac_secret_for(source: str) -> str:
    return _env(f"HEADWIND_WEBHOOK_{source.upper()}_SECRET")


def allow_unauthenticated() -> bool:
    return parse_bool("HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED",
                      _env("HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED"), False)


def is_configured(source: str) -> bool:
    return bool(tokens_for(source) or hmac_secret_for(source)
                or (source == "gar" and _pubsub_oidc_settings() != ("", "")))


# --- HMAC signatures of the body ---------------------------------------------------------------

@dataclass(frozen=True)
class _Signature:
    header: str
    digest: Callable
    prefix: str


_GITHUB = _Signature("X-Hub-Signature-256", hashlib.sha256, "sha256=")
#: Nexus Repository 3: hex HMAC-SHA1 of the body (Sonatype "Enabling A Repository Webhook
#: Capability"; the test vector in tests/unit/test_webhook_parsers.py is a real delivery).
_NEXUS = _Signature("X-Nexus-Webhook-Signature", hashlib.sha1, "")


def _signatures(source: str) -> tuple[_Signature, ...]:
    return (_GITHUB, _NEXUS) if source == "nexus" else (_GITHUB,)


def signature(secret: str, body: bytes, scheme: _Signature = _GITHUB) -> str:
    return scheme.prefix + hmac.new(secret.encode(), body, scheme.digest).hexdigest()


# --- Pub/Sub push OIDC tokens (Google Artifact Registry) -----------------------------------------

GOOGLE_JWKS_URL = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
_JWT_LEEWAY_SECONDS = 60
_jwks_clients: dict[str, jwt.PyJWKClient] = {}
_jwks_lock = threading.Lock()


def _pubsub_oidc_settings() -> tuple[str, str]:
    return (_env("HEADWIND_WEBHOOK_GAR_OIDC_AUDIENCE"), _env("HEADWIND_WEBHOOK_GAR_OIDC_EMAIL"))


def _jwks_client(url: str) -> jwt.PyJWKClient:
    """One cached key set per URL: fetched at most hourly, and again (at most once a minute)
    when a token names a key it does not hold, as Google rotates its keys."""
    import jwt

    with _jwks_lock:
        client = _jwks_clients.get(url)
        if client is None:
            client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=3600, timeout=5,
                                     cooldown_duration=60)
            _jwks_clients[url] = client
        return client


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def _check_pubsub_oidc(token: str, audience: str, email: str) -> Verdict:
    """Pub/Sub's push token: RS256 by Google's keys, ``aud`` the subscription's audience,
    ``iss`` Google, and ``email`` the push service account, verified (Google Cloud docs,
    "Authentication for push subscriptions"). Checking the e-mail matters: anyone can have
    Google sign a token for any audience."""
    import jwt  # about 10 MB with cryptography: only in a web process that receives such a token

    url = _env("HEADWIND_WEBHOOK_GAR_OIDC_JWKS_URL") or GOOGLE_JWKS_URL
    try:
        key = _jwks_client(url).get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError as exc:
        log.warning("webhook gar: cannot fetch the OIDC signing keys from %s: %s", url, exc)
        return Verdict(False, 503, "cannot fetch the OIDC signing keys; retry later")
    except jwt.PyJWTError:  # a malformed token, or a key id the key set does not hold
        return Verdict(False, 403, "invalid OIDC token")
    except ValueError as exc:  # the key URL answered something that is not JSON
        log.warning("webhook gar: the OIDC key set at %s is unreadable: %s", url, exc)
        return Verdict(False, 503, "cannot fetch the OIDC signing keys; retry later")
    try:
        claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=audience,
                            issuer=GOOGLE_ISSUERS, leeway=_JWT_LEEWAY_SECONDS,
                            options={"require": ["exp", "iat", "iss", "aud"]})
    except jwt.InvalidTokenError:
        return Verdict(False, 403, "invalid OIDC token")
    if not (isinstance(claims.get("email"), str)
            and hmac.compare_digest(claims["email"].lower().encode(), email.lower().encode())
            and claims.get("email_verified") in (True, "true")):
        return Verdict(False, 403, "OIDC token is not from the configured service account")
    return Verdict(True)


# --- the check ----------------------------------------------------------------------------------

def check(source: str, headers: Mapping[str, str], body: bytes,
          path_token: str | None = None, query_token: str | None = None) -> Verdict:
    tokens = tokens_for(source)
    secret = hmac_secret_for(source)
    audience, email = _pubsub_oidc_settings() if source == "gar" else ("", "")
    if (audience or email) and not (audience and email):
        return Verdict(False, 403, "HEADWIND_WEBHOOK_GAR_OIDC_AUDIENCE and "
                                   "HEADWIND_WEBHOOK_GAR_OIDC_EMAIL must be set together")
    if not tokens and not secret and not audience:
        if allow_unauthenticated():
            return Verdict(True)
        return Verdict(False, 403, f"no secret is configured for the {source} webhook")

    if secret:
        for scheme in _signatures(source):
            presented = _header(headers, scheme.header)
            if presented:
                expected = signature(secret, body, scheme)
                if hmac.compare_digest(presented.lower().encode(), expected.encode()):
                    return Verdict(True)
                return Verdict(False, 403, "signature does not match")

    if audience:
        scheme, _, bearer = _header(headers, "Authorization").partition(" ")
        if scheme.lower() == "bearer" and _looks_like_jwt(bearer.strip()):
            return _check_pubsub_oidc(bearer.strip(), audience, email)

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
    authorization = _header(headers, "Authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        found.append(value.strip() if scheme.lower() == "bearer" and value else authorization)
    for name in ("X-Headwind-Token", "X-JFrog-Event-Auth"):
        value = _header(headers, name)
        if value:
            found.append(value)
    if path_token:
        found.append(path_token)
    if query_token:
        found.append(query_token)
    return found
