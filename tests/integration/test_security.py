"""Holding under attack (docs/security.md): each test reproduces an attack that once worked.

Real components only: ServiceAccounts proven by the real API server, the testbed's registries
(one of them with anonymous pulls of public/* repositories), the operator's own code paths.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from approvals.models import AuditEvent
from operator_app import apply, attribution
from operator_app import proposals as ur
from operator_app.approved import ApprovalWork
from operator_app.kube import request
from operator_app.workloads import kind_of
from registry.verify import WebhookVerifier
from tests.waiting import eventually

from .test_admission import PATCH_DEPLOYMENTS, UR_RULES, collection, forged_request, write_status
from .test_proposals import create, propose

pytestmark = pytest.mark.testbed

OLD = "reg.example/team/app:1.2.0"
NEW = "reg.example/team/app:1.3.0"


def image_of(api, namespace: str, name: str = "web") -> str:
    obj = request(api, "GET", kind_of("Deployment").object_path(namespace, name))
    return obj["spec"]["template"]["spec"]["containers"][0]["image"]


def events_for(api, namespace: str, name: str, reason: str) -> list[dict]:
    found = request(api, "GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in found if e["involvedObject"]["name"] == name and e["reason"] == reason]


# --------------------------------------------------------------------------------------------
# The approval bypass (issue: "anyone who may write UpdateRequest status can get an update
# applied")
# --------------------------------------------------------------------------------------------


def test_a_forged_approval_is_never_applied_without_the_policy(kube_api, namespace, kube_user,
                                                             admission_policy_absent):
    """A ServiceAccount that may write UpdateRequests (and their status) but not patch the
    Deployment proposes a tag that does not exist and writes ``Approved, approvedBy: nobody``.
    The leader's pass and the apply task both refuse it; the attempt is visible."""
    create(kube_api, namespace, "Deployment", "web", {"app": OLD},
           {"headwind.sh/policy": "minor"})
    intruder = kube_user("intruder", UR_RULES)
    forged_image = "reg.example/team/app:6.6.6-does-not-exist"

    def create_forged() -> bool:  # accepted once the API server stops enforcing the policy
        try:
            request(intruder.api, "POST", collection(namespace),
                    body=forged_request(namespace, forged_image))
        except Exception:  # noqa: BLE001 - still enforced: try again
            return False
        return True

    eventually(create_forged, timeout=20, what="an unpolicied cluster")
    write_status(intruder.api, namespace, "forged", lambda status: {
        **status, "phase": "Approved", "approvedBy": "nobody",
        "approvedAt": "2026-01-01T00:00:00Z"})

    queued: list[apply.UpdateCommand] = []
    report = ApprovalWork(kube_api, queued.append, grace_seconds=0).run()
    assert [c for c in queued if c.namespace == namespace] == []
    assert f"{namespace}/forged" in report.refused
    obj = ur.get(kube_api, namespace, "forged")
    assert obj["status"]["phase"] == "Failed"
    assert "not proposed by Headwind" in obj["status"]["message"]
    assert events_for(kube_api, namespace, "forged", "ApprovalNotAttributable")

    # Even handed straight to the apply task, the forged request moves nothing.
    write_status(kube_api, namespace, "forged", lambda status: {**status, "phase": "Approved"})
    result = apply.apply_update(kube_api, apply.UpdateCommand(
        "Deployment", namespace, "web", "app", forged_image, expected_image=OLD,
        request="forged", actor="nobody"))
    assert result.outcome in ("failed", "stale") and "not proposed by Headwind" in result.message
    assert image_of(kube_api, namespace) == OLD


def test_kubectl_approvals_count_only_with_the_policy(kube_api, namespace, kube_user):
    """With the policy installed, an approval entry written by someone who may patch the
    target, in their own name, is carried out by the leader."""
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    owner = kube_user("owner", [*UR_RULES, PATCH_DEPLOYMENTS])
    write_status(owner.api, namespace, proposal.name, lambda status: {
        **status, "approvals": [{"user": owner.username, "at": "2026-11-27T10:00:00Z"}]})

    queued: list[apply.UpdateCommand] = []
    attribution.ADMISSION.forget()
    report = ApprovalWork(kube_api, queued.append).run()
    assert f"{namespace}/{proposal.name}" in report.approved
    queued = [c for c in queued if c.namespace == namespace]
    assert [c.new_image for c in queued] == [NEW]
    assert queued[0].actor == owner.username
    assert ur.get(kube_api, namespace, proposal.name)["status"]["approvedBy"] == owner.username
    assert apply.apply_update(kube_api, queued[0]).outcome == "applied"
    assert image_of(kube_api, namespace) == NEW


def test_kubectl_approvals_do_not_count_without_the_policy(kube_api, namespace, kube_user,
                                                         admission_policy_absent):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    owner = kube_user("owner", [*UR_RULES, PATCH_DEPLOYMENTS])

    def approve_as_alice() -> bool:  # accepted once the API server stops enforcing the policy
        try:
            write_status(owner.api, namespace, proposal.name, lambda status: {
                **status, "approvals": [{"user": "alice", "at": "2026-11-27T10:00:00Z"}]})
        except Exception:  # noqa: BLE001 - still enforced (the binding's removal takes a moment)
            return False
        return True

    eventually(approve_as_alice, timeout=20, what="an unpolicied cluster")
    queued: list[apply.UpdateCommand] = []
    ApprovalWork(kube_api, queued.append).run()
    assert [c for c in queued if c.namespace == namespace] == []
    assert ur.phase_of(ur.get(kube_api, namespace, proposal.name)) == ur.Phase.PENDING
    (event,) = events_for(kube_api, namespace, proposal.name, "ApprovalNotAttributable")
    assert "alice" in event["message"] and "not installed" in event["message"]


# --------------------------------------------------------------------------------------------
# Verification without a pull secret
# --------------------------------------------------------------------------------------------


@pytest.fixture
def verifier(kube_api, settings):
    from operator_app.cache import WorkloadCache
    from registry.credentials import CredentialStore

    settings.HEADWIND = dataclasses.replace(settings.HEADWIND, webhook_verify=True,
                                            verify_not_found_seconds=3)
    cache = WorkloadCache()
    return cache, WebhookVerifier(cache, CredentialStore(kube_api))


def public_workload(testbed, namespace: str, repository: str):
    from operator_app.workloads import ContainerImage, WorkloadProjection

    return WorkloadProjection(
        kind="Deployment", namespace=namespace, name="web", uid="u", resource_version="1",
        annotations=(("headwind.sh/policy", "minor"),),
        containers=(ContainerImage("app", f"{testbed.token_registry}/{repository}:1.0.0"),))


def test_verification_works_without_a_pull_secret(testbed, namespace, token_registry_pusher,
                                                 verifier):
    """A public repository is verified anonymously: a forged tag is dropped, a real one
    passes with the registry's digest. (Before, without a pull secret, nothing was checked.)"""
    from operator_app.core.events import ImagePushEvent
    from operator_app.eventqueue import RetryLater

    cache, check = verifier
    repository = f"public/{namespace}/app"
    real = token_registry_pusher.push_image(repository, "1.1.0")
    cache.upsert(public_workload(testbed, namespace, repository))
    key = f"{testbed.token_registry}/{repository}"

    verified = check.check(ImagePushEvent(key, "1.1.0", received_at=time.time()))
    assert verified is not None and verified.digest == real
    assert check.check(ImagePushEvent(key, "1.1.0", "sha256:" + "0" * 64,
                                      received_at=time.time())) is None
    with pytest.raises(RetryLater):  # not readable yet: asked again, not dropped at once
        check.check(ImagePushEvent(key, "9.9.9", received_at=time.time()))
    assert check.check(ImagePushEvent(key, "9.9.9", received_at=time.time() - 10)) is None


def test_a_tag_readable_only_after_the_notification_is_not_dropped(testbed, namespace,
                                                                   token_registry_pusher,
                                                                   verifier):
    """Registries notify before the tag can always be read: a 404 within the grace period is a
    retry, and the retry finds the tag."""
    from operator_app.core.events import ImagePushEvent
    from operator_app.eventqueue import RetryLater

    cache, check = verifier
    repository = f"public/{namespace}/late"
    token_registry_pusher.push_image(repository, "1.0.0")
    cache.upsert(public_workload(testbed, namespace, repository))
    event = ImagePushEvent(f"{testbed.token_registry}/{repository}", "1.1.0",
                           received_at=time.time())
    with pytest.raises(RetryLater) as first:
        check.check(event)
    assert first.value.delay is not None and first.value.delay <= 1
    digest = token_registry_pusher.push_image(repository, "1.1.0")  # now it is readable
    assert check.check(event).digest == digest


# --------------------------------------------------------------------------------------------
# Sign-in throttling
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_login_form_locks_out_one_account_from_one_address(settings):
    User.objects.create_user("dana", password="right-password-123")
    User.objects.create_user("erin", password="right-password-456")
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for _attempt in range(settings.AXES_FAILURE_LIMIT):
        attacker.post("/accounts/login/", {"username": "dana", "password": "wrong"})
    locked = attacker.post("/accounts/login/", {"username": "dana",
                                                "password": "right-password-123"})
    assert locked.status_code == 429  # even the right password, from there, for that account
    # The same address for another account, and the account from elsewhere, still sign in.
    assert attacker.post("/accounts/login/", {"username": "erin",
                                              "password": "right-password-456"}).status_code == 302
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    assert elsewhere.post("/accounts/login/", {"username": "dana",
                                               "password": "right-password-123"}).status_code == 302
    assert AuditEvent.objects.filter(action="login_failed", actor="dana").count() >= 5


@pytest.mark.django_db
def test_api_throttling_keys_on_the_client_behind_a_trusted_proxy(settings):
    """Behind an ingress every request comes from the proxy's address: the client's own
    address (X-Forwarded-For through a trusted proxy) is what gets throttled."""
    settings.HEADWIND_TRUSTED_PROXIES = ["10.0.0.0/8"]
    from approvals import auth

    auth._networks.cache_clear()
    proxy = Client(REMOTE_ADDR="10.1.2.3")
    noisy = {"HTTP_X_FORWARDED_FOR": "203.0.113.50", "HTTP_AUTHORIZATION": "Token hw_wrong"}
    statuses = {proxy.get("/api/v1/updates", **noisy).status_code for _ in range(31)}
    assert statuses == {401, 429}
    assert proxy.get("/api/v1/updates", **noisy).status_code == 429
    innocent = {"HTTP_X_FORWARDED_FOR": "198.51.100.20", "HTTP_AUTHORIZATION": "Token hw_x"}
    assert proxy.get("/api/v1/updates", **innocent).status_code == 401  # not locked out
    # A client cannot pick its address: X-Forwarded-For from an untrusted peer is ignored (it
    # can neither hide behind another address nor get the locked-out one blamed).
    direct = Client(REMOTE_ADDR="192.0.2.10")
    spoofed = {"HTTP_X_FORWARDED_FOR": "203.0.113.50", "HTTP_AUTHORIZATION": "Token hw_y"}
    answer = direct.get("/api/v1/updates", **spoofed)
    assert answer.status_code == 401
    assert auth.client_address(answer.wsgi_request) == "192.0.2.10"


# --------------------------------------------------------------------------------------------
# Webhook tokens in the query string
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_query_string_token_is_accepted_and_never_logged(monkeypatch, redis_url, settings):
    import io
    import logging

    from headwind_site.redact import RedactWebhookTokens, redact

    settings.REDIS_URL = redis_url
    secret = "query-token-" + "x" * 20
    monkeypatch.setenv("HEADWIND_WEBHOOK_GENERIC_TOKEN", secret)
    body = json.dumps({"image": "reg.example/team/app", "tag": "1.3.0"}).encode()
    client = Client()
    accepted = client.post(f"/webhook/generic?token={secret}", body,
                           content_type="application/json")
    assert accepted.status_code == 202
    wrong = client.post("/webhook/generic?token=nope", body, content_type="application/json")
    assert wrong.status_code == 403

    handler = logging.StreamHandler(stream := io.StringIO())
    handler.addFilter(RedactWebhookTokens())
    logging.getLogger("django.request").addHandler(handler)
    try:
        client.post(f"/webhook/generic?token={secret}", b"{broken",
                    content_type="application/json")
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    assert "/webhook/generic" in stream.getvalue() and secret not in stream.getvalue()
    # The web server's access log line (test_web_server.py reads the real one).
    assert secret not in redact(f'"POST /webhook/generic?token={secret}&x=1 HTTP/1.1" 202')


# --------------------------------------------------------------------------------------------
# A busy database right after the cluster changed
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(os.environ.get("HEADWIND_TEST_DATABASE", "").lower() == "postgres",
                    reason="SQLite's database-wide write lock is what this test holds; "
                           "PostgreSQL locks rows, and the same situation there needs a "
                           "lock_timeout, which Headwind does not set")
def test_a_busy_database_never_turns_a_done_rejection_into_a_500(kube_api, namespace):
    """SQLite is locked by another process while a rejection is written: the cluster change
    stands, the API answers it (not a bare 500), and the audit record is written."""
    from django.contrib.auth.models import Permission

    from approvals import cluster
    from approvals.models import NamespaceGrant

    cluster.use(None)
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    user = User.objects.create_user("rita", password="pw-rita-123456")
    user.user_permissions.add(Permission.objects.get(codename="approve_updaterequest"))
    NamespaceGrant.objects.create(user=user, pattern="*")
    from approvals.auth import create_api_token

    _, key = create_api_token(user, "t")
    signed_in = Client().get("/api/v1/updates", HTTP_AUTHORIZATION=f"Token {key}")
    assert signed_in.status_code == 200  # first use recorded now, not while the lock is held
    path = connection.settings_dict["NAME"]
    connection.close()
    original = connection.settings_dict["OPTIONS"]
    connection.settings_dict["OPTIONS"] = {**original, "timeout": 0.3}

    locker = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    released = threading.Timer(1.2, lambda: locker.execute("COMMIT"))
    released.start()
    try:
        response = Client().post(f"/api/v1/updates/{namespace}/{proposal.name}/reject",
                                 json.dumps({"reason": "not now"}),
                                 content_type="application/json",
                                 HTTP_AUTHORIZATION=f"Token {key}")
    finally:
        released.join()
        locker.close()
        connection.close()
        connection.settings_dict["OPTIONS"] = original
    assert response.status_code == 200, response.content
    assert response.json()["phase"] == "Rejected"
    assert ur.phase_of(ur.get(kube_api, namespace, proposal.name)) == ur.Phase.REJECTED
    eventually(lambda: AuditEvent.objects.filter(action="reject", actor="rita",
                                                 result="success").exists(),
               what="the audit record")


def test_requests_in_production_settings_use_wal_and_a_busy_timeout():
    from headwind_site.settings import database_from_url

    sqlite = database_from_url("sqlite:////var/lib/headwind/db.sqlite3")
    assert "journal_mode=WAL" in sqlite["OPTIONS"]["init_command"]
    assert sqlite["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert sqlite["OPTIONS"]["timeout"] >= 10


# --------------------------------------------------------------------------------------------
# The browser's Content-Security-Policy and cookies
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_page_carries_a_strict_content_security_policy():
    response = Client().get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy


def test_secure_cookies_are_on_outside_development(tmp_path):
    import os
    import subprocess
    import sys

    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE)")
    env = {k: v for k, v in os.environ.items() if k not in ("HEADWIND_DEV", "DEBUG")}
    env.update(DJANGO_SETTINGS_MODULE="headwind_site.settings", SECRET_KEY="x" * 50)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stderr
    env["HEADWIND_SECURE_COOKIES"] = "false"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_a_batch_is_verified_in_parallel_and_judged_as_one_at_a_time(
        testbed, namespace, token_registry_pusher, verifier):
    """The operator's ``prefetch`` HEADs a burst's pushes at once: the real ones are answered
    from it afterwards (even once the registry no longer serves them), and it confirms nothing
    that ``check`` would not: a forged digest is still dropped, a tag not there yet retried."""
    from operator_app.core.events import ImagePushEvent
    from operator_app.eventqueue import RetryLater

    cache, check = verifier
    repository = f"public/{namespace}/app"
    real = {tag: token_registry_pusher.push_image(repository, tag, f"release {tag}")
            for tag in ("1.1.0", "1.2.0", "1.3.0")}
    cache.upsert(public_workload(testbed, namespace, repository))
    key = f"{testbed.token_registry}/{repository}"
    now = time.time()
    batch = [ImagePushEvent(key, tag, digest, received_at=now) for tag, digest in real.items()]
    forged = ImagePushEvent(key, "1.1.0", "sha256:" + "0" * 64, received_at=now)
    early = ImagePushEvent(key, "9.9.9", "sha256:" + "9" * 64, received_at=now)
    check.prefetch([*batch, forged, early])

    # The registry forgets 1.3.0: only the prefetched answer can confirm it now.
    pusher = token_registry_pusher
    gone = pusher._request("DELETE", f"{pusher.base}/v2/{repository}/manifests/{real['1.3.0']}",
                           f"repository:{repository}:*")
    assert gone.status_code == 202, gone.text
    for event in batch:
        assert check.check(event) is not None, event.tag
    assert check.check(forged) is None
    with pytest.raises(RetryLater):
        check.check(early)
