"""Rollouts followed to the end, and rollbacks, on the testbed: kube-controller-manager rolls the
workloads out and kwok runs their pods; images whose tag ends in ``-broken`` never become Ready
and ``-crash`` ones crash-loop (tests/testbed/kwok-stages/)."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from operator_app import kube, proposals
from operator_app.apply import UpdateCommand
from operator_app.core.rollout import rollouts
from operator_app.tasks import queue_update
from operator_app.workloads import KINDS
from tests.waiting import eventually

from .test_engine_e2e import create, image_of, push_and_deliver, read, wait_image, workload

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

REGISTRY = "reg.example/team/app"
AUTO = {"headwind.sh/policy": "major", "headwind.sh/include-prerelease": "true",
        "headwind.sh/require-approval": "false", "headwind.sh/min-update-interval": "0",
        "headwind.sh/auto-rollback": "true"}


def target(kind: str, name: str, image: str, annotations: dict, **spec) -> dict:
    obj = workload(kind, name, image, annotations)
    if kind == "Deployment":
        obj["spec"].update(replicas=2, progressDeadlineSeconds=6)
    if kind == "StatefulSet":
        obj["spec"]["replicas"] = 2
    obj["spec"].update(spec)
    return obj


def annotations(kube_api, namespace, kind, name) -> dict:
    return read(kube_api, namespace, kind, name)["metadata"].get("annotations") or {}


def rollout_of(kube_api, namespace, kind, name, slot="app"):
    return rollouts(annotations(kube_api, namespace, kind, name)).get(slot)


def wait_rollout(kube_api, namespace, kind, name, *states, to=None, timeout=60):
    """Wait until the slot's rollout record is in one of ``states`` (for ``to``, if given)."""
    def reached():
        record = rollout_of(kube_api, namespace, kind, name)
        return record if record and record.state in states and (to is None or
                                                                record.to == to) else None

    return eventually(reached, timeout, lambda: f"{kind} {name} rollout {states}; now "
                      f"{rollout_of(kube_api, namespace, kind, name)}", interval=0.2)


def events(kube_api, namespace, name, reason) -> list:
    return client.CoreV1Api(kube_api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},reason={reason}").items


def update(namespace, kind, name, old, new, **extra) -> None:
    queue_update(UpdateCommand(kind=kind, namespace=namespace, name=name, container="app",
                               new_image=new, expected_image=old, **extra))


def history(kube_api, namespace, kind, name) -> list[dict]:
    return json.loads(annotations(kube_api, namespace, kind, name)["headwind.sh/update-history"])


# --------------------------------------------------------------------------------------------
# Rolled out
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
def test_good_update_rolls_out(kind, kube_api, namespace, operators, celery_worker):
    create(kube_api, namespace, target(kind, "app", f"{REGISTRY}:1.0.0", AUTO))
    update(namespace, kind, "app", f"{REGISTRY}:1.0.0", f"{REGISTRY}:1.1.0")
    record = wait_rollout(kube_api, namespace, kind, "app", "succeeded")
    assert (record.from_, record.to, record.rollback) == (f"{REGISTRY}:1.0.0",
                                                          f"{REGISTRY}:1.1.0", False)
    status = read(kube_api, namespace, kind, "app")["status"]
    if kind == "Deployment":
        assert status["updatedReplicas"] == status["availableReplicas"] == 2
    elif kind == "StatefulSet":
        assert status["updateRevision"] == status["currentRevision"]
    else:
        assert status["updatedNumberScheduled"] == status["desiredNumberScheduled"] >= 1
    assert events(kube_api, namespace, "app", "RolloutSucceeded")
    assert image_of(kube_api, namespace, kind, "app") == f"{REGISTRY}:1.1.0"


def test_approved_update_ends_rolled_out(kube_api, namespace, operators, celery_worker):
    from django.contrib.auth.models import User

    from approvals import services
    from approvals.permissions import Actor

    from .test_proposals import propose

    create(kube_api, namespace, target("Deployment", "app", f"{REGISTRY}:1.0.0",
                                       {"headwind.sh/policy": "minor"}))
    obj = read(kube_api, namespace, "Deployment", "app")
    proposal = propose(kube_api, obj, f"{REGISTRY}:1.1.0")
    admin = User.objects.create_superuser("root", password="pw")
    services.approve(Actor.from_user(admin), namespace, proposal.name)

    def phase():
        return (proposals.get(kube_api, namespace, proposal.name).get("status") or {})

    status = eventually(lambda: phase().get("phase") == "RolledOut" and phase(), 60,
                        lambda: f"RolledOut; now {phase()}", interval=0.2)
    assert "replicas updated and available" in status["rollout"]["message"]
    assert rollout_of(kube_api, namespace, "Deployment", "app").request == proposal.name


# --------------------------------------------------------------------------------------------
# Failed: rolled back, or reported
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [2, 1])
def test_broken_push_is_rolled_back_and_never_reapplied(
        replicas, kube_api, namespace, testbed, push_image, notification_sink, webhook_relay,
        operators, stream_drained, worker_idle):
    """With one replica the rollback's own rollout starts under the broken one's
    ProgressDeadlineExceeded, which the controller keeps until it makes progress: that
    condition is not this rollout's failure (core.rollout.deployment)."""
    repository = f"{namespace}/app"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.0.0")
    create(kube_api, namespace, target("Deployment", "app", f"{image}:1.0.0", AUTO,
                                       replicas=replicas))

    push_and_deliver(push_image, notification_sink, repository, "1.1.0-broken")
    wait_image(kube_api, namespace, "Deployment", "app", f"{image}:1.1.0-broken")
    # The progress deadline (6 s) passes, the Deployment says ProgressDeadlineExceeded, and
    # Headwind puts 1.0.0 back.
    wait_image(kube_api, namespace, "Deployment", "app", f"{image}:1.0.0", timeout=60)
    notes = annotations(kube_api, namespace, "Deployment", "app")
    assert json.loads(notes["headwind.sh/bad-versions"]) == {"app": ["1.1.0-broken"]}
    (rollback, update_entry) = history(kube_api, namespace, "Deployment", "app")[:2]
    assert rollback["rollback"] is True and rollback["by"] == "headwind-auto-rollback"
    assert "ProgressDeadlineExceeded" in rollback["reason"]
    assert (update_entry["from"], update_entry["to"]) == (f"{image}:1.0.0",
                                                          f"{image}:1.1.0-broken")
    assert events(kube_api, namespace, "app", "RolloutFailed")
    assert events(kube_api, namespace, "app", "RolledBack")
    wait_rollout(kube_api, namespace, "Deployment", "app", "succeeded", to=f"{image}:1.0.0")

    # The same tag pushed again is not applied again …
    push_and_deliver(push_image, notification_sink, repository, "1.1.0-broken", "rebuilt")
    stream_drained()
    worker_idle(namespace)
    assert image_of(kube_api, namespace, "Deployment", "app") == f"{image}:1.0.0"
    # … and a newer, good version is.
    push_and_deliver(push_image, notification_sink, repository, "1.1.0")
    wait_image(kube_api, namespace, "Deployment", "app", f"{image}:1.1.0")
    wait_rollout(kube_api, namespace, "Deployment", "app", "succeeded", to=f"{image}:1.1.0")


@pytest.mark.parametrize(("kind", "tag", "extra"), [
    ("StatefulSet", "1.1.0-broken", {"headwind.sh/rollout-timeout": "10"}),  # the deadline
    ("DaemonSet", "1.1.0-crash", {}),  # CrashLoopBackOff on the new revision's pod
])
def test_statefulset_and_daemonset_roll_back(kind, tag, extra, kube_api, namespace, operators,
                                             celery_worker):
    create(kube_api, namespace, target(kind, "app", f"{REGISTRY}:1.0.0", {**AUTO, **extra}))
    update(namespace, kind, "app", f"{REGISTRY}:1.0.0", f"{REGISTRY}:{tag}")
    wait_rollout(kube_api, namespace, kind, "app", "watching", "rollingBack",
                 to=f"{REGISTRY}:{tag}")
    wait_image(kube_api, namespace, kind, "app", f"{REGISTRY}:1.0.0", timeout=60)
    notes = annotations(kube_api, namespace, kind, "app")
    assert json.loads(notes["headwind.sh/bad-versions"]) == {"app": [tag]}
    (rollback,) = [entry for entry in history(kube_api, namespace, kind, "app")
                   if entry.get("rollback")]
    assert ("deadline" if "broken" in tag else "CrashLoopBackOff") in rollback["reason"]
    wait_rollout(kube_api, namespace, kind, "app", "succeeded", to=f"{REGISTRY}:1.0.0")


def test_without_auto_rollback_a_failure_is_reported_not_reverted(
        kube_api, namespace, operators, celery_worker, worker_idle):
    manual = {**AUTO, "headwind.sh/auto-rollback": "false"}
    create(kube_api, namespace, target("Deployment", "app", f"{REGISTRY}:1.0.0", manual))
    update(namespace, "Deployment", "app", f"{REGISTRY}:1.0.0", f"{REGISTRY}:1.1.0-crash")
    record = wait_rollout(kube_api, namespace, "Deployment", "app", "failed")
    assert "CrashLoopBackOff" in record.reason
    worker_idle(namespace)
    assert image_of(kube_api, namespace, "Deployment", "app") == f"{REGISTRY}:1.1.0-crash"
    assert "headwind.sh/bad-versions" not in annotations(kube_api, namespace, "Deployment",
                                                         "app")
    (event,) = events(kube_api, namespace, "app", "RolloutFailed")
    assert event.type == "Warning" and "CrashLoopBackOff" in event.message


def test_operator_restart_mid_rollout_still_rolls_back(kube_api, namespace, operators,
                                                       celery_worker):
    create(kube_api, namespace, target("StatefulSet", "app", f"{REGISTRY}:1.0.0",
                                       {**AUTO, "headwind.sh/rollout-timeout": "15"}))
    update(namespace, "StatefulSet", "app", f"{REGISTRY}:1.0.0", f"{REGISTRY}:1.1.0-broken")
    wait_rollout(kube_api, namespace, "StatefulSet", "app", "watching",
                 to=f"{REGISTRY}:1.1.0-broken")
    operators["restart"]()  # kill -9 both replicas; the state is on the StatefulSet only
    wait_image(kube_api, namespace, "StatefulSet", "app", f"{REGISTRY}:1.0.0", timeout=60)
    (rollback,) = [entry for entry in history(kube_api, namespace, "StatefulSet", "app")
                   if entry.get("rollback")]
    assert "deadline" in rollback["reason"]


def test_a_human_edit_stops_the_automatic_rollback(kube_api, namespace, operators,
                                                   celery_worker, worker_idle):
    create(kube_api, namespace, target("StatefulSet", "app", f"{REGISTRY}:1.0.0",
                                       {**AUTO, "headwind.sh/rollout-timeout": "8"}))
    update(namespace, "StatefulSet", "app", f"{REGISTRY}:1.0.0", f"{REGISTRY}:1.1.0-broken")
    wait_rollout(kube_api, namespace, "StatefulSet", "app", "watching",
                 to=f"{REGISTRY}:1.1.0-broken")
    # Someone fixes it by hand before the deadline: their image stands.
    kube.request(kube_api, "PATCH", KINDS["StatefulSet"].object_path(namespace, "app"),
                 body={"spec": {"template": {"spec": {"containers": [
                     {"name": "app", "image": f"{REGISTRY}:1.0.1-hotfix"}]}}}},
                 content_type="application/strategic-merge-patch+json")
    record = wait_rollout(kube_api, namespace, "StatefulSet", "app", "superseded")
    assert "changed by someone else" in record.reason
    worker_idle(namespace)
    assert image_of(kube_api, namespace, "StatefulSet", "app") == f"{REGISTRY}:1.0.1-hotfix"
    assert not any(e.get("rollback") for e in history(kube_api, namespace, "StatefulSet",
                                                       "app"))


def test_a_queued_rollback_over_a_human_edit_is_refused(kube_api, namespace, celery_worker,
                                                        worker_idle):
    """The task's own check, for a rollback queued just before someone changed the image."""
    create(kube_api, namespace, target("Deployment", "app", f"{REGISTRY}:1.0.1-hotfix", {}))
    update(namespace, "Deployment", "app", f"{REGISTRY}:1.1.0-broken", f"{REGISTRY}:1.0.0",
           purpose="rollback", mark_bad=True, reason="test")
    worker_idle(namespace)
    assert image_of(kube_api, namespace, "Deployment", "app") == f"{REGISTRY}:1.0.1-hotfix"
    (event,) = eventually(lambda: events(kube_api, namespace, "app", "RollbackSkipped"), 10)
    assert "changed by someone else" in event.message


def test_cronjob_rollout_is_its_next_job(kube_api, namespace, operators, celery_worker):
    create(kube_api, namespace, target("CronJob", "app", f"{REGISTRY}:1.0.0", AUTO))
    update(namespace, "CronJob", "app", f"{REGISTRY}:1.0.0", f"{REGISTRY}:1.1.0-crash")
    wait_rollout(kube_api, namespace, "CronJob", "app", "watching", to=f"{REGISTRY}:1.1.0-crash")
    # The next run, as `kubectl create job --from=cronjob/app` starts it.
    cronjob = read(kube_api, namespace, "CronJob", "app")
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "app-manual", "ownerReferences": [{
               "apiVersion": "batch/v1", "kind": "CronJob", "name": "app",
               "uid": cronjob["metadata"]["uid"], "controller": True}]},
           "spec": cronjob["spec"]["jobTemplate"]["spec"]}
    kube.request(kube_api, "POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=job)
    wait_image(kube_api, namespace, "CronJob", "app", f"{REGISTRY}:1.0.0", timeout=60)
    (rollback,) = [entry for entry in history(kube_api, namespace, "CronJob", "app")
                   if entry.get("rollback")]
    assert "CrashLoopBackOff" in rollback["reason"]


def test_helmrelease_failed_upgrade_is_rolled_back(kube_api, namespace, operators,
                                                   celery_worker):
    """No Flux controller runs here: the test writes what helm-controller reports (a failed
    upgrade that Flux remediated) through the status subresource, as helm-controller does."""
    from .test_helm import helm_release, helm_repository, release_version

    helm_repository(kube_api, namespace, "charts", "https://charts.example/stable")
    helm_release(kube_api, namespace, "web", "web", "1.0.0", "charts",
                 annotations={**AUTO, "headwind.sh/policy": "minor"})
    chart = "https://charts.example/stable/web"
    queue_update(UpdateCommand(kind="HelmRelease", namespace=namespace, name="web",
                               container="chart", new_image=f"{chart}:1.1.0",
                               expected_image=f"{chart}:1.0.0"))
    eventually(lambda: release_version(kube_api, namespace, "web") == "1.1.0", 30)
    wait_rollout_slot = lambda *states: eventually(  # noqa: E731
        lambda: (r := rollout_of(kube_api, namespace, "HelmRelease", "web", "chart"))
        and r.state in states and r, 30)
    wait_rollout_slot("watching")
    release = read(kube_api, namespace, "HelmRelease", "web")
    status = {"observedGeneration": release["metadata"]["generation"],
              "lastAttemptedRevision": "1.1.0",
              "conditions": [
                  {"type": "Ready", "status": "False", "reason": "RollbackSucceeded",
                   "message": "Helm rollback to previous release succeeded",
                   "lastTransitionTime": "2026-01-01T00:00:00Z"},
                  {"type": "Remediated", "status": "True", "reason": "RollbackSucceeded",
                   "message": "Helm upgrade failed: pods not ready; rolled back",
                   "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    kube.request(kube_api, "PATCH", HELMRELEASE_STATUS.format(ns=namespace, name="web"),
                 body={"status": status}, content_type="application/merge-patch+json")
    eventually(lambda: release_version(kube_api, namespace, "web") == "1.0.0", 30)
    notes = annotations(kube_api, namespace, "HelmRelease", "web")
    assert json.loads(notes["headwind.sh/bad-versions"]) == {"chart": ["1.1.0"]}
    (rollback,) = [e for e in history(kube_api, namespace, "HelmRelease", "web")
                   if e.get("rollback")]
    assert "Flux remediated" in rollback["reason"]


HELMRELEASE_STATUS = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/{ns}/helmreleases/{name}/status"


# --------------------------------------------------------------------------------------------
# Manual rollback: REST API, Kubernetes callers, holds
# --------------------------------------------------------------------------------------------

DIRECT = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false",
          "headwind.sh/min-update-interval": "0"}


def rolled_out_twice(kube_api, namespace) -> None:
    """A Deployment Headwind moved 1.0.0 → 1.1.0 → 1.2.0, each rolled out."""
    create(kube_api, namespace, target("Deployment", "app", f"{REGISTRY}:1.0.0", DIRECT))
    for old, new in (("1.0.0", "1.1.0"), ("1.1.0", "1.2.0")):
        update(namespace, "Deployment", "app", f"{REGISTRY}:{old}", f"{REGISTRY}:{new}")
        wait_rollout(kube_api, namespace, "Deployment", "app", "succeeded",
                     to=f"{REGISTRY}:{new}")


def test_manual_rollback_through_the_api_holds_the_container(
        kube_api, namespace, operators, celery_worker, worker_idle):
    from django.test import Client

    from approvals.auth import create_api_token
    from approvals.models import AuditEvent

    from .test_approvals import make_user
    from .test_approvals_api import api

    rolled_out_twice(kube_api, namespace)
    alice = make_user("alice", grant=namespace)
    _, key = create_api_token(alice, "ci")
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    client = Client()

    state = api(client, "GET", f"workloads/{namespace}/deployment/app", **auth).json()
    assert state["containers"][0]["rollbackTargets"] == [f"{REGISTRY}:1.1.0",
                                                         f"{REGISTRY}:1.0.0"]
    response = api(client, "POST", f"workloads/{namespace}/deployments/app/rollback",
                   {"container": "app", "to": "1.0.0", "reason": "1.2 leaks memory"}, **auth)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["rollback"] == {"kind": "Deployment", "namespace": namespace, "name": "app",
                                "container": "app", "from": f"{REGISTRY}:1.2.0",
                                "to": f"{REGISTRY}:1.0.0", "hold": True}
    assert "1.0.0" in body["message"]
    wait_image(kube_api, namespace, "Deployment", "app", f"{REGISTRY}:1.0.0")
    record = wait_rollout(kube_api, namespace, "Deployment", "app", "succeeded",
                          to=f"{REGISTRY}:1.0.0")
    assert record.rollback and record.by == "alice"
    (entry,) = [e for e in history(kube_api, namespace, "Deployment", "app")
                if e.get("rollback")]
    assert (entry["by"], entry["reason"]) == ("alice", "1.2 leaks memory")
    hold = json.loads(annotations(kube_api, namespace, "Deployment", "app")["headwind.sh/hold"])
    assert hold["app"]["version"] == "1.0.0" and hold["app"]["by"] == "alice"
    assert AuditEvent.objects.filter(actor="alice", action="rollback", result="success").exists()

    # Held: the policy would move it to 1.2.0 at once, but nothing moves it.
    update(namespace, "Deployment", "app", f"{REGISTRY}:1.0.0", f"{REGISTRY}:1.2.0")
    worker_idle(namespace)
    assert image_of(kube_api, namespace, "Deployment", "app") == f"{REGISTRY}:1.0.0"
    # Released: it moves again.
    response = api(client, "POST", f"workloads/{namespace}/Deployment/app/hold/release",
                   {"container": "app"}, **auth)
    assert response.status_code == 200 and response.json()["containers"][0]["hold"] is None
    update(namespace, "Deployment", "app", f"{REGISTRY}:1.0.0", f"{REGISTRY}:1.2.0")
    wait_image(kube_api, namespace, "Deployment", "app", f"{REGISTRY}:1.2.0")


def test_rollback_refused_without_rights(kube_api, namespace, kube_user, operators,
                                         celery_worker, worker_idle):
    from django.test import Client

    from approvals.auth import create_api_token
    from approvals.models import AuditEvent

    from .test_approvals import make_user
    from .test_approvals_api import api

    rolled_out_twice(kube_api, namespace)
    client = Client()
    path = f"workloads/{namespace}/deployment/app/rollback"
    body = {"container": "app", "to": "1.1.0"}
    for user in (make_user("nogrant"), make_user("noperm", grant=namespace, permission=False)):
        _, key = create_api_token(user, "ci")
        response = api(client, "POST", path, body, HTTP_AUTHORIZATION=f"Token {key}")
        assert response.status_code == 403, response.content
        assert AuditEvent.objects.filter(actor=user.username, action="rollback",
                                         result="refused").exists()
    reader = kube_user("reader", [{"apiGroups": ["apps"], "resources": ["deployments"],
                                   "verbs": ["get"]}])
    response = api(client, "POST", path, body, HTTP_AUTHORIZATION=f"Bearer {reader.token}")
    assert response.status_code == 403
    assert "patch" in response.json()["reason"]
    # Not in the history, a version that is already there, bad input: clear 4xx answers.
    admin = make_user("boss", grant=namespace)
    _, key = create_api_token(admin, "ci")
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    assert api(client, "POST", path, {"to": "9.9.9"}, **auth).status_code == 409
    assert api(client, "POST", path, {"to": "1.2.0"}, **auth).status_code == 409
    assert api(client, "POST", path, {"container": 7, "to": "1.1.0"}, **auth).status_code == 400
    assert api(client, "POST", path, "[]", **auth).status_code == 400
    assert api(client, "POST", f"workloads/{namespace}/pods/app/rollback", body,
               **auth).status_code == 404
    worker_idle(namespace)
    assert image_of(kube_api, namespace, "Deployment", "app") == f"{REGISTRY}:1.2.0"

    # RBAC patch on the workload is what a Kubernetes caller needs.
    patcher = kube_user("patcher", [{"apiGroups": ["apps"], "resources": ["deployments"],
                                     "verbs": ["get", "patch"]}])
    response = eventually(lambda: (r := api(client, "POST", path, body,
                                            HTTP_AUTHORIZATION=f"Bearer {patcher.token}"))
                          .status_code == 202 and r, 10)
    assert response.json()["rollback"]["to"] == f"{REGISTRY}:1.1.0"
    wait_image(kube_api, namespace, "Deployment", "app", f"{REGISTRY}:1.1.0")


def test_admin_action_rolls_an_applied_request_back(kube_api, namespace, mirror,
                                                    celery_worker):
    from django.contrib.auth.models import User

    from approvals import services
    from approvals.models import UpdateRequest
    from approvals.permissions import Actor

    from .test_approvals import admin_action, logged_in, make_user, messages_of
    from .test_proposals import propose

    create(kube_api, namespace, target("Deployment", "app", f"{REGISTRY}:1.0.0",
                                       {"headwind.sh/policy": "minor"}))
    proposal = propose(kube_api, read(kube_api, namespace, "Deployment", "app"),
                       f"{REGISTRY}:1.1.0")
    root = User.objects.create_superuser("root", password="pw")
    services.approve(Actor.from_user(root), namespace, proposal.name)
    wait_image(kube_api, namespace, "Deployment", "app", f"{REGISTRY}:1.1.0")
    row = eventually(lambda: UpdateRequest.objects.filter(
        namespace=namespace, name=proposal.name, phase__in=("Completed", "RolledOut")).first(),
        30)

    erin = make_user("erin", grant=namespace)
    response = admin_action(logged_in(erin), "roll_back_selected", [row])
    assert any("Rolling back 1" in m for m in messages_of(response)), messages_of(response)
    wait_image(kube_api, namespace, "Deployment", "app", f"{REGISTRY}:1.0.0")
    eventually(lambda: proposals.phase_of(proposals.get(kube_api, namespace, proposal.name))
               == "RolledBack", 30)
    assert json.loads(annotations(kube_api, namespace, "Deployment", "app")[
        "headwind.sh/hold"])["app"]["by"] == "erin"
    # Once rolled back, the request is no longer an applied update to roll back.
    row.refresh_from_db()
    response = admin_action(logged_in(erin), "roll_back_selected", [row])
    assert any("it is RolledBack" in m for m in messages_of(response)), messages_of(response)


def test_people_are_told_about_a_failed_rollout_and_its_rollback(kube_api, namespace, operators,
                                                                 celery_worker):
    """The operator and the worker emit; the worker delivers to the team's own webhook (its URL
    in a Secret named by ``headwind.sh/notify``)."""
    import base64

    from tests.unit.test_notify_support import Sink

    with Sink() as hook:
        client.CoreV1Api(kube_api).create_namespaced_secret(namespace, {
            "metadata": {"name": "team-hook"},
            "data": {"url": base64.b64encode(hook.url.encode()).decode()}})
        create(kube_api, namespace, target("Deployment", "app", f"{REGISTRY}:1.0.0", {
            **AUTO, "headwind.sh/notify": "webhook=secret:team-hook"}))
        update(namespace, "Deployment", "app", f"{REGISTRY}:1.0.0", f"{REGISTRY}:1.1.0-crash")
        wait_image(kube_api, namespace, "Deployment", "app", f"{REGISTRY}:1.0.0", timeout=60)

        def events_told():
            return [r.json()["event"] for r in hook.received]

        eventually(lambda: {"update_applied", "rollback_triggered", "rollback_completed"}
                   <= set(events_told()), 30, lambda: f"notices: {events_told()}")
        triggered = next(r.json() for r in hook.received
                         if r.json()["event"] == "rollback_triggered")
        assert "CrashLoopBackOff" in triggered["reason"]
        assert triggered["to"] == f"{REGISTRY}:1.1.0-crash"


def test_people_are_told_about_a_request_from_proposal_to_rollout(kube_api, namespace,
                                                                   operators, celery_worker):
    import base64

    from django.contrib.auth.models import User

    from approvals import services
    from approvals.permissions import Actor
    from operator_app.core.policy import PolicySpec
    from operator_app.dispatch import ClusterDispatcher
    from operator_app.engine import UpdatePlan
    from operator_app.workloads import project
    from tests.unit.test_notify_support import Sink

    with Sink() as hook:
        client.CoreV1Api(kube_api).create_namespaced_secret(namespace, {
            "metadata": {"name": "team-hook"},
            "data": {"url": base64.b64encode(hook.url.encode()).decode()}})
        policy = {"headwind.sh/policy": "minor", "headwind.sh/notify": "webhook=secret:team-hook"}
        create(kube_api, namespace, target("Deployment", "app", f"{REGISTRY}:1.0.0", policy))
        workload = project(KINDS["Deployment"], read(kube_api, namespace, "Deployment", "app"))
        ClusterDispatcher(kube_api).propose(UpdatePlan(
            workload, "app", f"{REGISTRY}:1.0.0", f"{REGISTRY}:1.1.0", None,
            PolicySpec.from_annotations(policy), "minor policy: 1.0.0 → 1.1.0", "webhook"))
        (request,) = proposals.list_for_target(kube_api, "Deployment", namespace, "app", "app")
        root = User.objects.create_superuser("root", password="pw")
        services.approve(Actor.from_user(root), namespace, request["metadata"]["name"])

        def told():
            return [(r.json()["event"], r.json()["actor"]) for r in hook.received]

        eventually(lambda: {("request_created", "headwind"), ("request_approved", "root"),
                            ("update_applied", "root"), ("rolled_out", "root")} <= set(told()),
                   40, lambda: f"notices: {told()}")
        approved = next(r.json() for r in hook.received if r.json()["event"] ==
                        "request_approved")
        assert (approved["approvals"], approved["required"]) == (1, 1)
        assert approved["request"] == request["metadata"]["name"]
