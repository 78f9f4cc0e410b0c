"""Approvals end to end on the testbed: mirror, admin actions, real worker, lifecycle rules."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse

from approvals import cluster, services
from approvals.errors import Conflict, NotAllowed, NotFound
from approvals.expiry import expire
from approvals.models import AuditEvent, NamespaceGrant, UpdateRequest
from approvals.permissions import Actor
from operator_app import proposals as ur
from operator_app.approved import ApprovalWork
from operator_app.kube import request
from operator_app.periodic import LeaderLoop
from operator_app.proposals import parse_rfc3339
from operator_app.workloads import kind_of
from tests.waiting import eventually

from .test_proposals import create, propose

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]
#: An applied request: Completed, then RolledOut once a running operator saw the rollout.
APPLIED = ("Completed", "RolledOut")

OLD, NEW = "reg.example/team/app:1.2.0", "reg.example/team/app:1.3.0"
POLICY = {"headwind.sh/policy": "minor"}
CHANGELIST = "admin:approvals_updaterequest_changelist"


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    return eventually(predicate, timeout, what, interval=0.1)


def make_user(username: str, *, grant: str | None = None, permission: bool = True,
              staff: bool = True, group: str | None = None) -> User:
    user = User.objects.create_user(username, password="pw-" + username, is_staff=staff)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="approve_updaterequest"))
    if group:
        team, _ = Group.objects.get_or_create(name=group)
        user.groups.add(team)
        if grant:
            NamespaceGrant.objects.create(group=team, pattern=grant)
    elif grant:
        NamespaceGrant.objects.create(user=user, pattern=grant)
    return User.objects.get(pk=user.pk)  # fresh permission cache


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def deployment(kube_api, namespace: str, annotations: dict | None = None, name: str = "web"):
    return create(kube_api, namespace, "Deployment", name, {"app": OLD},
                  {**POLICY, **(annotations or {})})


def row_of(namespace: str, name: str) -> UpdateRequest | None:
    return UpdateRequest.objects.filter(namespace=namespace, name=name).first()


def phase_on_cluster(kube_api, namespace: str, name: str) -> str:
    return ur.phase_of(ur.get(kube_api, namespace, name))


def image_of(kube_api, namespace: str, name: str = "web") -> str:
    obj = request(kube_api, "GET", kind_of("Deployment").object_path(namespace, name))
    return obj["spec"]["template"]["spec"]["containers"][0]["image"]


def admin_action(client: Client, action: str, rows: list[UpdateRequest], **extra):
    data = {"action": action, "_selected_action": [str(r.pk) for r in rows], "index": "0",
            **extra}
    return client.post(reverse(CHANGELIST), data, follow=True)


def messages_of(response) -> list[str]:
    return [str(m.message) for m in response.context["messages"]]


# --------------------------------------------------------------------------------------------
# Mirror
# --------------------------------------------------------------------------------------------


def test_mirror_follows_create_change_and_delete(kube_api, namespace, mirror):
    obj = deployment(kube_api, namespace)
    proposal = propose(kube_api, obj, NEW)
    row = wait_for(lambda: row_of(namespace, proposal.name), what="mirror row")
    assert (row.target_kind, row.target_name, row.container) == ("Deployment", "web", "app")
    assert (row.current_image, row.new_image, row.policy) == (OLD, NEW, "minor")
    assert row.phase == "Pending" and row.approvals_required == 1
    assert row.expires_at > datetime.now(UTC) + timedelta(hours=23)

    ur.set_phase(kube_api, namespace, proposal.name, ur.Phase.REJECTED, message="by hand",
                 extra_status={"rejectedBy": "kubectl"})
    wait_for(lambda: row_of(namespace, proposal.name).phase == "Rejected", what="Rejected")
    assert row_of(namespace, proposal.name).rejected_by == "kubectl"

    request(kube_api, "DELETE",
            f"/apis/headwind.sh/v1alpha1/namespaces/{namespace}/updaterequests/{proposal.name}")
    wait_for(lambda: row_of(namespace, proposal.name) is None, what="row deleted")


def test_relist_removes_rows_that_disappeared(kube_api, namespace, mirror):
    obj = deployment(kube_api, namespace)
    proposal = propose(kube_api, obj, NEW)
    wait_for(lambda: row_of(namespace, proposal.name), what="mirror row")
    ghost = UpdateRequest.objects.create(
        namespace=namespace, name="ghost", uid="no-such-uid", resource_version="1",
        target_api_version="apps/v1", target_kind="Deployment", target_name="web",
        container="app", current_image=OLD, new_image=NEW, policy="minor",
        created_at=datetime.now(UTC))
    mirror.list()  # what a watch gap (410) triggers
    assert not UpdateRequest.objects.filter(pk=ghost.pk).exists()
    assert row_of(namespace, proposal.name) is not None


# --------------------------------------------------------------------------------------------
# Admin → worker → Completed
# --------------------------------------------------------------------------------------------


def test_admin_approval_patches_the_workload_and_completes(kube_api, namespace, mirror,
                                                          celery_worker):
    obj = deployment(kube_api, namespace)
    proposal = propose(kube_api, obj, NEW)
    row = wait_for(lambda: row_of(namespace, proposal.name), what="mirror row")
    alice = make_user("alice", grant=namespace, group="team-a")

    page = logged_in(alice).get(reverse(CHANGELIST), {"q": "team/app:1.3"})
    assert page.status_code == 200 and proposal.name in page.content.decode()

    response = admin_action(logged_in(alice), "approve_selected", [row])
    assert response.status_code == 200
    assert any("Approved 1" in m for m in messages_of(response)), messages_of(response)

    cr = ur.get(kube_api, namespace, proposal.name)
    assert cr["status"]["approvals"][0]["user"] == "alice"
    wait_for(lambda: phase_on_cluster(kube_api, namespace, proposal.name) in APPLIED,
             what="Completed on the cluster")
    assert image_of(kube_api, namespace) == NEW
    done = wait_for(lambda: (r := row_of(namespace, proposal.name)) and r.phase in APPLIED
                    and r, what="Completed in the mirror")
    assert done.approved_by == "alice" and done.completed_at is not None
    assert "by alice" in done.message
    event = AuditEvent.objects.get(action="approve", target=f"{namespace}/{proposal.name}")
    assert (event.actor, event.result, event.details["via"]) == ("alice", "success", "session")


def test_admin_reject_with_reason_is_sticky(kube_api, namespace, mirror):
    obj = deployment(kube_api, namespace)
    proposal = propose(kube_api, obj, NEW)
    row = wait_for(lambda: row_of(namespace, proposal.name), what="mirror row")
    bob = make_user("bob", grant="t-*")
    client = logged_in(bob)

    form = admin_action(client, "reject_selected", [row])
    assert form.status_code == 200 and b'name="reason"' in form.content
    assert phase_on_cluster(kube_api, namespace, proposal.name) == "Pending"
    empty = admin_action(client, "reject_selected", [row], apply="Reject", reason="  ")
    assert b"This field is required" in empty.content
    done = admin_action(client, "reject_selected", [row], apply="Reject",
                        reason="1.3.0 breaks the login page")
    assert any("Rejected 1" in m for m in messages_of(done)), messages_of(done)

    cr = ur.get(kube_api, namespace, proposal.name)
    assert cr["status"]["phase"] == "Rejected"
    assert cr["status"]["rejectedBy"] == "bob"
    assert cr["status"]["message"] == "1.3.0 breaks the login page"
    assert row_of(namespace, proposal.name).phase == "Rejected"  # written without the watcher

    again = propose(kube_api, obj, NEW)  # the same image pushed again
    assert not again.created and again.name == proposal.name
    assert phase_on_cluster(kube_api, namespace, proposal.name) == "Rejected"
    with pytest.raises(Conflict) as refused:
        services.approve(Actor.from_user(bob), namespace, proposal.name)
    assert "Rejected" in refused.value.reason


def test_admin_refuses_rows_outside_the_grant_and_without_permission(kube_api, namespace,
                                                                     mirror):
    obj = deployment(kube_api, namespace)
    proposal = propose(kube_api, obj, NEW)
    row = wait_for(lambda: row_of(namespace, proposal.name), what="mirror row")
    carol = make_user("carol", grant="other-team-*")

    response = admin_action(logged_in(carol), "approve_selected", [row])
    assert any(f"has no grant for namespace {namespace}" in m for m in messages_of(response))
    assert phase_on_cluster(kube_api, namespace, proposal.name) == "Pending"
    refused = AuditEvent.objects.get(action="approve", actor="carol")
    assert refused.result == "refused" and "no grant" in refused.reason

    viewer = make_user("viewer", grant="*", permission=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_updaterequest"))
    response = admin_action(logged_in(User.objects.get(pk=viewer.pk)), "approve_selected",
                            [row])
    assert phase_on_cluster(kube_api, namespace, proposal.name) == "Pending"
    with pytest.raises(NotAllowed) as exc:
        services.approve(Actor.from_user(viewer), namespace, proposal.name)
    assert "permission" in exc.value.reason


# --------------------------------------------------------------------------------------------
# N-of-M, staleness, expiry
# --------------------------------------------------------------------------------------------


def test_two_approvers_required(kube_api, namespace, mirror, celery_worker, worker_idle):
    obj = deployment(kube_api, namespace, {"headwind.sh/approvals-required": "2"})
    proposal = propose(kube_api, obj, NEW)
    wait_for(lambda: row_of(namespace, proposal.name), what="mirror row")
    alice = Actor.from_user(make_user("alice", grant=namespace))
    bob = Actor.from_user(make_user("bob", grant=namespace))

    first = services.approve(alice, namespace, proposal.name, comment="looks fine")
    assert first.phase == "Pending" and first.approvers == ["alice"]
    assert first.approvals[0]["comment"] == "looks fine"
    assert "1 of 2" in first.message
    with pytest.raises(Conflict) as twice:
        services.approve(alice, namespace, proposal.name)
    assert "already approved" in twice.value.reason
    worker_idle(namespace)  # had the update been queued, the worker would have run it by now
    assert image_of(kube_api, namespace) == OLD
    assert phase_on_cluster(kube_api, namespace, proposal.name) == "Pending"

    second = services.approve(bob, namespace, proposal.name)
    assert second.phase == "Approved" and second.approved_by == "alice, bob"
    wait_for(lambda: phase_on_cluster(kube_api, namespace, proposal.name) in APPLIED,
             what="Completed")
    assert image_of(kube_api, namespace) == NEW
    cr = ur.get(kube_api, namespace, proposal.name)
    assert [a["user"] for a in cr["status"]["approvals"]] == ["alice", "bob"]


def test_stale_request_is_refused(kube_api, namespace, mirror):
    obj = deployment(kube_api, namespace)
    proposal = propose(kube_api, obj, NEW)
    wait_for(lambda: row_of(namespace, proposal.name), what="mirror row")
    request(kube_api, "PATCH", kind_of("Deployment").object_path(namespace, "web"),
            body={"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "reg.example/team/app:9.9.9"}]}}}},
            content_type="application/strategic-merge-patch+json")
    alice = Actor.from_user(make_user("alice", grant="*"))
    with pytest.raises(Conflict) as stale:
        services.approve(alice, namespace, proposal.name)
    assert stale.value.reason.startswith("stale")
    assert "9.9.9" in stale.value.reason
    assert phase_on_cluster(kube_api, namespace, proposal.name) == "Pending"


def test_unknown_request_is_404(kube_api, namespace):
    cluster.use(None)
    alice = Actor.from_user(make_user("alice", grant="*"))
    for name in ("nope", "../../etc", "UPPER"):
        with pytest.raises(NotFound):
            services.approve(alice, namespace, name)


def test_expiry_by_the_loop_and_at_approval_time(kube_api, namespace, mirror):
    obj = deployment(kube_api, namespace, {"headwind.sh/approval-timeout": "1"})
    first = propose(kube_api, obj, NEW)
    second = propose(kube_api, deployment(kube_api, namespace, {
        "headwind.sh/approval-timeout": "1"}, name="api"), NEW)
    lasting = propose(kube_api, deployment(kube_api, namespace, name="cache"), NEW)
    for proposal in (first, second, lasting):
        wait_for(lambda p=proposal: row_of(namespace, p.name), what="mirror rows")
    expires = max(parse_rfc3339(ur.get(kube_api, namespace, p.name)["spec"]["expiresAt"])
                  for p in (first, second))
    wait_for(lambda: datetime.now(UTC) > expires, what="expiresAt passed")

    # At approval time: refused and marked at once.
    alice = Actor.from_user(make_user("alice", grant="*"))
    with pytest.raises(Conflict) as late:
        services.approve(alice, namespace, first.name)
    assert "expired" in late.value.reason
    assert phase_on_cluster(kube_api, namespace, first.name) == "Expired"

    # The leader's loop.
    stop = threading.Event()
    leading = threading.Event()
    loop = LeaderLoop("expiry", 0.2, [lambda: expire(kube_api)], stop, leading.is_set)
    loop.start()
    try:
        wait_for(lambda: loop.passes >= 3, what="the loop ran while not leading")
        assert phase_on_cluster(kube_api, namespace, second.name) == "Pending"  # not leader
        leading.set()
        wait_for(lambda: phase_on_cluster(kube_api, namespace, second.name) == "Expired",
                 what="expired by the loop")
    finally:
        stop.set()
        loop.join(10)
    assert row_of(namespace, second.name).phase == "Expired"
    assert phase_on_cluster(kube_api, namespace, lasting.name) == "Pending"
    assert AuditEvent.objects.filter(action="expire",
                                     target=f"{namespace}/{second.name}").exists()


def test_concurrent_approvals_are_all_kept_and_queue_once(kube_api, namespace, mirror,
                                                          celery_worker):
    from django.db import connection

    obj = deployment(kube_api, namespace, {"headwind.sh/approvals-required": "3"})
    proposal = propose(kube_api, obj, NEW)
    wait_for(lambda: row_of(namespace, proposal.name), what="mirror row")
    actors = [Actor.from_user(make_user(name, grant=namespace)) for name in ("a1", "a2", "a3")]
    start = threading.Barrier(len(actors))
    errors = []

    def approve(actor):
        start.wait()
        try:
            services.approve(actor, namespace, proposal.name)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(actor,)) for actor in actors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    cr = ur.get(kube_api, namespace, proposal.name)
    assert sorted(a["user"] for a in cr["status"]["approvals"]) == ["a1", "a2", "a3"]
    wait_for(lambda: phase_on_cluster(kube_api, namespace, proposal.name) in APPLIED,
             what="Completed")
    live = request(kube_api, "GET", kind_of("Deployment").object_path(namespace, "web"))
    history = live["metadata"]["annotations"]["headwind.sh/update-history"]
    assert history.count(proposal.name) == 1  # applied once


def test_an_approval_that_never_reached_the_worker_is_resumed(kube_api, namespace, mirror,
                                                              celery_worker):
    """Approved through Headwind (signed), but the broker lost the message: the leader's pass
    queues it again after the grace period and it completes."""
    from operator_app.tasks import queue_update

    from .test_proposals import approve_as_headwind

    obj = deployment(kube_api, namespace)
    proposal = propose(kube_api, obj, NEW)
    approve_as_headwind(kube_api, namespace, proposal.name, "alice")
    fresh = propose(kube_api, deployment(kube_api, namespace, name="fresh"), NEW)
    approve_as_headwind(kube_api, namespace, fresh.name, "alice")

    work = ApprovalWork(kube_api, queue_update, grace_seconds=120)
    report = work.run()
    assert {f"{namespace}/{proposal.name}", f"{namespace}/{fresh.name}"}.isdisjoint(
        report.resumed)  # within the grace period: the web's own queueing may still be on way
    report = work.run(now=datetime.now(UTC) + timedelta(seconds=300))
    assert f"{namespace}/{proposal.name}" in report.resumed
    wait_for(lambda: phase_on_cluster(kube_api, namespace, proposal.name) in APPLIED,
             what="Completed on the cluster")
    assert image_of(kube_api, namespace) == NEW
