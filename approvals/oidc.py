"""Single sign-on with OpenID Connect (mozilla-django-oidc), on when ``HEADWIND_OIDC_ENABLED``.

The username comes from ``HEADWIND_OIDC_USERNAME_CLAIM`` (default ``preferred_username``, then
``email``); the user's Django groups are synced at every login from the claim named by
``HEADWIND_OIDC_GROUPS_CLAIM`` (default ``groups``), optionally through
``HEADWIND_OIDC_GROUP_MAP`` (``idp-group=django-group,...``: only mapped groups are kept).
Groups give rights through their permissions and namespace grants, set in the admin.

An SSO login never takes over a local account that has a password: such a login is refused.
"""

from __future__ import annotations

import logging

import jwt
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .auth import sync_groups

log = logging.getLogger(__name__)


def groups_from_claims(claims: dict) -> list[str]:
    """Django group names for the configured claim (a list, or a comma/space separated string)."""
    claim = getattr(settings, "HEADWIND_OIDC_GROUPS_CLAIM", "groups") or "groups"
    raw = claims.get(claim)
    if raw is None:
        return []
    if isinstance(raw, str):
        values = raw.replace(",", " ").split()
    elif isinstance(raw, (list, tuple)):
        values = [str(item) for item in raw if isinstance(item, (str, int))]
    else:
        return []
    mapping = getattr(settings, "HEADWIND_OIDC_GROUP_MAP", {}) or {}
    if mapping:
        return sorted({mapping[value] for value in values if value in mapping})
    return sorted({value.lstrip("/") for value in values if value.strip()})


class HeadwindOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc with readable usernames and group sync."""

    def username_from_claims(self, claims: dict) -> str:
        names = [getattr(settings, "HEADWIND_OIDC_USERNAME_CLAIM", "preferred_username"),
                 "preferred_username", "email"]
        for claim in names:
            value = claims.get(claim) if claim else None
            if isinstance(value, str) and value.strip():
                return value.strip()[:150]
        return ""

    def verify_token(self, token, **kwargs):
        """Signature, expiry and nonce (mozilla-django-oidc), then audience and issuer.

        A bad token makes the login fail (and be audited) instead of raising.
        """
        try:
            payload = super().verify_token(token, **kwargs)
        except (SuspiciousOperation, jwt.InvalidTokenError, KeyError, ValueError) as exc:
            log.warning("OIDC login refused: %s", exc)
            return None
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.OIDC_RP_CLIENT_ID not in audiences:
            log.warning("OIDC login refused: the ID token was issued for another client")
            return None
        issuer = getattr(settings, "HEADWIND_OIDC_ISSUER", "")
        if issuer and payload.get("iss") != issuer:
            log.warning("OIDC login refused: the ID token comes from another issuer")
            return None
        return payload

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims, completed by the userinfo endpoint's."""
        claims = dict(payload or {})
        claims.update(super().get_userinfo(access_token, id_token, payload) or {})
        return claims

    def verify_claims(self, claims) -> bool:
        username = self.username_from_claims(claims)
        if not username:
            log.warning("OIDC login refused: no username claim")
            return False
        existing = self.UserModel._default_manager.filter(
            **{self.UserModel.USERNAME_FIELD: username}).first()
        if existing is not None and existing.has_usable_password():
            log.warning("OIDC login refused: %s is a local password account", username)
            return False
        return True

    def filter_users_by_claims(self, claims):
        username = self.username_from_claims(claims)
        if not username:
            return self.UserModel.objects.none()
        return self.UserModel._default_manager.filter(
            **{self.UserModel.USERNAME_FIELD: username})

    def create_user(self, claims):
        user = self.UserModel._default_manager.create_user(
            self.username_from_claims(claims), email=claims.get("email", "") or "")
        user.set_unusable_password()
        self._update_fields(user, claims)
        log.info("created SSO user %s", user.get_username())
        return user

    def update_user(self, user, claims):
        self._update_fields(user, claims)
        return user

    def _update_fields(self, user, claims) -> None:
        user.email = (claims.get("email") or user.email or "")[:254]
        user.first_name = (claims.get("given_name") or user.first_name or "")[:150]
        user.last_name = (claims.get("family_name") or user.last_name or "")[:150]
        user.save()
        sync_groups(user, groups_from_claims(claims))
