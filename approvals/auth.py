"""The ways in besides Django's own login: API tokens, Kubernetes tokens, a trusted proxy.

* **API tokens** (``Authorization: Token <key>``): personal keys of Django users; only the
  SHA-256 of a key is stored, the key is shown once (``manage.py create_api_token``).
* **Kubernetes bearer tokens** (``Authorization: Bearer <token>``): checked with a TokenReview
  against the API server, results cached for ``HEADWIND_TOKEN_REVIEW_CACHE_SECONDS`` (60).
  The caller becomes an :class:`~approvals.permissions.Actor` without a Django user.
* **Trusted proxy** (:class:`TrustedProxyMiddleware`): ``X-Forwarded-User`` (and optionally
  ``X-Forwarded-Groups``) are believed only when ``REMOTE_ADDR`` is in
  ``HEADWIND_TRUSTED_PROXIES``; from anywhere else they are ignored.
* **OpenID Connect** lives in :mod:`approvals.oidc` (mozilla-django-oidc).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from operator_app import kube

from . import cluster
from .models import ApiToken
from .permissions import VIA_PROXY, Actor

log = logging.getLogger(__name__)

TOKEN_PREFIX = "hw_"
_LAST_USED_RESOLUTION = timedelta(seconds=60)


# --------------------------------------------------------------------------------------------
# Groups from an identity provider or proxy
# --------------------------------------------------------------------------------------------


def sync_groups(user, names) -> None:
    """Make the user's Django groups exactly ``names`` (creating missing groups).

    New groups carry no permissions: an administrator gives them rights and namespace grants.
    """
    wanted = sorted({str(name).strip()[:150] for name in names or () if str(name).strip()})
    with transaction.atomic():
        groups = []
        for name in wanted:
            group, _ = Group.objects.get_or_create(name=name)
            groups.append(group)
        if set(user.groups.values_list("pk", flat=True)) != {g.pk for g in groups}:
            user.groups.set(groups)


# --------------------------------------------------------------------------------------------
# API tokens
# --------------------------------------------------------------------------------------------


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_token(user, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns it and the key, which is not stored anywhere."""
    key = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:100], key_hash=hash_key(key))
    return token, key


def user_for_api_token(key: str):
    """The active user owning ``key``, or None."""
    if not key or len(key) > 200:
        return None
    token = (ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first())
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


# --------------------------------------------------------------------------------------------
# Kubernetes tokens: TokenReview with a short cache
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Review:
    actor: Actor | None
    reason: str
    until: float


class TokenReviewCache:
    """Results of TokenReviews by SHA-256 of the token; positive and negative, both short."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Review] = {}
        self.max_entries = max_entries

    def get(self, key: str) -> _Review | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.until < time.monotonic():
                del self._entries[key]
                return None
            return entry

    def put(self, key: str, entry: _Review) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = time.monotonic()
                for stale in [k for k, v in self._entries.items() if v.until < now]:
                    del self._entries[stale]
                while len(self._entries) >= self.max_entries:
                    del self._entries[next(iter(self._entries))]
            self._entries[key] = entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


token_reviews = TokenReviewCache()


class TokenReviewUnavailable(RuntimeError):
    """The API server could not review the token (not the same as an invalid token)."""


def review_kubernetes_token(token: str) -> tuple[Actor | None, str]:
    """``(actor, "")`` for a token the API server authenticates, else ``(None, reason)``."""
    if not token or len(token) > 16384 or any(ch.isspace() for ch in token):
        return None, "malformed bearer token"
    key = hashlib.sha256(token.encode()).hexdigest()
    cached = token_reviews.get(key)
    if cached is not None:
        return cached.actor, cached.reason
    spec: dict = {"token": token}
    audiences = list(getattr(settings, "HEADWIND_TOKEN_AUDIENCES", []) or [])
    if audiences:
        spec["audiences"] = audiences
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
    try:
        review = kube.request(cluster.api(), "POST",
                              "/apis/authentication.k8s.io/v1/tokenreviews", body=body)
    except kube.KubeError as exc:
        log.warning("TokenReview failed: %s", exc)
        raise TokenReviewUnavailable(str(exc)) from None
    status = review.get("status") or {}
    ttl = settings.HEADWIND.token_review_cache_seconds
    if status.get("authenticated") and (status.get("user") or {}).get("username"):
        user = status["user"]
        actor = Actor.kubernetes(user["username"], groups=user.get("groups") or (),
                                 uid=user.get("uid", ""), extra=user.get("extra") or {})
        token_reviews.put(key, _Review(actor, "", time.monotonic() + ttl))
        return actor, ""
    reason = "the Kubernetes API server did not authenticate this token"
    token_reviews.put(key, _Review(None, reason, time.monotonic() + min(ttl, 10.0)))
    return None, reason


# --------------------------------------------------------------------------------------------
# Trusted proxy
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def is_trusted_proxy(address: str) -> bool:
    entries = tuple(getattr(settings, "HEADWIND_TRUSTED_PROXIES", ()) or ())
    if not entries or not address:
        return False
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in _networks(entries)
               if network.version == ip.version)


def client_address(request) -> str:
    """The client's address: ``REMOTE_ADDR``, or, when that is a trusted proxy
    (``HEADWIND_TRUSTED_PROXIES``), the right-most address of ``X-Forwarded-For`` that is not
    itself a trusted proxy. A client cannot choose its address by sending the header: it is
    read only from proxies we trust, and only their own additions are believed."""
    meta = getattr(request, "META", None) or {}
    remote = str(meta.get("REMOTE_ADDR", "") or "")
    if not is_trusted_proxy(remote):
        return remote
    hops = [hop.strip() for hop in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",")
            if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted_proxy(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # garbage from the client side of the chain: do not trust it
    return hops[0] if hops else remote


def not_a_password_login(request, credentials) -> bool:
    """django-axes: OpenID Connect callbacks carry no password and are not counted (the provider
    throttles its own logins); only the login form and the admin's are."""
    return str(getattr(request, "path", "")).startswith("/oidc/")


def _header_key(name: str) -> str:
    return "HTTP_" + name.upper().replace("-", "_")


class TrustedProxyMiddleware:
    """Authenticates ``X-Forwarded-User`` from trusted proxy addresses only.

    The identity is set for this request (no session is created); a Django user is created on
    first sight, with an unusable password. When the groups header is sent, the user's Django
    groups are synced to it. Place after ``AuthenticationMiddleware``.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        user_header = getattr(settings, "HEADWIND_PROXY_USER_HEADER", "X-Forwarded-User")
        groups_header = getattr(settings, "HEADWIND_PROXY_GROUPS_HEADER", "X-Forwarded-Groups")
        username = request.META.get(_header_key(user_header), "").strip()
        if username and is_trusted_proxy(request.META.get("REMOTE_ADDR", "")):
            user = self._user(username[:150], request.META.get(_header_key(groups_header)))
            if user is not None:
                request.user = user

                async def auser(user=user):
                    return user

                request.auser = auser
                request.headwind_auth_via = VIA_PROXY
        return self.get_response(request)

    @staticmethod
    def _user(username: str, groups_value: str | None):
        model = get_user_model()
        user, created = model._default_manager.get_or_create(
            **{model.USERNAME_FIELD: username})
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            log.info("created user %s for the trusted proxy", username)
        elif user.has_usable_password():
            # A proxy's header must not become a local password account (say, the admin).
            log.warning("proxy user %s refused: it is a local password account", username)
            return None
        if not user.is_active:
            return None
        if groups_value is not None:
            sync_groups(user, groups_value.split(","))
        return user
