"""The registry client against the testbed's real registries (htpasswd Basic and bearer tokens).

The only stand-in is a tiny local HTTP server answering 429 + Retry-After, playing a
rate-limiting registry. Header parsers are checked on their own at the top.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from registry.client import (
    BasicCredentials,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryNotFound,
    RegistryRateLimited,
    RegistryServerError,
    TokenCache,
    api_host,
    api_repository,
    credential_identity,
    default_scheme,
    next_link,
    parse_retry_after,
    parse_www_authenticate,
)

# --- header parsing (no testbed) --------------------------------------------------------------


def test_www_authenticate_bearer_with_commas_and_spaces_in_scope():
    (challenge,) = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:team/app:pull,push repository:team/base:pull",error="insufficient_scope"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.params["realm"] == "https://auth.docker.io/token"
    assert challenge.params["service"] == "registry.docker.io"
    assert challenge.scopes == ["repository:team/app:pull,push", "repository:team/base:pull"]
    assert challenge.params["error"] == "insufficient_scope"


def test_www_authenticate_several_challenges_escapes_and_tokens():
    basic, bearer = parse_www_authenticate(
        'Basic realm="say \\"hi\\", friend", Bearer realm=https://r.example/t , service=svc'
    )
    assert (basic.scheme, basic.params) == ("basic", {"realm": 'say "hi", friend'})
    assert bearer.params == {"realm": "https://r.example/t", "service": "svc"}
    assert parse_www_authenticate("") == []
    assert parse_www_authenticate(None) == []


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("120") == 120.0
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_link_next_is_resolved_against_the_page_url():
    base = "https://reg.example/v2/team/app/tags/list?n=2"
    assert next_link('</v2/team/app/tags/list?last=b&n=2>; rel="next"', base) == (
        "https://reg.example/v2/team/app/tags/list?last=b&n=2")
    assert next_link('<https://x/prev>; rel="prev", </n?last=c>; rel=next', base) == (
        "https://reg.example/n?last=c")
    assert next_link('</p>; rel="prev"', base) is None
    assert next_link(None, base) is None


def test_hosts_schemes_and_docker_hub(settings):
    settings.HEADWIND = dataclasses.replace(settings.HEADWIND, insecure_registries=frozenset())
    assert default_scheme("registry.example.com") == "https"
    assert default_scheme("127.0.0.1:5000") == "http"
    assert default_scheme("localhost:5000") == "http"
    assert default_scheme("[::1]:5000") == "http"
    settings.HEADWIND = dataclasses.replace(settings.HEADWIND, insecure_registries=frozenset(
        {"registry.lan:5000", "other.lan"}))
    assert default_scheme("registry.lan:5000") == "http"
    assert default_scheme("other.lan:443") == "http"
    assert default_scheme("registry.lan") == "https"
    assert RegistryClient("docker.io").base_url == "https://registry-1.docker.io"
    assert api_host("index.docker.io") == "registry-1.docker.io"
    assert api_repository("docker.io", "nginx") == "library/nginx"
    assert api_repository("ghcr.io", "nginx") == "nginx"
    assert credential_identity(None) == "anonymous"
    assert credential_identity(BasicCredentials("u", "p")).startswith("cred-")
    assert credential_identity(BasicCredentials("u", "p")) != credential_identity(
        BasicCredentials("u", "q"))


# --- the real registries ------------------------------------------------------------------------

needs_testbed = pytest.mark.testbed


class Requests:
    """Observer that records (kind, outcome) for every HTTP request a client makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, kind: str, outcome: str) -> None:
        self.calls.append((kind, outcome))

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.calls if k == kind)


@pytest.fixture
def creds(testbed):
    return BasicCredentials(testbed.registry_user, testbed.registry_password)


@needs_testbed
@pytest.mark.parametrize("which", ["registry", "token_registry"])
def test_list_tags_and_head_digest(which, testbed, creds, registry_pusher, token_registry_pusher,
                                   request):
    pusher = registry_pusher if which == "registry" else token_registry_pusher
    repository = f"client-{which.replace('_', '-')}/{request.node.callspec.id}/app"
    digests = {tag: pusher.push_image(repository, tag) for tag in ("1.0.0", "1.1.0", "latest")}
    client = RegistryClient(getattr(testbed, which), credentials=creds)
    assert client.base_url.startswith("http://127.0.0.1:")  # loopback defaults to plain http
    assert sorted(client.list_tags(repository)) == ["1.0.0", "1.1.0", "latest"]
    for tag, digest in digests.items():  # OCI manifests: the Accept header must name OCI types
        assert client.head_digest(repository, tag) == digest
    assert client.head_digest(repository, digests["1.0.0"]) == digests["1.0.0"]


@needs_testbed
def test_basic_challenge_is_answered_once_then_sent_up_front(testbed, creds, push_image):
    push_image("client-basic/app", "1.0.0")
    seen = Requests()
    client = RegistryClient(testbed.registry, credentials=creds, observer=seen)
    client.list_tags("client-basic/app")
    client.list_tags("client-basic/app")
    client.head_digest("client-basic/app", "1.0.0")
    assert seen.calls == [("tags", "unauthorized"), ("tags", "ok"), ("tags", "ok"), ("head", "ok")]


@needs_testbed
def test_bearer_tokens_are_cached_per_scope_and_identity(testbed, creds, token_registry_pusher):
    for repository in ("client-tok/a", "client-tok/b"):
        token_registry_pusher.push_image(repository, "1.0.0")
    cache = TokenCache()
    seen = Requests()
    client = RegistryClient(testbed.token_registry, credentials=creds, token_cache=cache,
                            observer=seen)
    client.list_tags("client-tok/a")
    assert seen.count("token") == 1
    assert seen.calls[0] == ("tags", "unauthorized")  # the challenge that named the scope
    for _ in range(3):
        client.list_tags("client-tok/a")
        client.head_digest("client-tok/a", "1.0.0")
    assert seen.count("token") == 1  # reused, and sent up front: no more 401s
    assert seen.calls.count(("tags", "unauthorized")) == 1
    client.list_tags("client-tok/b")  # another scope: its own token
    assert seen.count("token") == 2

    # A second client with the same credentials shares the cache: no token request at all.
    other_seen = Requests()
    other = RegistryClient(testbed.token_registry, credentials=creds, token_cache=cache,
                           observer=other_seen)
    other.list_tags("client-tok/a")
    assert other_seen.count("token") == 0
    # ... but an anonymous client never gets the authenticated token.
    anonymous = RegistryClient(testbed.token_registry, token_cache=cache)
    with pytest.raises(RegistryAuthError):
        anonymous.list_tags("client-tok/a")


@needs_testbed
def test_bearer_token_is_refreshed_after_expiry(testbed, creds, token_registry_pusher):
    token_registry_pusher.push_image("client-exp/app", "1.0.0")
    now = [1000.0]
    seen = Requests()
    client = RegistryClient(testbed.token_registry, credentials=creds,
                            token_cache=TokenCache(clock=lambda: now[0]), observer=seen)
    client.list_tags("client-exp/app")
    now[0] += 280  # the token server grants 300 s; 10 s margin
    client.list_tags("client-exp/app")
    assert seen.count("token") == 1
    now[0] += 15
    client.list_tags("client-exp/app")
    assert seen.count("token") == 2
    assert seen.calls.count(("tags", "unauthorized")) == 1  # refreshed up front, not by a 401


@needs_testbed
@pytest.mark.parametrize("which", ["registry", "token_registry"])
def test_wrong_password_is_an_auth_error_without_the_password(which, testbed, creds, caplog,
                                                              registry_pusher,
                                                              token_registry_pusher):
    pusher = registry_pusher if which == "registry" else token_registry_pusher
    pusher.push_image("client-auth/app", "1.0.0")
    wrong = "Wr0ng-secret-" + testbed.registry_password
    client = RegistryClient(getattr(testbed, which),
                            credentials=BasicCredentials(testbed.registry_user, wrong))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RegistryAuthError) as info:
        client.list_tags("client-auth/app")
    error = info.value
    assert error.status == 401
    assert error.host == getattr(testbed, which)
    for text in (str(error), repr(error), repr(error.args), error.message, repr(client),
                 repr(client.credentials), caplog.text):
        assert wrong not in text
        assert testbed.registry_password not in text


@needs_testbed
def test_anonymous_and_missing(testbed, creds, push_image):
    push_image("client-missing/app", "1.0.0")
    with pytest.raises(RegistryAuthError):
        RegistryClient(testbed.registry).list_tags("client-missing/app")
    client = RegistryClient(testbed.registry, credentials=creds)
    with pytest.raises(RegistryNotFound) as info:
        client.list_tags("client-missing/nothing-here")
    assert info.value.status == 404
    with pytest.raises(RegistryNotFound):
        client.head_digest("client-missing/app", "9.9.9")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_a_server_error():
    client = RegistryClient(f"127.0.0.1:{_free_port()}", timeout=2)
    with pytest.raises(RegistryServerError) as info:
        client.list_tags("team/app")
    assert info.value.status is None


@pytest.fixture
def rate_limiting_registry():
    """A real HTTP peer that rate-limits everything, like an exhausted Docker Hub quota."""
    state = {"retry_after": "7", "hits": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self):
            state["hits"] += 1
            body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
            self.send_response(429)
            self.send_header("Retry-After", state["retry_after"])
            self.send_header("RateLimit-Remaining", "0;w=21600")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _answer  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["host"] = f"127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_429_is_rate_limited_with_retry_after(rate_limiting_registry):
    client = RegistryClient(rate_limiting_registry["host"],
                            credentials=BasicCredentials("u", "sekrit-pass"))
    with pytest.raises(RegistryRateLimited) as info:
        client.list_tags("team/app")
    assert info.value.status == 429
    assert info.value.retry_after == 7.0
    assert "TOOMANYREQUESTS" in str(info.value) and "sekrit-pass" not in str(info.value)
    assert client.rate_limit_remaining == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=90)
    rate_limiting_registry["retry_after"] = later.strftime("%a, %d %b %Y %H:%M:%S GMT")
    with pytest.raises(RegistryRateLimited) as info:
        client.head_digest("team/app", "1.0.0")
    assert 80 <= info.value.retry_after <= 90


@needs_testbed
@pytest.mark.parametrize("which", ["registry", "token_registry"])
def test_concurrent_first_requests_all_authenticate(which, testbed, creds, registry_pusher,
                                                    token_registry_pusher):
    pusher = registry_pusher if which == "registry" else token_registry_pusher
    pusher.push_image("client-race/app", "1.0.0")
    client = RegistryClient(getattr(testbed, which), credentials=creds)
    results, errors = [], []

    def poll():
        try:
            results.append(client.list_tags("client-race/app"))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and results == [["1.0.0"]] * 8


@pytest.fixture
def hostile_registry():
    """A real HTTP peer that tries to steer the client elsewhere: a redirect to a cloud metadata
    address, or a Bearer challenge whose realm is ``realm[0]`` (changed by the test)."""
    seen = []
    realm = ["http://169.254.169.254/token"]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            if self.path.startswith("/v2/redirect/"):
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            else:
                self.send_response(401)
                self.send_header("WWW-Authenticate", f'Bearer realm="{realm[0]}",service="x"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", seen, realm
    server.shutdown()
    server.server_close()


def test_redirects_are_not_followed(hostile_registry):
    host, seen, _realm = hostile_registry
    client = RegistryClient(host)
    with pytest.raises(RegistryError) as redirected:
        client.list_tags("redirect/app")
    assert redirected.value.status == 302 and "169.254.169.254" in str(redirected.value)
    assert all(path.startswith("/v2/") for path in seen)


@pytest.mark.parametrize("realm_host", [
    "169.254.169.254", "2852039166", "0xa9fea9fe", "169.254.43518", "0251.0376.0251.0376",
    "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "[fe80::1]", "0.0.0.0", "[::]",
])
def test_no_spelling_of_a_link_local_realm_is_contacted(hostile_registry, realm_host):
    host, seen, realm = hostile_registry
    realm[0] = f"http://{realm_host}/token"
    with pytest.raises(RegistryError) as refused:
        RegistryClient(host).list_tags("team/app")
    assert "refused" in str(refused.value), refused.value
    assert all(path.startswith("/v2/") for path in seen)  # nothing but registry calls here


def test_credentials_go_to_a_realm_on_another_host_only_over_https(hostile_registry):
    """Another loopback port is another host: a plain-http realm there gets nothing."""
    host, _seen, realm = hostile_registry
    received = []

    class Realm(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            received.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"token": "t"}')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Realm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        realm[0] = f"http://127.0.0.1:{server.server_address[1]}/token"
        client = RegistryClient(host, credentials=BasicCredentials("user", "s3cret-pass"))
        with pytest.raises(RegistryAuthError) as refused:
            client.list_tags("team/app")
        assert "plain http" in str(refused.value)
        assert "s3cret" not in str(refused.value)
        assert received == []  # the realm was never asked, let alone given the password
        # Anonymously the same realm may be asked: no secret is at stake.
        with pytest.raises(RegistryError):
            RegistryClient(host).list_tags("team/app")
        assert received == [None]
    finally:
        server.shutdown()
        server.server_close()
