"""The REST API on the testbed: every way in, TokenReview and SubjectAccessReview for real."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client
from kubernetes import client as k8s

from approvals import auth, cluster
from approvals.models import ApiToken, AuditEvent
from operator_app import proposals as ur
from tests.waiting import eventually

from .test_approvals import (
    NEW,
    deployment,
    image_of,
    make_user,
    phase_on_cluster,
    row_of,
)
from .test_proposals import propose

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]
#: An applied request: Completed, then RolledOut once a running operator saw the rollout.
APPLIED = ("Completed", "RolledOut")


@pytest.fixture(autouse=True)
def fresh_reviews():
    auth.token_reviews.clear()
    yield
    auth.token_reviews.clear()


def proposed(kube_api, namespace, **annotations):
    obj = deployment(kube_api, namespace, annotations or None)
    proposal = propose(kube_api, obj, NEW)
    eventually(lambda: row_of(namespace, proposal.name), 30, "mirror row", interval=0.1)
    return proposal.name


def api(client: Client, method: str, path: str, body=None, **headers):
    call = getattr(client, method.lower())
    kwargs = {"content_type": "application/json"} if method == "POST" else {}
    data = json.dumps(body) if isinstance(body, (dict, list)) else body
    if data is not None or method == "POST":
        return call(f"/api/v1/{path}", data or "", **kwargs, **headers)
    return call(f"/api/v1/{path}", **headers)


def service_account_token(kube_api, namespace: str, name: str) -> str:
    core = k8s.CoreV1Api(kube_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    review = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}})
    return review.status.token


def grant_role(kube_api, namespace: str, name: str, rules: list[dict], account: str) -> None:
    rbac = k8s.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    })


def until_status(call, status: int, timeout: float = 10.0):
    """RBAC changes reach the authorizer's cache within moments; retry until they have.
    Returns the response with that status."""
    responses = []

    def answered() -> bool:
        responses.append(call())
        return responses[-1].status_code == status

    eventually(answered, timeout, lambda: f"HTTP {status} (last answer: {responses[-1].status_code}"
               f" {responses[-1].content[:300]!r})", interval=0.2)
    return responses[-1]


# --------------------------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("mirror")
def test_session_list_get_and_approve_with_csrf(kube_api, namespace, celery_worker):
    name = proposed(kube_api, namespace)
    alice = make_user("alice", grant=namespace)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    listed = api(browser, "GET", f"updates?namespace={namespace}")
    assert listed.status_code == 200
    body = listed.json()
    assert body["total"] == 1 and body["page"] == 1 and body["page_size"] == 50
    item = body["items"][0]
    assert (item["name"], item["phase"], item["newImage"]) == (name, "Pending", NEW)
    assert item["target"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                              "container": "app"}

    detail = api(browser, "GET", f"updates/{namespace}/{name}").json()
    assert detail["viewer"] == {"username": "alice", "canApprove": True, "reason": ""}

    no_csrf = api(browser, "POST", f"updates/{namespace}/{name}/approve", {})
    assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf_failed"
    assert phase_on_cluster(kube_api, namespace, name) == "Pending"

    browser.cookies["csrftoken"] = "a" * 32
    approved = api(browser, "POST", f"updates/{namespace}/{name}/approve",
                   {"comment": "ship it"}, HTTP_X_CSRFTOKEN="a" * 32)
    assert approved.status_code == 200, approved.content
    assert approved.json()["phase"] == "Approved"
    assert approved.json()["approvals"][0] == {
        "user": "alice", "at": approved.json()["approvals"][0]["at"], "comment": "ship it"}
    eventually(lambda: phase_on_cluster(kube_api, namespace, name) in APPLIED, 30,
               "Completed", interval=0.1)
    again = api(browser, "POST", f"updates/{namespace}/{name}/approve", {},
                HTTP_X_CSRFTOKEN="a" * 32)
    assert again.status_code == 409 and again.json()["error"] == "conflict"


@pytest.mark.usefixtures("mirror")
def test_session_user_without_grant_gets_403(kube_api, namespace):
    name = proposed(kube_api, namespace)
    dave = make_user("dave", grant="elsewhere")
    browser = Client()
    browser.force_login(dave)
    detail = api(browser, "GET", f"updates/{namespace}/{name}").json()
    assert detail["viewer"]["canApprove"] is False
    assert "no grant" in detail["viewer"]["reason"]
    refused = api(browser, "POST", f"updates/{namespace}/{name}/reject", {"reason": "no"})
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden",
                              "reason": f"dave has no grant for namespace {namespace}"}
    assert phase_on_cluster(kube_api, namespace, name) == "Pending"


# --------------------------------------------------------------------------------------------
# API tokens
# --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("mirror")
def test_api_token_from_the_command(kube_api, namespace):
    name = proposed(kube_api, namespace)
    make_user("erin", grant="t-*", staff=False)
    out = io.StringIO()
    call_command("create_api_token", "erin", "ci", stdout=out, stderr=io.StringIO())
    key = out.getvalue().strip()
    assert key.startswith("hw_") and len(key) > 40
    stored = ApiToken.objects.get(user__username="erin", name="ci")
    assert stored.key_hash == auth.hash_key(key) and key not in stored.key_hash

    caller = Client()
    token = {"HTTP_AUTHORIZATION": f"Token {key}"}
    assert api(caller, "GET", f"updates?namespace={namespace}", **token).json()["total"] == 1
    rejected = api(caller, "POST", f"updates/{namespace}/{name}/reject",
                   {"reason": "not this week"}, **token)  # no CSRF needed for tokens
    assert rejected.status_code == 200, rejected.content
    assert rejected.json()["rejectedBy"] == "erin"
    assert rejected.json()["message"] == "not this week"
    assert ur.get(kube_api, namespace, name)["status"]["rejectedBy"] == "erin"
    assert ApiToken.objects.get(pk=stored.pk).last_used_at is not None
    assert AuditEvent.objects.get(action="reject").details["via"] == "api-token"

    bad = api(caller, "GET", "updates", HTTP_AUTHORIZATION="Token hw_wrong")
    assert bad.status_code == 401 and bad.json()["error"] == "unauthenticated"
    assert AuditEvent.objects.filter(action="login_failed", result="refused").exists()
    stored.delete()  # revoked
    assert api(caller, "GET", "updates", **token).status_code == 401


# --------------------------------------------------------------------------------------------
# Kubernetes tokens: TokenReview and SubjectAccessReview
# --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("mirror")
def test_kubernetes_token_with_rbac(kube_api, namespace, celery_worker):
    cluster.use(None)
    name = proposed(kube_api, namespace)
    token = service_account_token(kube_api, namespace, "releaser")
    caller = Client()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    who = f"system:serviceaccount:{namespace}:releaser"

    # Authenticated by TokenReview, but RBAC allows nothing yet.
    listing = api(caller, "GET", f"updates?namespace={namespace}", **bearer)
    assert listing.status_code == 403, listing.content
    assert who in listing.json()["reason"]
    everywhere = api(caller, "GET", "updates", **bearer)
    assert everywhere.status_code == 403 and "namespace=" in everywhere.json()["reason"]

    grant_role(kube_api, namespace, "read-updates", [{
        "apiGroups": ["headwind.sh"], "resources": ["updaterequests"],
        "verbs": ["get", "list"]}], "releaser")
    listing = until_status(lambda: api(caller, "GET", f"updates?namespace={namespace}",
                                       **bearer), 200)
    assert listing.status_code == 200 and listing.json()["total"] == 1
    assert api(caller, "GET", f"updates/{namespace}/{name}", **bearer).status_code == 200

    refused = api(caller, "POST", f"updates/{namespace}/{name}/approve", {}, **bearer)
    assert refused.status_code == 403
    assert refused.json()["reason"].startswith(
        f"Kubernetes RBAC does not allow {who} to patch deployments.apps {namespace}/web")
    assert phase_on_cluster(kube_api, namespace, name) == "Pending"

    grant_role(kube_api, namespace, "patch-web", [{
        "apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"],
        "verbs": ["patch"]}], "releaser")
    approved = until_status(lambda: api(caller, "POST", f"updates/{namespace}/{name}/approve",
                                        {"comment": "from CI"}, **bearer), 200)
    assert approved.status_code == 200, approved.content
    assert approved.json()["approvedBy"] == who
    eventually(lambda: phase_on_cluster(kube_api, namespace, name) in APPLIED, 30,
               "Completed", interval=0.1)
    assert image_of(kube_api, namespace) == NEW
    event = AuditEvent.objects.get(action="approve", result="success")
    assert (event.actor, event.details["via"]) == (who, "kubernetes")


def test_kubernetes_token_refused_and_cached(kube_api, namespace):
    cluster.use(None)
    caller = Client()
    bad = api(caller, "GET", "updates", HTTP_AUTHORIZATION="Bearer not-a-real-token")
    assert bad.status_code == 401
    assert bad.json()["reason"] == "the Kubernetes API server did not authenticate this token"
    assert bad["WWW-Authenticate"].startswith("Bearer")

    token = service_account_token(kube_api, namespace, "cached")
    first, _ = auth.review_kubernetes_token(token)
    assert first.kube_user == f"system:serviceaccount:{namespace}:cached"
    assert f"system:serviceaccounts:{namespace}" in first.kube_groups
    k8s.CoreV1Api(kube_api).delete_namespaced_service_account("cached", namespace)
    again, _ = auth.review_kubernetes_token(token)  # within the cache's 60 s
    assert again is first
    auth.token_reviews.clear()
    gone = eventually(lambda: auth.review_kubernetes_token(token)[0] is None
                      or auth.token_reviews.clear(), 30, "token invalid after SA deletion",
                      interval=0.1)
    assert gone
