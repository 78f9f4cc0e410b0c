"""Applying updates on the real API server, directly and through a real Celery worker."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes import client
from prometheus_client import REGISTRY

from operator_app import proposals as ur
from operator_app import tasks
from operator_app.apply import UpdateCommand, WorkloadContention, apply_update, is_transient
from operator_app.kube import request
from operator_app.workloads import kind_of
from tests.waiting import eventually

from .test_proposals import approve_as_headwind, propose
from .test_proposals import create as create_workload

pytestmark = pytest.mark.testbed

RFC3339_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
#: An applied request: Completed, then RolledOut once a running operator saw the rollout.
APPLIED = ("Completed", "RolledOut")
OLD, NEW = "reg.example/team/app:1.2.0", "reg.example/team/app:1.3.0"
# Direct (unapproved) updates are re-checked against the live annotations at apply time.
DIRECT = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false"}


def create(api, namespace: str, kind: str, name: str, containers: dict[str, str],
           annotations: dict[str, str] | None = None) -> dict:
    return create_workload(api, namespace, kind, name, containers,
                           {**DIRECT, **(annotations or {})})


def read(api, namespace: str, kind: str, name: str) -> dict:
    return request(api, "GET", kind_of(kind).object_path(namespace, name))


def image_of(api, namespace: str, kind: str, name: str, container: str = "app") -> str:
    obj = read(api, namespace, kind, name)
    return next(c.image for c in kind_of(kind).containers(obj) if c.name == container)


def events(api, namespace: str, name: str, reason: str) -> list[dict]:
    selector = f"involvedObject.name={name},reason={reason}"
    return request(api, "GET", f"/api/v1/namespaces/{namespace}/events",
                   query={"fieldSelector": selector})["items"]


def ours(obj: dict) -> dict:
    return {k: v for k, v in (obj["metadata"].get("annotations") or {}).items()
            if k.startswith("headwind.sh/")}


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def set_image(api, namespace: str, image: str, name: str = "web") -> None:
    """Someone else changes the Deployment's app container."""
    request(api, "PATCH", kind_of("Deployment").object_path(namespace, name),
            body={"spec": {"template": {"spec": {"containers": [{"name": "app",
                                                                 "image": image}]}}}},
            content_type="application/strategic-merge-patch+json")


def apply(api, namespace: str, kind: str = "Deployment", name: str = "web", *, now=None,
          update_request=None, **extra):
    fields = dict(kind=kind, namespace=namespace, name=name, container="app", new_image=NEW,
                  request=update_request)
    fields.update(extra)
    return apply_update(api, UpdateCommand(**fields), now=now)


@pytest.mark.parametrize("kind, annotations", [
    ("Deployment", None),  # no annotations map at all: the patch has to add it
    ("StatefulSet", {"headwind.sh/policy": "minor", "team": "a/b~c"}),
    ("DaemonSet", {"headwind.sh/policy": "minor"}),
    ("CronJob", {"headwind.sh/policy": "minor"}),
])
def test_apply_patches_image_writes_history_and_event(kube_api, namespace, kind, annotations):
    create(kube_api, namespace, kind, "web", {"side": "reg.example/side:1", "app": OLD},
           annotations)
    applied_before = sample("headwind_updates_applied_total", kind=kind, namespace=namespace)

    result = apply(kube_api, namespace, kind, expected_image=OLD, actor="alice")

    assert result.outcome == "applied", result.message
    assert result.message == f"container app: {OLD} → {NEW} (by alice)"
    obj = read(kube_api, namespace, kind, "web")
    assert {c.name: c.image for c in kind_of(kind).containers(obj)} == {
        "side": "reg.example/side:1", "app": NEW}
    if kind == "CronJob":
        pod = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["containers"][1]["image"] == NEW
    notes = obj["metadata"]["annotations"]
    for key, value in (annotations or {}).items():
        assert notes[key] == value
    assert RFC3339_Z.fullmatch(notes["headwind.sh/last-update"])
    stamp = datetime.fromisoformat(notes["headwind.sh/last-update"])
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    history = json.loads(notes["headwind.sh/update-history"])
    assert history == [{"at": notes["headwind.sh/last-update"], "container": "app", "from": OLD,
                        "to": NEW, "by": "alice", "request": None}]
    assert sample("headwind_updates_applied_total", kind=kind,
                  namespace=namespace) == applied_before + 1

    [event] = events(kube_api, namespace, "web", "ImageUpdated")
    assert event["type"] == "Normal"
    assert event["message"] == result.message
    assert event["source"]["component"] == "headwind"
    assert event["involvedObject"]["kind"] == kind
    assert event["involvedObject"]["uid"] == obj["metadata"]["uid"]

    again = apply(kube_api, namespace, kind, expected_image=OLD, actor="alice")
    assert again.outcome == "already"
    after = read(kube_api, namespace, kind, "web")  # controllers write status; spec is ours
    assert after["metadata"]["generation"] == obj["metadata"]["generation"]
    assert ours(after) == ours(obj)


def test_history_is_newest_first_and_bounded(kube_api, namespace):
    old_history = [{"at": f"2020-01-{day:02d}T00:00:00Z", "container": "app", "from": "x",
                    "to": "y", "by": "bob", "request": None} for day in range(10, 0, -1)]
    create(kube_api, namespace, "Deployment", "web", {"app": OLD},
           {"headwind.sh/update-history": json.dumps(old_history)})

    assert apply(kube_api, namespace).outcome == "applied"

    notes = read(kube_api, namespace, "Deployment", "web")["metadata"]["annotations"]
    history = json.loads(notes["headwind.sh/update-history"])
    assert len(history) == 10
    assert history[0]["to"] == NEW and history[0]["by"] == "headwind"
    assert history[1:] == old_history[:9]


def test_apply_completes_the_update_request(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    approve_as_headwind(kube_api, namespace, proposal.name, "carol")

    result = apply(kube_api, namespace, expected_image=OLD, update_request=proposal.name,
                   actor="carol")

    assert result.outcome == "applied"
    assert result.message.endswith(f"(by carol, request {proposal.name})")
    status = ur.get(kube_api, namespace, proposal.name)["status"]
    assert status["phase"] in APPLIED
    assert status["message"] == result.message or status["phase"] == "RolledOut"
    assert RFC3339_Z.fullmatch(status["completedAt"])
    history = json.loads(read(kube_api, namespace, "Deployment", "web")["metadata"][
        "annotations"]["headwind.sh/update-history"])
    assert history[0]["request"] == proposal.name

    again = apply(kube_api, namespace, expected_image=OLD, update_request=proposal.name)
    assert again.outcome == "already"
    assert ur.get(kube_api, namespace, proposal.name)["status"]["completedAt"] == (
        status["completedAt"])


def test_already_marks_an_approved_request_completed(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    approve_as_headwind(kube_api, namespace, proposal.name)
    set_image(kube_api, namespace, NEW)

    result = apply(kube_api, namespace, expected_image=OLD, update_request=proposal.name)

    assert result.outcome == "already"
    assert ur.get(kube_api, namespace, proposal.name)["status"]["phase"] in APPLIED


def test_a_pending_request_is_not_applied(kube_api, namespace):
    """Only an approved request moves anything: a Pending one handed to the task is stale."""
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    result = apply(kube_api, namespace, expected_image=OLD, update_request=proposal.name)
    assert result.outcome == "stale" and "Pending" in result.message
    assert image_of(kube_api, namespace, "Deployment", "web") == OLD


def test_an_approval_nobody_can_attribute_is_refused(kube_api, namespace):
    """``phase: Approved`` written without signed approvals (and the admission policy does not
    vouch for them, because the entry names someone else than its writer could prove)."""
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    ur.set_phase(kube_api, namespace, proposal.name, "Approved", expect_phases={"Pending"},
                 extra_status={"approvedBy": "nobody"})
    result = apply(kube_api, namespace, expected_image=OLD, update_request=proposal.name)
    assert result.outcome == "failed" and "0 of 1 proven" in result.message
    assert image_of(kube_api, namespace, "Deployment", "web") == OLD
    assert ur.get(kube_api, namespace, proposal.name)["status"]["phase"] == "Failed"


class RacingApiClient(client.ApiClient):
    """A real ApiClient (same server, same credentials) that lets a test change the workload
    itself between Headwind's read and its patch, as a concurrent writer would."""

    def __init__(self, base: client.ApiClient, before_first_patch) -> None:
        super().__init__(base.configuration)
        self.before_first_patch = before_first_patch
        self.patches: list = []

    def call_api(self, resource_path, method, *args, **kwargs):
        if method == "PATCH" and "/deployments/" in resource_path:
            if not self.patches:
                self.before_first_patch(resource_path)
            self.patches.append(kwargs.get("body"))
        return super().call_api(resource_path, method, *args, **kwargs)


def test_concurrent_edit_between_read_and_patch_is_kept(kube_api, namespace):
    """Someone scales and relabels the Deployment after Headwind read it: nothing is lost."""
    create(kube_api, namespace, "Deployment", "web", {"app": OLD}, {"headwind.sh/policy": "minor"})

    def scale_and_relabel(path):
        request(kube_api, "PATCH", path, content_type="application/merge-patch+json",
                body={"metadata": {"labels": {"team": "blue"}}, "spec": {"replicas": 3}})

    with RacingApiClient(kube_api, scale_and_relabel) as racing:
        result = apply(racing, namespace, expected_image=OLD)
    patches = racing.patches

    assert result.outcome == "applied"
    # The first patch was refused by its resourceVersion test (the controller may also have
    # written status meanwhile, costing another round).
    assert len(patches) >= 2
    assert patches[0][0]["path"] == "/metadata/resourceVersion"
    assert patches[-1][0]["value"] != patches[0][0]["value"]
    obj = read(kube_api, namespace, "Deployment", "web")
    assert obj["spec"]["replicas"] == 3
    assert obj["metadata"]["labels"] == {"team": "blue"}
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == NEW


def test_container_moved_to_another_index_is_found_again(kube_api, namespace):
    """Between read and patch a container is inserted before ours: the name test catches it."""
    create(kube_api, namespace, "Deployment", "web", {"app": OLD})

    def insert_first_container(path):
        request(kube_api, "PATCH", path, content_type="application/json-patch+json", body=[
            {"op": "add", "path": "/spec/template/spec/containers/0",
             "value": {"name": "first", "image": "reg.example/first:1"}}])

    with RacingApiClient(kube_api, insert_first_container) as racing:
        assert apply(racing, namespace, expected_image=OLD).outcome == "applied"
    containers = read(kube_api, namespace, "Deployment", "web")["spec"]["template"]["spec"][
        "containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("first", "reg.example/first:1"), ("app", NEW)]


def test_min_update_interval_defers(kube_api, namespace):
    last = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    create(kube_api, namespace, "Deployment", "web", {"app": OLD},
           {"headwind.sh/min-update-interval": "600",
            "headwind.sh/last-update": "2030-01-01T12:00:00Z"})
    skipped_before = sample("headwind_updates_skipped_interval_total", kind="Deployment",
                            namespace=namespace)

    deferred = apply(kube_api, namespace, now=last + timedelta(seconds=100))

    assert deferred.outcome == "deferred"
    assert deferred.retry_after == pytest.approx(500)
    assert image_of(kube_api, namespace, "Deployment", "web") == OLD
    assert sample("headwind_updates_skipped_interval_total", kind="Deployment",
                  namespace=namespace) == skipped_before + 1

    later = apply(kube_api, namespace, now=last + timedelta(seconds=601))
    assert later.outcome == "applied"
    notes = read(kube_api, namespace, "Deployment", "web")["metadata"]["annotations"]
    assert notes["headwind.sh/last-update"] == "2030-01-01T12:10:01Z"


def test_default_interval_is_300_seconds(kube_api, namespace):
    now = datetime.now(UTC).replace(microsecond=0)
    create(kube_api, namespace, "Deployment", "web", {"app": OLD},
           {"headwind.sh/last-update": ur.rfc3339(now - timedelta(seconds=10))})
    result = apply(kube_api, namespace, now=now)
    assert result.outcome == "deferred" and result.retry_after == pytest.approx(290)


@pytest.mark.parametrize("last_update", [
    "2030-01-01T12:00:00Z (approved by bob)",  # what the original operator wrote
    "yesterday",
    "2999-01-01T00:00:00Z",  # far in the future: unreadable, not a freeze
])
def test_unreadable_last_update_does_not_block(kube_api, namespace, last_update):
    create(kube_api, namespace, "Deployment", "web", {"app": OLD},
           {"headwind.sh/last-update": last_update})
    assert apply(kube_api, namespace).outcome == "applied"
    notes = read(kube_api, namespace, "Deployment", "web")["metadata"]["annotations"]
    assert RFC3339_Z.fullmatch(notes["headwind.sh/last-update"])


def test_stale_expected_image_changes_nothing(kube_api, namespace):
    moved = "reg.example/team/app:1.4.0"
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    approve_as_headwind(kube_api, namespace, proposal.name)
    set_image(kube_api, namespace, moved)
    before = read(kube_api, namespace, "Deployment", "web")

    result = apply(kube_api, namespace, expected_image=OLD, update_request=proposal.name)

    assert result.outcome == "stale"
    assert moved in result.message and OLD in result.message
    after = read(kube_api, namespace, "Deployment", "web")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert ours(after) == ours(before) == DIRECT
    status = ur.get(kube_api, namespace, proposal.name)["status"]
    assert status["phase"] == "Failed" and status["message"] == result.message


def test_direct_update_that_waited_still_lands_when_it_is_an_upgrade(kube_api, namespace):
    """1.3.0 queued from 1.2.0, but a 1.2.5 landed meanwhile: 1.3.0 is still minor-newer."""
    create(kube_api, namespace, "Deployment", "web", {"app": OLD},
           {"headwind.sh/policy": "minor", "headwind.sh/min-update-interval": "0"})
    set_image(kube_api, namespace, "reg.example/team/app:1.2.5")
    assert apply(kube_api, namespace, expected_image=OLD).outcome == "applied"
    assert read(kube_api, namespace, "Deployment", "web")["spec"]["template"]["spec"][
        "containers"][0]["image"] == NEW

    set_image(kube_api, namespace, "reg.example/team/app:1.5.0")  # now it would be a downgrade
    assert apply(kube_api, namespace, expected_image=OLD).outcome == "stale"
    assert read(kube_api, namespace, "Deployment", "web")["spec"]["template"]["spec"][
        "containers"][0]["image"] == "reg.example/team/app:1.5.0"


def test_missing_container_fails_and_is_recorded(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    approve_as_headwind(kube_api, namespace, proposal.name)
    failed_before = sample("headwind_updates_failed_total", kind="Deployment",
                           namespace=namespace)

    result = apply(kube_api, namespace, container="gone", update_request=None)
    assert result.outcome == "failed" and "container gone not found" in result.message

    # The same through its UpdateRequest (whose container does exist, but was renamed since).
    request(kube_api, "PATCH", kind_of("Deployment").object_path(namespace, "web"),
            body=[{"op": "replace", "path": "/spec/template/spec/containers/0/name",
                   "value": "renamed"}], content_type="application/json-patch+json")
    result = apply(kube_api, namespace, update_request=proposal.name)

    assert result.outcome == "failed" and "container app not found" in result.message
    status = ur.get(kube_api, namespace, proposal.name)["status"]
    assert status["phase"] == "Failed" and status["message"] == result.message
    warnings = events(kube_api, namespace, "web", "ImageUpdateFailed")
    assert len(warnings) == 2 and {e["type"] for e in warnings} == {"Warning"}
    assert any("container app not found" in e["message"] for e in warnings)
    assert sample("headwind_updates_failed_total", kind="Deployment",
                  namespace=namespace) == failed_before + 2


def test_workload_gone_fails(kube_api, namespace):
    result = apply(kube_api, namespace, name="nothing-here")
    assert result.outcome == "failed" and "no longer exists" in result.message


def test_invalid_new_image_fails_before_any_write(kube_api, namespace):
    create(kube_api, namespace, "Deployment", "web", {"app": OLD})
    result = apply(kube_api, namespace, new_image="reg.example/App:1.3")
    assert result.outcome == "failed" and "must be lowercase" in result.message
    assert image_of(kube_api, namespace, "Deployment", "web") == OLD


def test_api_refusal_fails_with_the_api_message(kube_api, namespace, testbed):
    """A service account that may read but not patch: 403 is final, with the API's words."""
    create(kube_api, namespace, "Deployment", "web", {"app": OLD})
    request(kube_api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
            body={"metadata": {"name": "reader"}})
    request(kube_api, "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
            body={"metadata": {"name": "reader"}, "rules": [
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]})
    request(kube_api, "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
            body={"metadata": {"name": "reader"},
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                              "name": "reader"},
                  "subjects": [{"kind": "ServiceAccount", "name": "reader",
                                "namespace": namespace}]})
    token = request(kube_api, "POST",
                    f"/api/v1/namespaces/{namespace}/serviceaccounts/reader/token",
                    body={"spec": {"expirationSeconds": 600}})["status"]["token"]
    configuration = client.Configuration()
    configuration.host = testbed.apiserver_url
    configuration.ssl_ca_cert = testbed.ca_file
    configuration.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(configuration) as reader:
        from operator_app.kube import KubeError

        eventually(lambda: request(reader, "GET", kind_of("Deployment").object_path(
            namespace, "web")), 30, "the reader's Role in force", retry_on=(KubeError,))
        result = apply(reader, namespace)

    assert result.outcome == "failed"
    assert "forbidden" in result.message and "patch" in result.message
    assert image_of(kube_api, namespace, "Deployment", "web") == OLD


@pytest.mark.parametrize("phase", ["Rejected", "Superseded"])
def test_rejected_or_superseded_request_is_not_applied(kube_api, namespace, phase):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    ur.set_phase(kube_api, namespace, proposal.name, phase, expect_phases={"Pending"})

    result = apply(kube_api, namespace, expected_image=OLD, update_request=proposal.name)

    assert result.outcome == "stale" and phase in result.message
    assert image_of(kube_api, namespace, "Deployment", "web") == OLD
    assert ur.get(kube_api, namespace, proposal.name)["status"]["phase"] == phase


def test_request_for_another_change_is_refused(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    approve_as_headwind(kube_api, namespace, proposal.name)
    result = apply(kube_api, namespace, new_image="reg.example/team/app:9.9.9",
                   update_request=proposal.name)
    assert result.outcome == "failed" and "not this update" in result.message
    assert image_of(kube_api, namespace, "Deployment", "web") == OLD
    assert ur.get(kube_api, namespace, proposal.name)["status"]["phase"] == "Approved"


# --------------------------------------------------------------------------------------------
# The Celery task
# --------------------------------------------------------------------------------------------


def run_task(command: UpdateCommand) -> dict:
    """The task on the real worker, its result asked for (the operator never waits on it)."""
    return tasks.apply_update_task.apply_async(
        kwargs={"command": command.to_message()}, ignore_result=False).get(timeout=60)


def test_task_applies_through_a_real_worker(kube_api, namespace, celery_worker):
    obj = create(kube_api, namespace, "StatefulSet", "db", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    approve_as_headwind(kube_api, namespace, proposal.name, "dave")

    result = run_task(UpdateCommand(
        "StatefulSet", namespace, "db", "app", NEW, expected_image=OLD,
        request=proposal.name, actor="dave",
    ))

    assert result["outcome"] == "applied", result
    assert image_of(kube_api, namespace, "StatefulSet", "db") == NEW
    assert ur.get(kube_api, namespace, proposal.name)["status"]["phase"] in APPLIED
    again = run_task(UpdateCommand(
        kind="StatefulSet", namespace=namespace, name="db", container="app", new_image=NEW,
    ))
    assert again == {"outcome": "already",
                     "message": f"StatefulSet {namespace}/db container app already runs {NEW}"}


def test_deferred_task_is_retried_when_the_interval_has_passed(kube_api, namespace,
                                                               celery_worker):
    last = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=57)
    create(kube_api, namespace, "Deployment", "web", {"app": OLD},
           {"headwind.sh/min-update-interval": "60",
            "headwind.sh/last-update": ur.rfc3339(last)})
    started = time.monotonic()

    result = run_task(UpdateCommand("Deployment", namespace, "web", "app", NEW))

    assert result["outcome"] == "applied", result
    assert time.monotonic() - started >= 1.5
    assert datetime.now(UTC) - last >= timedelta(seconds=60)
    assert image_of(kube_api, namespace, "Deployment", "web") == NEW


def test_unreachable_api_server_is_retried_then_failed(testbed, settings, tmp_path):
    """Connection refused is transient: retried TRANSIENT_RETRIES times, then reported failed."""
    config = yaml.safe_load(Path(testbed.kubeconfig).read_text())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{dead_port}"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    settings.KUBECONFIG = str(dead)

    outcome = tasks.apply_update_task.apply(kwargs={"command": UpdateCommand(
        kind="Deployment", namespace="nowhere", name="web", container="app", new_image=NEW,
    ).to_message()}).get()

    assert outcome["outcome"] == "failed"
    assert outcome["message"].startswith(f"gave up after {tasks.TRANSIENT_RETRIES + 1} attempts")


def test_is_transient():
    from operator_app.kube import ClusterUnreachable, KubeError

    assert is_transient(KubeError(503, "ServiceUnavailable", "x"))
    assert is_transient(KubeError(429, "TooManyRequests", "x"))
    assert is_transient(ClusterUnreachable("connection refused"))
    assert is_transient(WorkloadContention("busy"))
    assert not is_transient(ConnectionRefusedError())  # kube.request never lets one through
    assert not is_transient(KubeError(403, "Forbidden", "x"))
    assert not is_transient(KubeError(422, "Invalid", "x"))


def test_worker_metrics_hook(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.HEADWIND = dataclasses.replace(settings.HEADWIND, worker_metrics_port=port)
    tasks.serve_worker_metrics()
    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "headwind_updates_applied_total" in body

    tasks.serve_worker_metrics()  # the port is taken now: logged, not raised
    settings.HEADWIND = dataclasses.replace(settings.HEADWIND, worker_metrics_port=0)
    tasks.serve_worker_metrics()


@pytest.mark.parametrize(("annotations", "why"), [
    ({"headwind.sh/policy": "none"}, "policy is now none"),
    ({"headwind.sh/require-approval": "true"}, "now requires approval"),
    ({"headwind.sh/images": "sidecar"}, "no longer includes app"),
])
def test_direct_update_honours_an_opt_out_made_after_it_was_queued(kube_api, namespace,
                                                                   annotations, why):
    create(kube_api, namespace, "Deployment", "web", {"app": OLD})
    request(kube_api, "PATCH", kind_of("Deployment").object_path(namespace, "web"),
            body={"metadata": {"annotations": annotations}},
            content_type="application/merge-patch+json")
    result = apply(kube_api, namespace, expected_image=OLD)
    assert result.outcome == "stale" and why in result.message
    assert image_of(kube_api, namespace, "Deployment", "web") == OLD
