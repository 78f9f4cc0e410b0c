"""Every webhook source on the testbed: a realistic payload moves the right workload (or opens
one UpdateRequest); a wrong or missing secret changes nothing; no input ever gets a 5xx."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from operator_app import eventqueue
from registry.webhooks import PARSERS
from tests.waiting import eventually

from .test_engine_e2e import create, image_of, wait_image, workload

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
TOKEN = "s3cret-webhook-token"
GHCR_SECRET = "github-hmac-secret"
DIRECT = {"headwind.sh/require-approval": "false", "headwind.sh/min-update-interval": "0"}


@pytest.fixture
def secrets_configured(monkeypatch):
    for source in PARSERS:
        monkeypatch.setenv(f"HEADWIND_WEBHOOK_{source.upper()}_TOKEN", TOKEN)
    monkeypatch.setenv("HEADWIND_WEBHOOK_GHCR_SECRET", GHCR_SECRET)
    monkeypatch.delenv("HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED", raising=False)


def body_of(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def post(django_client, source: str, body: bytes, headers: dict | None = None, path_token=None):
    url = f"/webhook/{source}" + (f"/{path_token}" if path_token else "")
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
]


def auth_headers(mode: str, body: bytes) -> tuple[dict, str | None]:
    return {
        "path": ({}, TOKEN),
        "hmac": (github_headers(body), None),
        "raw": ({"Authorization": TOKEN}, None),
        "bearer": ({"Authorization": f"Bearer {TOKEN}"}, None),
        "header": ({"X-Headwind-Token": TOKEN}, None),
    }[mode]


@pytest.mark.parametrize(("source", "name", "mode", "image", "annotations", "expected"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_each_source_moves_the_right_workload(source, name, mode, image, annotations, expected,
                                              client, kube_api, namespace, operators,
                                              secrets_configured, stream_drained):
    create(kube_api, namespace, workload("Deployment", "app", image, annotations))
    # A bystander on another repository must not move.
    create(kube_api, namespace, workload("Deployment", "bystander", "example.org/other/app:1.0.0",
                                         {"headwind.sh/policy": "all", **DIRECT}))
    body = body_of(name)
    headers, path_token = auth_headers(mode, body)
    what, value = expected

    def deliver_and_see_the_effect() -> bool:
        response = post(client, source, body, headers, path_token)
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


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(PARSERS)),
       body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())),
       authorised=st.booleans())
def test_fuzz_only_2xx_or_4xx(client, redis_url, secrets_configured, source, body, authorised):
    headers = {"Authorization": f"Bearer {TOKEN}"} if authorised else {}
    response = post(client, source, body, headers)
    assert 200 <= response.status_code < 500, (response.status_code, response.content)


def test_path_tokens_never_reach_the_logs(client, secrets_configured):
    """Docker Hub's token is in the URL: Django's 4xx log line and daphne's access log redact it."""
    import io
    import logging

    from headwind_site.redact import RedactWebhookTokens
    from headwind_site.web import RedactingAccessLog

    handler = logging.StreamHandler(stream := io.StringIO())
    handler.addFilter(RedactWebhookTokens())
    logging.getLogger("django.request").addHandler(handler)
    try:
        assert post(client, "dockerhub", b"{broken", path_token=TOKEN).status_code == 400
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    assert "/webhook/dockerhub/***" in stream.getvalue() and TOKEN not in stream.getvalue()

    access = io.StringIO()
    RedactingAccessLog(access).write_entry("127.0.0.1", __import__("datetime").datetime.now(),
                                           f"POST /webhook/quay/{TOKEN}", 202, 10)
    assert "/webhook/quay/***" in access.getvalue() and TOKEN not in access.getvalue()
