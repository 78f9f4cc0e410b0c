"""OpenID Connect sign-in through mozilla-django-oidc against a small provider on loopback.

The provider is real HTTP (token, userinfo and JWKS endpoints) and signs RS256 ID tokens, so the
whole code flow runs: redirect with state, nonce and PKCE, code exchange, signature check, user
creation and group sync.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import include, path

from approvals.models import AuditEvent

pytestmark = pytest.mark.django_db

CLIENT_ID, CLIENT_SECRET = "headwind", "s3cret"

urlpatterns = [path("oidc/", include("mozilla_django_oidc.urls"))]


class Provider:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if self.path == "/jwks":
                    return self._send(200, provider.jwks)
                if self.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    if token not in provider.tokens:
                        return self._send(401, {"error": "invalid_token"})
                    return self._send(200, provider.tokens[token])
                return self._send(404, {})

            def do_POST(self):  # noqa: N802
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                code = form.get("code", [""])[0]
                if (self.path != "/token" or form.get("client_secret") != [CLIENT_SECRET]
                        or code not in provider.codes or not form.get("code_verifier")):
                    return self._send(400, {"error": "invalid_grant"})
                grant = provider.codes.pop(code)
                now = int(time.time())
                id_token = jwt.encode(
                    {"iss": provider.url, "aud": grant.get("aud", CLIENT_ID),
                     "sub": grant["claims"]["sub"], "iat": now, "exp": now + 300,
                     "nonce": grant["nonce"], **grant.get("id_claims", {})},
                    provider.key, algorithm="RS256", headers={"kid": "k1"})
                provider.tokens[f"at-{code}"] = grant["claims"]
                return self._send(200, {"id_token": id_token, "access_token": f"at-{code}",
                                        "token_type": "Bearer", "expires_in": 300})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def settings(self, **extra) -> dict:
        return {
            "ROOT_URLCONF": __name__,
            "AUTHENTICATION_BACKENDS": ["approvals.oidc.HeadwindOIDCBackend",
                                        "django.contrib.auth.backends.ModelBackend"],
            "OIDC_RP_CLIENT_ID": CLIENT_ID, "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.url}/authorize",
            "OIDC_OP_TOKEN_ENDPOINT": f"{self.url}/token",
            "OIDC_OP_USER_ENDPOINT": f"{self.url}/userinfo",
            "OIDC_OP_JWKS_ENDPOINT": f"{self.url}/jwks",
            "OIDC_RP_SIGN_ALGO": "RS256", "OIDC_USE_PKCE": True,
            "OIDC_RP_SCOPES": "openid email profile", "LOGIN_REDIRECT_URL": "/welcome",
            "LOGIN_REDIRECT_URL_FAILURE": "/failed", "HEADWIND_OIDC_ISSUER": self.url,
            **extra,
        }

    def sign_in(self, client: Client, claims: dict, **grant):
        start = client.get("/oidc/authenticate/")
        assert start.status_code == 302
        location = urlparse(start["Location"])
        assert location.path == "/authorize"
        query = parse_qs(location.query)
        assert query["client_id"] == [CLIENT_ID] and query["code_challenge_method"] == ["S256"]
        code = f"code-{len(self.codes)}-{time.monotonic_ns()}"
        self.codes[code] = {"nonce": query["nonce"][0], "claims": claims, **grant}
        return client.get("/oidc/callback/", {"code": code, "state": query["state"][0]})


@pytest.fixture(scope="module")
def provider():
    running = Provider()
    yield running
    running.server.shutdown()


def test_sign_in_creates_the_user_and_syncs_groups(provider):
    with override_settings(**provider.settings()):
        client = Client()
        done = provider.sign_in(client, {"sub": "u-1", "preferred_username": "dana",
                                         "email": "dana@example.org", "email_verified": True,
                                         "groups": ["approvers", "/ops"]})
        assert done.status_code == 302 and done["Location"] == "/welcome"
        dana = User.objects.get(username="dana")
        assert dana.email == "dana@example.org" and not dana.has_usable_password()
        assert sorted(dana.groups.values_list("name", flat=True)) == ["approvers", "ops"]
        assert client.session["_auth_user_id"] == str(dana.pk)

        again = provider.sign_in(Client(), {"sub": "u-1", "preferred_username": "dana",
                                            "groups": "ops"})
        assert again["Location"] == "/welcome"
        assert list(dana.groups.values_list("name", flat=True)) == ["ops"]
        assert User.objects.filter(username="dana").count() == 1


def test_group_map_and_groups_claim_in_the_id_token(provider):
    with override_settings(**provider.settings(HEADWIND_OIDC_GROUP_MAP={"idp-ops": "ops"},
                                               HEADWIND_OIDC_GROUPS_CLAIM="roles")):
        done = provider.sign_in(Client(), {"sub": "u-2", "preferred_username": "eve"},
                                id_claims={"roles": ["idp-ops", "idp-other"]})
        assert done["Location"] == "/welcome"
        eve = User.objects.get(username="eve")
        assert list(eve.groups.values_list("name", flat=True)) == ["ops"]


def test_refusals_are_audited(provider):
    User.objects.create_user("root", password="local-password")
    with override_settings(**provider.settings()):
        takeover = provider.sign_in(Client(), {"sub": "u-3", "preferred_username": "root"})
        assert takeover["Location"] == "/failed"
        other_client = provider.sign_in(Client(), {"sub": "u-4", "preferred_username": "zed"},
                                        aud="someone-else")
        assert other_client["Location"] == "/failed"
        assert not User.objects.filter(username="zed").exists()
    failures = AuditEvent.objects.filter(action="login_failed")
    assert failures.count() == 2
    assert {e.details["via"] for e in failures} == {"oidc"}


def test_accounts_are_bound_to_issuer_and_subject(provider):
    """A second provider account that claims the same username cannot take the first one's
    Django user; the first one keeps its user when its username changes."""
    with override_settings(**provider.settings()):
        first = provider.sign_in(Client(), {"sub": "u-10", "preferred_username": "fay"})
        assert first["Location"] == "/welcome"
        fay = User.objects.get(username="fay")
        assert fay.oidc_identities.get().subject == "u-10"

        hijack = provider.sign_in(Client(), {"sub": "u-11", "preferred_username": "fay"})
        assert hijack["Location"] == "/failed"

        client = Client()
        renamed = provider.sign_in(client, {"sub": "u-10", "preferred_username": "fay-renamed"})
        assert renamed["Location"] == "/welcome"
        assert client.session["_auth_user_id"] == str(fay.pk)


def test_an_unverified_email_is_no_username(provider):
    with override_settings(**provider.settings(HEADWIND_OIDC_USERNAME_CLAIM="email")):
        unverified = provider.sign_in(Client(), {"sub": "u-20", "email": "gil@example.org"})
        assert unverified["Location"] == "/failed"
        assert not User.objects.filter(username="gil@example.org").exists()
        verified = provider.sign_in(Client(), {"sub": "u-20", "email": "gil@example.org",
                                               "email_verified": True})
        assert verified["Location"] == "/welcome"
        assert User.objects.get(username="gil@example.org").email == "gil@example.org"


def test_the_issuer_is_always_checked(provider):
    with override_settings(**provider.settings(HEADWIND_OIDC_ISSUER="https://other.example")):
        refused = provider.sign_in(Client(), {"sub": "u-30", "preferred_username": "hal"})
        assert refused["Location"] == "/failed"
        assert not User.objects.filter(username="hal").exists()


def test_oidc_does_not_start_without_an_issuer(tmp_path):
    """settings.py refuses HEADWIND_OIDC_ENABLED without HEADWIND_OIDC_ISSUER."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWIND_OIDC")}
    env.update(HEADWIND_DEV="true", HEADWIND_OIDC_ENABLED="true",
               DJANGO_SETTINGS_MODULE="headwind_site.settings",
               HEADWIND_OIDC_CLIENT_ID="c", HEADWIND_OIDC_CLIENT_SECRET="s",
               HEADWIND_OIDC_AUTHORIZATION_ENDPOINT="https://idp/a",
               HEADWIND_OIDC_TOKEN_ENDPOINT="https://idp/t",
               HEADWIND_OIDC_USERINFO_ENDPOINT="https://idp/u")
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "HEADWIND_OIDC_ISSUER" in result.stderr
