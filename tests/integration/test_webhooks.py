"""Every webhook source on the testbed: a realistic payload moves the right workload (or opens
one UpdateRequest); a wrong or missing secret changes nothing; no input ever gets a 5xx. The
host-less sources (JFrog, Nexus) are placed by HEADWIND_REGISTRY_HOST_MAP, and a real push to the
testbed registry behind a "proxy" (``Host: registry.local:5000``) is rewritten by it."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from pathlib import Path

import pytest
import redis
import requests
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from kubernetes import client

from headwind_site.config import OperatorSettings
from operator_app import eventqueue
from registry.webhooks import PARSERS
from tests.unit.test_webhook_parsers import (
    AUDIENCE,
    NEXUS_SECRET,
    NEXUS_SIGNATURE,
    PUSHER,
    KeySet,
)
from tests.waiting import eventually

from .test_engine_e2e import create, image_of, wait_image, workload

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
TOKEN = "s3cret-webhook-token"
GHCR_SECRET = "github-hmac-secret"
DIRECT = {"headwind.sh/require-approval": "false", "headwind.sh/min-update-interval": "0"}
#: Where the host-less sources' images live, for the cases below (docs/webhooks.md).
HOST_MAP = ("jfrog=acme.jfrog.io,jfrog:docker-remote-cache=docker.acme.example,"
            "nexus=container.example.com,nexus:docker-hosted=nexus.acme.example:8443")


@pytest.fixture
def secrets_configured(monkeypatch):
    for source in PARSERS:
        monkeypatch.setenv(f"HEADWIND_WEBHOOK_{source.upper()}_TOKEN", TOKEN)
    monkeypatch.setenv("HEADWIND_WEBHOOK_GHCR_SECRET", GHCR_SECRET)
    monkeypatch.setenv("HEADWIND_WEBHOOK_NEXUS_SECRET", NEXUS_SECRET)
    monkeypatch.delenv("HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED", raising=False)
    for name in ("AUDIENCE", "EMAIL", "JWKS_URL"):
        monkeypatch.delenv(f"HEADWIND_WEBHOOK_GAR_OIDC_{name}", raising=False)


def use_host_map(settings, text: str) -> None:
    """HEADWIND_REGISTRY_HOST_MAP for this test, parsed as at start (the view reads settings)."""
    parsed = OperatorSettings.from_environ({"HEADWIND_REGISTRY_HOST_MAP": text})
    settings.HEADWIND = dataclasses.replace(settings.HEADWIND,
                                            registry_host_map=parsed.registry_host_map)


def body_of(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def post(django_client, source: str, body: bytes, headers: dict | None = None, path_token=None,
         query_token=None):
    url = f"/webhook/{source}" + (f"/{path_token}" if path_token else "")
    if query_token:
        url += f"?token={query_token}"
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}
    return django_client.post(url, data=body, content_type="application/json", **extra)


def github_headers(body: bytes) -> dict:
    signature = hmac.new(GHCR_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "package", "X-Hub-Signature-256": f"sha256={signature}"}


# source, fixture, how it authenticates, workload image, annotations, expected outcome
CASES = [
    ("dockerhub", "dockerhub-3", "path", "karolisr/keel:0.1.6",
     {"headwind.sh/policy": "patch", **DIRECT}, ("image", "karolisr/keel:0.1.7")),
    ("ghcr", "github-5", "hmac", "ghcr.io/utaitebox/utaitebox-server:3.2.0",
     {"headwind.sh/policy": "minor"}, ("request", "ghcr.io/utaitebox/utaitebox-server:3.2.1")),
    ("harbor", "harbor-3", "raw", "hub.harbor.com/test-webhook/debian:latest",
     {"headwind.sh/policy": "digest", **DIRECT},
     ("image", "hub.harbor.com/test-webhook/debian:latest@sha256:"
               "8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8")),
    ("gitlab", "gitlab-1", "bearer", "registry.git.erxes.io/foo/bar:1.6.0",
     {"headwind.sh/policy": "minor", **DIRECT}, ("image", "registry.git.erxes.io/foo/bar:1.6.1")),
    ("quay", "quay-2", "path", "quay.internal.example.com:8443/platform/billing-api:v2.9.0",
     {"headwind.sh/policy": "major"},
     ("request", "quay.internal.example.com:8443/platform/billing-api:v3.0.0")),
    ("acr", "eventgrid-1", "bearer", "contosoprod.azurecr.io/payments/ledger:1.8.0",
     {"headwind.sh/policy": "patch", **DIRECT},
     ("image", "contosoprod.azurecr.io/payments/ledger:1.8.1")),
    ("acr", "acr-1", "header", "contosoprod.azurecr.io/payments/ledger:1.7.9",
     {"headwind.sh/policy": "minor"}, ("request", "contosoprod.azurecr.io/payments/ledger:1.8.0")),
    ("generic", "generic-1", "bearer", "registry.example.com/team/api:1.2.2",
     {"headwind.sh/policy": "patch", **DIRECT}, ("image", "registry.example.com/team/api:1.2.3")),
    # Google Artifact Registry through a Pub/Sub push subscription: only a URL to configure.
    ("gar", "gar-1", "query", "us-docker.pkg.dev/acme-prod/containers/checkout:1.4.2",
     {"headwind.sh/policy": "patch", **DIRECT},
     ("image", "us-docker.pkg.dev/acme-prod/containers/checkout:1.4.3")),
    ("gar", "gar-2", "path", "us.gcr.io/am/am.kebab.api:stable",
     {"headwind.sh/policy": "force"}, ("request", "us.gcr.io/am/am.kebab.api:test")),
    # JFrog with the envelope (jfrog=acme.jfrog.io: repository path access) ...
    ("jfrog", "jfrog-3", "jfrog", "acme.jfrog.io/docker-local/payments/ledger:2.4.0",
     {"headwind.sh/policy": "minor", **DIRECT},
     ("image", "acme.jfrog.io/docker-local/payments/ledger:2.4.1")),
    # ... and without it, placed per repository key (jfrog:docker-remote-cache=...)
    ("jfrog", "jfrog-1", "jfrog", "docker.acme.example/library/ubuntu:jammy",
     {"headwind.sh/policy": "force", **DIRECT},
     ("image", "docker.acme.example/library/ubuntu:latest")),
    # Nexus: a real component delivery signed with HMAC-SHA1, and a manifest asset by token.
    ("nexus", "nexus-1", "nexus-hmac", "container.example.com/app1/alpine:3.3",
     {"headwind.sh/policy": "minor", **DIRECT}, ("image", "container.example.com/app1/alpine:3.4")),
    ("nexus", "nexus-3", "bearer", "nexus.acme.example:8443/team/billing:2.0.3",
     {"headwind.sh/policy": "minor", **DIRECT},
     ("image", "nexus.acme.example:8443/team/billing:2.1.0")),
]


def auth_headers(mode: str, body: bytes) -> dict:
    """``post`` keyword arguments that authenticate ``body`` the way ``mode`` says."""
    return {
        "path": {"path_token": TOKEN},
        "query": {"query_token": TOKEN},
        "hmac": {"headers": github_headers(body)},
        "raw": {"headers": {"Authorization": TOKEN}},
        "bearer": {"headers": {"Authorization": f"Bearer {TOKEN}"}},
        "header": {"headers": {"X-Headwind-Token": TOKEN}},
        "jfrog": {"headers": {"X-JFrog-Event-Auth": TOKEN}},
        "nexus-hmac": {"headers": {"X-Nexus-Webhook-Id": "rm:repository:component",
                                   "X-Nexus-Webhook-Signature": NEXUS_SIGNATURE}},
    }[mode]


@pytest.mark.parametrize(("source", "name", "mode", "image", "annotations", "expected"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_each_source_moves_the_right_workload(source, name, mode, image, annotations, expected,
                                              client, kube_api, namespace, operators, settings,
                                              secrets_configured, stream_drained):
    use_host_map(settings, HOST_MAP)
    create(kube_api, namespace, workload("Deployment", "app", image, annotations))
    # A bystander on another repository must not move.
    create(kube_api, namespace, workload("Deployment", "bystander", "example.org/other/app:1.0.0",
                                         {"headwind.sh/policy": "all", **DIRECT}))
    body = body_of(name)
    credentials = auth_headers(mode, body)
    what, value = expected

    def deliver_and_see_the_effect() -> bool:
        response = post(client, source, body, **credentials)
        assert response.status_code == 202, response.content
        assert response.json()["accepted"] >= 1
        stream_drained()
        if what == "image":
            return image_of(kube_api, namespace, "Deployment", "app") == value
        return bool(client_requests(kube_api, namespace))

    # The operator's watch may see the new Deployment a moment after this delivery; like a
    # registry, redeliver until it acts (redeliveries are idempotent, checked below).
    eventually(deliver_and_see_the_effect, 30, f"the operator acting on {source} {name}",
               interval=0.25)
    if what == "image":
        wait_image(kube_api, namespace, "Deployment", "app", value)
    else:
        (ur,) = client_requests(kube_api, namespace)
        assert ur["spec"]["newImage"] == value
        assert ur["spec"]["source"] == "webhook"
        assert image_of(kube_api, namespace, "Deployment", "app") == image
    assert image_of(kube_api, namespace, "Deployment", "bystander") == "example.org/other/app:1.0.0"


def test_gar_push_authenticated_by_pubsub_oidc_moves_the_workload(
        client, kube_api, namespace, operators, monkeypatch, secrets_configured, stream_drained):
    """Pub/Sub push authentication: the RS256 token of the push service account, checked against
    a key set served on loopback (Google's in a cluster), audience and account pinned. No shared
    token is configured for the source, and a token from another key moves nothing."""
    from registry import auth

    keys = KeySet()
    monkeypatch.delenv("HEADWIND_WEBHOOK_GAR_TOKEN")
    monkeypatch.setenv("HEADWIND_WEBHOOK_GAR_OIDC_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("HEADWIND_WEBHOOK_GAR_OIDC_EMAIL", PUSHER)
    monkeypatch.setenv("HEADWIND_WEBHOOK_GAR_OIDC_JWKS_URL", keys.url)
    auth._jwks_clients.clear()
    try:
        image = "us-docker.pkg.dev/acme-prod/containers/checkout"
        create(kube_api, namespace, workload("Deployment", "app", f"{image}:1.4.1",
                                             {"headwind.sh/policy": "patch", **DIRECT}))
        body = body_of("gar-1")
        stranger = KeySet()
        try:
            forged = post(client, "gar", body, {"Authorization": f"Bearer {stranger.token()}"})
        finally:
            stranger.close()
        assert forged.status_code == 403
        assert post(client, "gar", body, query_token=TOKEN).status_code == 403

        def deliver_and_see_the_effect() -> bool:
            response = post(client, "gar", body, {"Authorization": f"Bearer {keys.token()}"})
            assert response.status_code == 202, response.content
            stream_drained()
            return image_of(kube_api, namespace, "Deployment", "app") == f"{image}:1.4.3"

        eventually(deliver_and_see_the_effect, 30, "the operator acting on an OIDC push",
                   interval=0.25)
    finally:
        keys.close()
        auth._jwks_clients.clear()


def test_pubsub_answers(client, redis_url, secrets_configured):
    """Any 2xx acknowledges a Pub/Sub message: ignored ones get 202 and are not queued; a
    malformed one gets 400 (Pub/Sub retries it until it dead-letters), never a 5xx."""
    before = stream_length(redis_url)
    for name in ("gar-3", "gar-4"):  # a DELETE, wrapped; an untagged upload, unwrapped
        response = post(client, "gar", body_of(name), query_token=TOKEN)
        assert response.status_code == 202, response.content
        assert response.json()["accepted"] == 0
    bare = body_of("gar-4").replace(b"INSERT", b"DELETE")
    as_bytes = client.post(f"/webhook/gar?token={TOKEN}", data=bare,
                           content_type="application/octet-stream")
    assert as_bytes.status_code == 202 and as_bytes.json()["ignored"] == ["delete event"]
    assert stream_length(redis_url) == before
    envelope = json.loads(body_of("gar-1"))
    for data in ("%%% not base64 %%%", "bm90IGpzb24=", "WzEsMl0="):  # "not json", "[1,2]"
        envelope["message"]["data"] = data
        response = post(client, "gar", json.dumps(envelope).encode(), query_token=TOKEN)
        assert response.status_code == 400 and response.json()["error"].startswith("message.data")


class ThroughProxy(requests.adapters.HTTPAdapter):
    """What a reverse proxy in front of the registry does with ``proxy_set_header Host``: the
    request reaches the registry itself, carrying the public name in its Host header."""

    def __init__(self, public: str, backend: str) -> None:
        super().__init__()
        self.public, self.backend = public, backend

    def send(self, request, **kwargs):
        request.url = request.url.replace(f"http://{self.public}/", f"http://{self.backend}/", 1)
        request.headers["Host"] = self.public
        return super().send(request, **kwargs)


def test_distribution_behind_a_proxy_moves_the_workload_through_the_host_map(
        kube_api, namespace, testbed, notification_sink, webhook_relay, operators, settings,
        stream_drained):
    """A real push to the testbed registry as ``registry.local:5000``: its notification names
    that host (``request.host``), workloads pull ``registry.example.com``, and
    HEADWIND_REGISTRY_HOST_MAP=registry.local:5000=registry.example.com joins the two."""
    from tests.testbed.registry import RegistryPusher

    use_host_map(settings, "registry.local:5000=registry.example.com")
    public = "registry.local:5000"
    pusher = RegistryPusher(public, testbed.registry_user, testbed.registry_password)
    pusher.session.mount(f"http://{public}/", ThroughProxy(public, testbed.registry))
    repository = f"{namespace}/app"
    pusher.push_image(repository, "1.0.0")
    image = f"registry.example.com/{repository}"
    create(kube_api, namespace, workload("Deployment", "app", f"{image}:1.0.0",
                                         {"headwind.sh/policy": "patch", **DIRECT}))

    def push_and_see_the_effect() -> bool:
        digest = pusher.push_image(repository, "1.0.1")  # the same bytes: a redelivery
        note = notification_sink.wait_for(
            lambda note: any(e.get("action") == "push" and e["target"].get("digest") == digest
                             and e["target"].get("tag") == "1.0.1"
                             for e in note.json().get("events", [])))
        pushes = [e for e in note.json()["events"] if e.get("action") == "push"]
        assert {e["request"]["host"] for e in pushes} == {public}
        stream_drained()
        return image_of(kube_api, namespace, "Deployment", "app") == f"{image}:1.0.1"

    eventually(push_and_see_the_effect, 60, "the operator acting on the proxied push",
               interval=0.5)
    assert 202 in notification_sink.forward_statuses


def client_requests(kube_api, namespace):
    return client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
        "headwind.sh", "v1alpha1", namespace, "updaterequests")["items"]


def stream_length(redis_url: str) -> int:
    try:
        return redis.Redis.from_url(redis_url).xlen(eventqueue.STREAM)
    except redis.ResponseError:
        return 0


@pytest.mark.parametrize("source", sorted(PARSERS))
def test_missing_or_wrong_secret_is_refused_and_nothing_is_queued(source, client, redis_url,
                                                                  secrets_configured):
    body = json.dumps({"image": "registry.example.com/team/api", "tag": "9.9.9"}).encode()
    before = stream_length(redis_url)
    missing = post(client, source, body)
    assert missing.status_code == 401
    assert missing.json()["error"] == "credentials required"
    wrong = post(client, source, body, {"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403
    if source == "ghcr":
        forged = post(client, source, body, {"X-Hub-Signature-256": "sha256=" + "0" * 64,
                                             "X-GitHub-Event": "package"})
        assert forged.status_code == 403
    if source == "nexus":
        signed_elsewhere = post(client, source, body_of("nexus-1"),
                                {"X-Nexus-Webhook-Signature": "0" * 40,
                                 "Authorization": f"Bearer {TOKEN}"})
        assert signed_elsewhere.status_code == 403
        assert signed_elsewhere.json()["error"] == "signature does not match"
    assert stream_length(redis_url) == before


def test_unconfigured_source_is_refused_unless_opened(client, redis_url, monkeypatch):
    for source in PARSERS:
        monkeypatch.delenv(f"HEADWIND_WEBHOOK_{source.upper()}_TOKEN", raising=False)
    monkeypatch.delenv("HEADWIND_WEBHOOK_TOKEN", raising=False)
    monkeypatch.delenv("HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED", raising=False)
    body = body_of("generic-2")
    refused = post(client, "generic", body)
    assert refused.status_code == 403
    assert "no secret is configured" in refused.json()["error"]
    monkeypatch.setenv("HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED", "true")
    assert post(client, "generic", body).status_code == 202


def test_event_grid_validation_handshake(client, secrets_configured):
    response = post(client, "acr", body_of("eventgrid-3"),
                    {"aeg-event-type": "SubscriptionValidation", "X-Headwind-Token": TOKEN})
    assert response.status_code == 200
    expected = json.loads(body_of("eventgrid-3"))[0]["data"]["validationCode"]
    assert response.json() == {"validationResponse": expected}
    options = client.options("/webhook/acr", HTTP_WEBHOOK_REQUEST_ORIGIN="eventgrid.azure.net")
    assert options["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_bad_input_gets_a_reason(client, secrets_configured):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    malformed = post(client, "registry", b"{not json", auth)
    assert malformed.status_code == 400 and malformed.json()["error"]
    wrong_type = client.post("/webhook/generic", data=b"<xml/>", content_type="application/xml",
                             HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert wrong_type.status_code == 415
    # Pub/Sub payload unwrapping may label the bare message as bytes: read, and refused as such.
    for source, status in (("gar", 400), ("generic", 415)):
        octets = client.post(f"/webhook/{source}?token={TOKEN}", data=b"\x00\x01",
                             content_type="application/octet-stream")
        assert octets.status_code == status, (source, octets.content)
    huge = post(client, "generic", b"[" + b"0," * (1024 * 1024 + 10) + b"0]", auth)
    assert huge.status_code == 413
    wrong_method = client.get("/webhook/generic")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "use POST"
    assert post(client, "nosuchregistry", b"{}", auth).status_code == 404


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=4),
    max_leaves=20,
)


@fuzz_settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(PARSERS)),
       body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())),
       authorised=st.booleans(),
       extra=st.sampled_from([{}, {"X-Nexus-Webhook-Id": "rm:repository:component"},
                              {"X-Nexus-Webhook-Id": "rm:repository:asset"},
                              {"X-Nexus-Webhook-Signature": "0" * 40}]))
def test_fuzz_only_2xx_or_4xx(client, redis_url, settings, secrets_configured, source, body,
                              authorised, extra):
    use_host_map(settings, HOST_MAP + ",registry.local:5000=registry.example.com,harbor=h.example")
    headers = {"Authorization": f"Bearer {TOKEN}"} if authorised else {}
    response = post(client, source, body, {**headers, **extra})
    assert 200 <= response.status_code < 500, (response.status_code, response.content)


def test_path_tokens_never_reach_the_logs(client, secrets_configured):
    """Docker Hub's token is in the URL: Django's 4xx log line redacts it (the web server's
    access log: test_web_server.py)."""
    import io
    import logging

    from headwind_site.redact import RedactWebhookTokens

    handler = logging.StreamHandler(stream := io.StringIO())
    handler.addFilter(RedactWebhookTokens())
    logging.getLogger("django.request").addHandler(handler)
    try:
        assert post(client, "dockerhub", b"{broken", path_token=TOKEN).status_code == 400
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    assert "/webhook/dockerhub/***" in stream.getvalue() and TOKEN not in stream.getvalue()
