"""The REST API's answers to bad or missing input, pagination, and its OpenAPI description.

(Everything that reaches the cluster is in tests/integration/test_approvals_api.py.)
"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from approvals import auth

from .approvals_helpers import make_row

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def user():
    return User.objects.create_user("ivy", password="x")


@pytest.fixture
def browser(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def token(user):
    return {"HTTP_AUTHORIZATION": f"Token {auth.create_api_token(user, 'test')[1]}"}


def assert_error(response, status: int, error: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "reason"} and body["reason"]
    if error:
        assert body["error"] == error
    return body


@pytest.mark.parametrize("headers", [
    {},
    {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
    {"HTTP_AUTHORIZATION": "Token"},
    {"HTTP_AUTHORIZATION": "Token hw_nope"},
    {"HTTP_AUTHORIZATION": "Bearer hw_nope"},
    {"HTTP_AUTHORIZATION": "Bearer"},
])
def test_unauthenticated(headers):
    response = Client().get(f"{API}/updates", **headers)
    assert_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_bad_header_is_not_retried_as_the_session(browser):
    assert_error(browser.get(f"{API}/updates", HTTP_AUTHORIZATION="Token wrong"), 401)


def test_a_headwind_key_works_as_a_bearer_token_too(user):
    key = auth.create_api_token(user, "cli")[1]
    assert Client().get(f"{API}/updates", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


def test_list_pagination(browser):
    for index in range(7):
        make_row(name=f"r-{index}", age_minutes=index)
    first = browser.get(f"{API}/updates", {"page_size": 3}).json()
    assert first["total"] == 7 and first["page"] == 1 and first["page_size"] == 3
    assert [i["name"] for i in first["items"]] == ["r-0", "r-1", "r-2"]
    last = browser.get(f"{API}/updates", {"page_size": 3, "page": 3}).json()
    assert [i["name"] for i in last["items"]] == ["r-6"]
    beyond = browser.get(f"{API}/updates", {"page_size": 3, "page": 9}).json()
    assert beyond["items"] == [] and beyond["total"] == 7
    filtered = browser.get(f"{API}/updates", {"q": "r-3", "phase": "pending"}).json()
    assert filtered["total"] == 1


@pytest.mark.parametrize("query", [
    {"page": "abc"}, {"page": "0"}, {"page": "-1"}, {"page": "1.5"},
    {"page_size": "0"}, {"page_size": "201"}, {"page_size": "x"},
    {"sort": "bogus"}, {"phase": "Done"}, {"kind": "Pod"}, {"q": "x" * 5000},
])
def test_bad_list_parameters_are_400(browser, query):
    assert_error(browser.get(f"{API}/updates", query), 400, "bad_request")


def test_detail(browser):
    row = make_row("team-a", "web-1", approvals=[{"user": "a", "at": "2026-01-01T00:00:00Z"}])
    body = browser.get(f"{API}/updates/team-a/web-1").json()
    assert body["name"] == "web-1" and body["approvals"] == [
        {"user": "a", "at": "2026-01-01T00:00:00Z"}]
    assert body["createdAt"].endswith("Z") and body["expiresAt"] is None
    assert body["viewer"]["canApprove"] is False
    assert row.pk
    assert_error(browser.get(f"{API}/updates/team-a/nope"), 404, "not_found")


@pytest.mark.parametrize("path, body, content_type", [
    ("updates/team-a/web-1/approve", "{not json", "application/json"),
    ("updates/team-a/web-1/approve", "[1, 2]", "application/json"),
    ("updates/team-a/web-1/approve", '"text"', "application/json"),
    ("updates/team-a/web-1/approve", '{"comment": 5}', "application/json"),
    ("updates/team-a/web-1/approve", b"\xff\xfe", "application/json"),
    ("updates/team-a/web-1/reject", "{}", "application/json"),
    ("updates/team-a/web-1/reject", '{"reason": "   "}', "application/json"),
    ("updates/team-a/web-1/reject", '{"reason": ["a"]}', "application/json"),
    ("updates/team-a/web-1/reject", "", "application/json"),
    ("updates/team-a/web-1/reject", "reason=", "application/x-www-form-urlencoded"),
])
def test_bad_action_bodies_are_400(token, path, body, content_type):
    response = Client().post(f"{API}/{path}", body, content_type=content_type, **token)
    assert_error(response, 400, "bad_request")


def test_wrong_methods_and_unknown_paths(token):
    client = Client()
    response = client.get(f"{API}/updates/team-a/web-1/approve", **token)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"
    assert_error(client.delete(f"{API}/updates", **token), 405)
    assert_error(client.get(f"{API}/nothing/here", **token), 404, "not_found")
    assert_error(client.get(f"{API}/updates/only-namespace", **token), 404)


def test_openapi_document_describes_exactly_the_endpoints():
    response = Client().get(f"{API}/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["openapi"] == "3.1.0"
    from approvals import api_urls

    routed = {"/" + re.sub(r"<str:(\w+)>", r"{\1}", str(pattern.pattern))
              for pattern in api_urls.urlpatterns
              if "openapi" not in str(pattern.pattern) and "(?P" not in str(pattern.pattern)}
    assert set(document["paths"]) == routed  # every endpoint described, and no other
    assert {"/updates", "/updates/{namespace}/{name}/approve",
            "/workloads/{namespace}/{kind}/{name}/rollback"} <= routed
    assert set(document["paths"]["/updates"]) == {"get"}
    assert "post" in document["paths"]["/updates/{namespace}/{name}/reject"]
    assert document["servers"][0]["url"].endswith("/api/v1")
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"apiToken", "kubernetesToken", "session"}

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    for ref in refs(document):  # every reference resolves
        target = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
    reject = document["paths"]["/updates/{namespace}/{name}/reject"]["post"]
    assert set(reject["responses"]) >= {"200", "400", "401", "403", "404", "409"}
    assert_error(Client().post(f"{API}/openapi.json"), 405)


def test_failed_sign_ins_from_one_address_are_throttled():
    from approvals.api import MAX_FAILED_SIGN_INS
    from approvals.models import AuditEvent

    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(MAX_FAILED_SIGN_INS):
        assert client.get("/api/v1/updates", HTTP_AUTHORIZATION="Token nope").status_code == 401
    throttled = client.get("/api/v1/updates", HTTP_AUTHORIZATION="Token nope")
    assert throttled.status_code == 429 and throttled["Retry-After"] == "60"
    assert AuditEvent.objects.filter(action="login_failed").count() == MAX_FAILED_SIGN_INS
    other = Client(REMOTE_ADDR="203.0.113.8")  # another address is not affected
    assert other.get("/api/v1/updates", HTTP_AUTHORIZATION="Token nope").status_code == 401
