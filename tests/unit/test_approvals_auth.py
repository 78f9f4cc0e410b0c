"""Who is acting and what they may do: grants, API tokens, the trusted proxy, the audit trail."""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.test import Client, RequestFactory, override_settings

from approvals import audit, auth
from approvals.auth import TokenReviewCache, _Review
from approvals.models import AuditEvent, NamespaceGrant
from approvals.permissions import Actor, can_approve, namespace_granted

pytestmark = pytest.mark.django_db


def user_with(username: str, *, permission: bool = True, **fields) -> User:
    user = User.objects.create_user(username, password="secret-" + username, **fields)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="approve_updaterequest"))
    return User.objects.get(pk=user.pk)


# --------------------------------------------------------------------------------------------
# Permission and namespace grants
# --------------------------------------------------------------------------------------------


def test_permission_and_grant_are_both_needed():
    alice = user_with("alice")
    actor = Actor.from_user(alice)
    assert can_approve(actor, "team-a") == (False, "alice has no grant for namespace team-a")

    NamespaceGrant.objects.create(user=alice, pattern="team-*")
    actor = Actor.from_user(alice)  # grants are cached per actor
    assert can_approve(actor, "team-a") == (True, "")
    assert can_approve(actor, "prod")[0] is False

    nobody = user_with("nobody", permission=False)
    NamespaceGrant.objects.create(user=nobody, pattern="*")
    allowed, reason = can_approve(Actor.from_user(nobody), "team-a")
    assert not allowed and "permission" in reason


def test_group_grants_and_group_permissions():
    ops = Group.objects.create(name="ops")
    ops.permissions.add(Permission.objects.get(codename="approve_updaterequest"))
    NamespaceGrant.objects.create(group=ops, pattern="prod-?")
    bob = user_with("bob", permission=False)
    bob.groups.add(ops)
    actor = Actor.from_user(User.objects.get(pk=bob.pk))
    assert actor.groups == frozenset({"ops"})
    assert can_approve(actor, "prod-1") == (True, "")
    assert can_approve(actor, "prod-12")[0] is False
    assert not namespace_granted(actor, "PROD-1")  # case matters, like Kubernetes names


def test_superuser_inactive_anonymous_and_kubernetes_callers():
    root = User.objects.create_superuser("root", password="x")
    assert can_approve(Actor.from_user(root), "anything") == (True, "")
    gone = user_with("gone", is_active=False)
    NamespaceGrant.objects.create(user=gone, pattern="*")
    assert can_approve(Actor.from_user(gone), "a") == (False, "this account is disabled")
    assert can_approve(Actor.from_user(AnonymousUser()), "a") == (False, "sign in first")
    kube = Actor.kubernetes("system:serviceaccount:ci:bot", groups=["system:authenticated"])
    assert kube.is_kubernetes and kube.user is None and kube.kube_user == kube.username
    assert can_approve(kube, "a")[0] is True  # the SubjectAccessReview decides per workload


def test_actor_from_request_prefers_the_api_caller():
    request = RequestFactory().get("/")
    request.user = user_with("carol")
    assert Actor.from_request(request).username == "carol"
    request.headwind_actor = Actor.kubernetes("kube-carol")
    assert Actor.from_request(request).username == "kube-carol"


# --------------------------------------------------------------------------------------------
# API tokens
# --------------------------------------------------------------------------------------------


def test_api_tokens_store_only_a_hash():
    erin = user_with("erin")
    token, key = auth.create_api_token(erin, "laptop")
    assert key.startswith("hw_") and key not in token.key_hash and len(token.key_hash) == 64
    assert auth.user_for_api_token(key) == erin
    assert auth.user_for_api_token(key + "x") is None
    assert auth.user_for_api_token("") is None
    erin.is_active = False
    erin.save()
    assert auth.user_for_api_token(key) is None


def test_token_review_cache_expires_entries():
    cache = TokenReviewCache(max_entries=2)
    cache.put("a", _Review(None, "no", time.monotonic() - 1))
    assert cache.get("a") is None
    for key in "bcd":
        cache.put(key, _Review(None, key, time.monotonic() + 60))
    assert cache.get("b") is None and cache.get("d").reason == "d"


def test_malformed_bearer_tokens_are_refused_without_asking_the_cluster():
    assert auth.review_kubernetes_token("") == (None, "malformed bearer token")
    assert auth.review_kubernetes_token("a b")[0] is None
    assert auth.review_kubernetes_token("x" * 20000)[0] is None


# --------------------------------------------------------------------------------------------
# Trusted proxy
# --------------------------------------------------------------------------------------------


@override_settings(HEADWIND_TRUSTED_PROXIES=["127.0.0.0/8", "::1/128"])
def test_trusted_proxy_user_and_groups():
    Group.objects.create(name="stale")
    client = Client(REMOTE_ADDR="127.0.0.1")
    response = client.get("/api/v1/updates", HTTP_X_FORWARDED_USER="frank",
                          HTTP_X_FORWARDED_GROUPS="ops, release")
    assert response.status_code == 200, response.content
    frank = User.objects.get(username="frank")
    assert not frank.has_usable_password()
    assert sorted(frank.groups.values_list("name", flat=True)) == ["ops", "release"]
    client.get("/api/v1/updates", HTTP_X_FORWARDED_USER="frank", HTTP_X_FORWARDED_GROUPS="ops")
    assert list(frank.groups.values_list("name", flat=True)) == ["ops"]
    client.get("/api/v1/updates", HTTP_X_FORWARDED_USER="frank")  # no header: left alone
    assert list(frank.groups.values_list("name", flat=True)) == ["ops"]

    csrf = Client(REMOTE_ADDR="127.0.0.1", enforce_csrf_checks=True)
    post = csrf.post("/api/v1/updates/team-a/x/approve", "{}", content_type="application/json",
                     HTTP_X_FORWARDED_USER="frank")
    assert post.status_code == 403 and post.json()["error"] == "csrf_failed"


@override_settings(HEADWIND_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_proxy_header_from_elsewhere_is_ignored():
    client = Client(REMOTE_ADDR="192.168.1.5")
    response = client.get("/api/v1/updates", HTTP_X_FORWARDED_USER="admin")
    assert response.status_code == 401
    assert not User.objects.filter(username="admin").exists()
    assert auth.is_trusted_proxy("10.2.3.4") and not auth.is_trusted_proxy("not-an-ip")


@override_settings(HEADWIND_TRUSTED_PROXIES=[])
def test_no_trusted_proxies_means_no_header_login():
    response = Client(REMOTE_ADDR="127.0.0.1").get("/api/v1/updates",
                                                   HTTP_X_FORWARDED_USER="admin")
    assert response.status_code == 401


@override_settings(HEADWIND_TRUSTED_PROXIES=["127.0.0.1/32"])
def test_inactive_proxy_user_is_not_signed_in():
    User.objects.create_user("ghost", is_active=False)
    response = Client().get("/api/v1/updates", HTTP_X_FORWARDED_USER="ghost")
    assert response.status_code == 401


@override_settings(HEADWIND_TRUSTED_PROXIES=["127.0.0.1/32"])
def test_proxy_header_cannot_take_over_a_local_password_account():
    User.objects.create_superuser("admin", password="local-secret")
    response = Client().get("/api/v1/updates", HTTP_X_FORWARDED_USER="admin",
                            HTTP_X_FORWARDED_GROUPS="evil")
    assert response.status_code == 401
    assert not User.objects.get(username="admin").groups.exists()


# --------------------------------------------------------------------------------------------
# Audit
# --------------------------------------------------------------------------------------------


def test_failed_login_is_audited_without_the_password(caplog):
    User.objects.create_user("grace", password="right-password", is_staff=True)
    caplog.set_level(logging.INFO, logger="headwind.audit")
    response = Client().post("/admin/login/?next=/admin/",
                             {"username": "grace", "password": "wrong-password-123"})
    assert response.status_code == 200  # the form again
    event = AuditEvent.objects.get(action="login_failed")
    assert (event.actor, event.result, event.details["via"]) == ("grace", "refused", "login")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "headwind.audit"]
    assert lines[-1]["action"] == "login_failed" and lines[-1]["actor"] == "grace"
    everything = caplog.text + json.dumps(event.details) + event.reason
    assert "wrong-password-123" not in everything


def test_audit_record_writes_a_row_and_one_json_line(caplog):
    caplog.set_level(logging.INFO, logger="headwind.audit")
    event = audit.record("alice", "approve", "team-a/web-1", audit.SUCCESS, "approved",
                         via="session", empty="")
    assert event.details == {"via": "session"}
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "headwind.audit"]
    assert line["actor"] == "alice" and line["target"] == "team-a/web-1"
    assert line["result"] == "success" and line["timestamp"].endswith("Z")
