"""Single sign-on with OpenID Connect (mozilla-django-oidc), on when ``HEADWIND_OIDC_ENABLED``.

The username comes from ``HEADWIND_OIDC_USERNAME_CLAIM`` (default ``preferred_username``, then
``email``); the user's Django groups are synced at every login from the claim named by
``HEADWIND_OIDC_GROUPS_CLAIM`` (default ``groups``), optionally through
``HEADWIND_OIDC_GROUP_MAP`` (``idp-group=django-group,...``: only mapped groups are kept).
Groups give rights through their permissions and namespace grants, set in the admin.

Accounts are bound to the provider's ``(iss, sub)`` (:class:`~approvals.models.OidcIdentity`),
never to a name or address that can change hands; the username is only a label. ``email`` as
the username claim needs ``email_verified: true``, and the issuer is always checked (OIDC does
not start without ``HEADWIND_OIDC_ISSUER``). An SSO login never takes over a local account that
has a password, nor a user already bound to another identity: such a login is refused.
"""

from __future__ import annotations

import logging

import jwt
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .auth import sync_groups
from .models import OidcIdentity

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
    """mozilla-django-oidc with accounts bound to (issuer, subject), readable usernames and
    group sync."""

    def username_from_claims(self, claims: dict) -> str:
        names = [getattr(settings, "HEADWIND_OIDC_USERNAME_CLAIM", "preferred_username"),
                 "preferred_username", "email"]
        for claim in names:
            value = claims.get(claim) if claim else None
            if isinstance(value, str) and value.strip():
                return value.strip()[:150]
        return ""

    def _username_claim(self, claims: dict) -> str:
        """Which claim the username came from (e-mail needs ``email_verified``)."""
        names = [getattr(settings, "HEADWIND_OIDC_USERNAME_CLAIM", "preferred_username"),
                 "preferred_username", "email"]
        for claim in names:
            value = claims.get(claim) if claim else None
            if isinstance(value, str) and value.strip():
                return claim
        return ""

    def verify_token(self, token, **kwargs):
        """Signature, expiry and nonce (mozilla-django-oidc), then audience and issuer.

        The issuer is always checked (OIDC cannot be turned on without
        ``HEADWIND_OIDC_ISSUER``). A bad token makes the login fail (and be audited) instead of
        raising.
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
        if not issuer or payload.get("iss") != issuer:
            log.warning("OIDC login refused: the ID token comes from another issuer")
            return None
        if not isinstance(payload.get("sub"), str) or not payload["sub"]:
            log.warning("OIDC login refused: the ID token has no subject")
            return None
        return payload

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims, completed by the userinfo endpoint's. The account is the ID
        token's (iss, sub): a userinfo answer about another subject is refused."""
        claims = dict(payload or {})
        userinfo = super().get_userinfo(access_token, id_token, payload) or {}
        if userinfo.get("sub") not in (None, claims.get("sub")):
            log.warning("OIDC login refused: userinfo describes another subject")
            return {}
        claims.update(userinfo)
        claims["iss"], claims["sub"] = (payload or {}).get("iss"), (payload or {}).get("sub")
        return claims

    def verify_claims(self, claims) -> bool:
        if not claims.get("iss") or not claims.get("sub"):
            return False
        username = self.username_from_claims(claims)
        if not username:
            log.warning("OIDC login refused: no username claim")
            return False
        if self._username_claim(claims) == "email" and claims.get("email_verified") is not True:
            log.warning("OIDC login refused: the e-mail address %s is not verified", username)
            return False
        bound = self._bound_user(claims)
        if bound is not None:
            return True
        existing = self.UserModel._default_manager.filter(
            **{self.UserModel.USERNAME_FIELD: username}).first()
        if existing is not None:
            if existing.has_usable_password():
                log.warning("OIDC login refused: %s is a local password account", username)
                return False
            if existing.oidc_identities.exists():
                log.warning("OIDC login refused: %s belongs to another identity-provider "
                            "account", username)
                return False
        return True

    def _bound_user(self, claims):
        identity = (OidcIdentity.objects.select_related("user")
                    .filter(issuer=claims.get("iss", ""), subject=claims.get("sub", "")).first())
        return identity.user if identity is not None else None

    def filter_users_by_claims(self, claims):
        """The user bound to (iss, sub); else a password-less user of that name not yet bound
        to any identity (accounts from before the binding, or made by the trusted proxy)."""
        bound = self._bound_user(claims)
        if bound is not None:
            return self.UserModel._default_manager.filter(pk=bound.pk)
        username = self.username_from_claims(claims)
        if not username:
            return self.UserModel.objects.none()
        return self.UserModel._default_manager.filter(
            **{self.UserModel.USERNAME_FIELD: username}, oidc_identities__isnull=True)

    def create_user(self, claims):
        user = self.UserModel._default_manager.create_user(self.username_from_claims(claims))
        user.set_unusable_password()
        self._update_fields(user, claims)
        log.info("created SSO user %s", user.get_username())
        return user

    def update_user(self, user, claims):
        self._update_fields(user, claims)
        return user

    def _update_fields(self, user, claims) -> None:
        OidcIdentity.objects.get_or_create(issuer=claims["iss"], subject=claims["sub"],
                                           defaults={"user": user})
        if claims.get("email_verified") is True and claims.get("email"):
            user.email = str(claims["email"])[:254]
        user.first_name = (claims.get("given_name") or user.first_name or "")[:150]
        user.last_name = (claims.get("family_name") or user.last_name or "")[:150]
        user.save()
        sync_groups(user, groups_from_claims(claims))
