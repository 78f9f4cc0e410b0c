"""UpdateRequest proposals on the real API server: naming, idempotence, supersede, ownership."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from operator_app import proposals as ur
from operator_app.core.policy import PolicySpec
from operator_app.kube import KubeError, request
from operator_app.workloads import kind_of, project
from tests.waiting import eventually

pytestmark = pytest.mark.testbed

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
POLICY = {"headwind.sh/policy": "minor", "headwind.sh/approval-timeout": "3600",
          "headwind.sh/approvals-required": "2"}


def pod_template(name: str, containers: dict[str, str]) -> dict:
    return {
        "metadata": {"labels": {"app": name[:63]}},
        "spec": {"containers": [{"name": c, "image": i} for c, i in containers.items()]},
    }


def manifest(kind: str, name: str, containers: dict[str, str],
             annotations: dict[str, str] | None = None) -> dict:
    template = pod_template(name, containers)
    selector = {"matchLabels": {"app": name[:63]}}
    if kind == "Deployment":
        spec = {"replicas": 1, "selector": selector, "template": template}
    elif kind == "StatefulSet":
        spec = {"replicas": 1, "serviceName": name, "selector": selector, "template": template}
    elif kind == "DaemonSet":
        spec = {"selector": selector, "template": template}
    else:
        template["spec"]["restartPolicy"] = "Never"
        spec = {"schedule": "*/5 * * * *", "suspend": True,
                "jobTemplate": {"spec": {"template": template}}}
    meta: dict = {"name": name}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": kind_of(kind).api_version, "kind": kind, "metadata": meta, "spec": spec}


def create(api, namespace: str, kind: str, name: str, containers: dict[str, str],
           annotations: dict[str, str] | None = None) -> dict:
    body = manifest(kind, name, containers, annotations)
    return request(api, "POST", kind_of(kind).collection_path(namespace), body=body)


def propose(api, obj: dict, new_image: str, container: str = "app", **overrides):
    kind = kind_of(obj["kind"])
    workload = project(kind, obj)
    current = next(c.image for c in workload.containers if c.name == container)
    arguments = dict(
        kind=kind, workload=workload, container=container, current_image=current,
        new_image=new_image, new_digest=None,
        spec=PolicySpec.from_annotations(workload.annotation_map),
        reason=f"{current} → {new_image}", source="webhook",
    )
    arguments.update(overrides)
    return ur.propose(api, **arguments)


def all_requests(api, namespace: str) -> list[dict]:
    return request(api, "GET", f"/apis/headwind.sh/v1alpha1/namespaces/{namespace}/updaterequests"
                   )["items"]


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_propose_twice_makes_one_object_with_full_spec(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    created_before = sample("headwind_update_requests_created_total",
                            kind="Deployment", namespace=namespace)
    first = propose(kube_api, obj, "reg.example/app:1.3.0",
                    new_digest="sha256:" + "a" * 64)
    again = propose(kube_api, obj, "reg.example/app:1.3.0",
                    new_digest="sha256:" + "a" * 64)

    assert first.created and first.skipped_reason is None and first.superseded == []
    assert not again.created and again.name == first.name and again.skipped_reason is None
    items = all_requests(kube_api, namespace)
    assert [i["metadata"]["name"] for i in items] == [first.name]
    assert sample("headwind_update_requests_created_total",
                  kind="Deployment", namespace=namespace) == created_before + 1

    got = ur.get(kube_api, namespace, first.name)
    spec = got["spec"]
    assert spec["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                 "namespace": namespace, "name": "web",
                                 "uid": obj["metadata"]["uid"]}
    assert spec["containerName"] == "app"
    assert spec["currentImage"] == "reg.example/app:1.2.0"
    assert spec["newImage"] == "reg.example/app:1.3.0"
    assert spec["newDigest"] == "sha256:" + "a" * 64
    assert spec["policy"] == "minor" and spec["source"] == "webhook"
    assert spec["approvalsRequired"] == 2
    expires = datetime.fromisoformat(spec["expiresAt"])
    assert abs((expires - datetime.now(UTC) - timedelta(seconds=3600)).total_seconds()) < 60
    assert got["status"]["phase"] == "Pending" and got["status"]["lastUpdated"]

    labels = got["metadata"]["labels"]
    assert labels["headwind.sh/target-kind"] == "Deployment"
    assert labels["headwind.sh/target-name"] == "web"
    assert labels["headwind.sh/container"] == "app"
    assert labels["headwind.sh/target"] == ur.target_key("Deployment", namespace, "web", "app")


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet", "CronJob"])
def test_propose_for_other_kinds(kube_api, namespace, kind):
    obj = create(kube_api, namespace, kind, "job", {"app": "reg.example/app:1.2.0"}, POLICY)
    proposal = propose(kube_api, obj, "reg.example/app:1.5.0")
    got = ur.get(kube_api, namespace, proposal.name)
    assert proposal.created
    assert got["spec"]["targetRef"]["kind"] == kind
    assert got["spec"]["targetRef"]["apiVersion"] == kind_of(kind).api_version
    assert got["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]


def test_names_are_dns_safe_and_distinct(kube_api, namespace):
    long_name = "a-very-long-workload-name-" + "x" * 100
    obj = create(kube_api, namespace, "Deployment", long_name,
                 {"app": "reg.example/app:1.2.0", "side": "reg.example/app:1.2.0"},
                 {"headwind.sh/policy": "force"})
    names = set()
    for container, image in [("app", "reg.example/app:V1.2_RC+build"),
                             ("app", "reg.example/app:V1.2_RC"),
                             ("side", "reg.example/app:V1.2_RC"),
                             ("app", "reg.example/app:1.3.0@sha256:" + "b" * 64),
                             ("app", "reg.example/app:1.3.0")]:
        proposal = propose(kube_api, obj, image, container=container)
        assert DNS_LABEL.fullmatch(proposal.name), proposal.name
        assert len(proposal.name) <= 63
        names.add(proposal.name)
    assert len(names) == 5
    assert "v1-2-rc-build" in ur.request_name("Deployment", namespace, "web", "app",
                                              "reg.example/app:V1.2_RC+build")
    # The label keeps a readable (cut) workload name; the hash label is the exact key.
    item = all_requests(kube_api, namespace)[0]
    assert len(item["metadata"]["labels"]["headwind.sh/target-name"]) <= 63
    # The same slug in another namespace or for another kind is still a different name.
    assert ur.request_name("Deployment", "a", "web", "app", "x:1") != ur.request_name(
        "Deployment", "b", "web", "app", "x:1")
    assert ur.request_name("Deployment", "a", "web", "app", "x:1") != ur.request_name(
        "StatefulSet", "a", "web", "app", "x:1")


@pytest.mark.parametrize("final_phase", ["Rejected", "Completed"])
def test_rejected_or_completed_request_is_never_recreated(kube_api, namespace, final_phase):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    first = propose(kube_api, obj, "reg.example/app:1.3.0")
    ur.set_phase(kube_api, namespace, first.name, final_phase, message="by a person",
                 expect_phases={"Pending"})
    uid = ur.get(kube_api, namespace, first.name)["metadata"]["uid"]

    again = propose(kube_api, obj, "reg.example/app:1.3.0")

    assert not again.created and again.name == first.name
    got = ur.get(kube_api, namespace, first.name)
    assert got["metadata"]["uid"] == uid
    assert got["status"]["phase"] == final_phase
    assert got["status"]["message"] == "by a person"
    assert len(all_requests(kube_api, namespace)) == 1


@pytest.mark.parametrize("final_phase", ["Expired", "Failed"])
def test_expired_or_failed_request_does_not_block_its_target(kube_api, namespace, final_phase):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    first = propose(kube_api, obj, "reg.example/app:1.3.0")
    ur.set_phase(kube_api, namespace, first.name, final_phase, expect_phases={"Pending"})
    old_uid = ur.get(kube_api, namespace, first.name)["metadata"]["uid"]

    again = propose(kube_api, obj, "reg.example/app:1.3.0")

    assert again.created and again.name == first.name
    renewed = ur.get(kube_api, namespace, first.name)
    assert renewed["metadata"]["uid"] != old_uid
    assert renewed["status"]["phase"] == "Pending"
    assert len(all_requests(kube_api, namespace)) == 1


def test_pending_request_from_a_moved_starting_point_is_renewed(kube_api, namespace):
    """1.2.0 → 1.4.0 is pending, then the workload reaches 1.3.0 another way: approving the old
    request could only be refused as stale, so proposing 1.3.0 → 1.4.0 replaces it."""
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    first = propose(kube_api, obj, "reg.example/app:1.4.0")
    moved = request(kube_api, "PATCH", kind_of("Deployment").object_path(namespace, "web"),
                    body={"spec": {"template": {"spec": {"containers": [
                        {"name": "app", "image": "reg.example/app:1.3.0"}]}}}},
                    content_type="application/strategic-merge-patch+json")

    again = propose(kube_api, moved, "reg.example/app:1.4.0")
    assert again.created and again.name == first.name
    assert ur.get(kube_api, namespace, first.name)["spec"]["currentImage"] == (
        "reg.example/app:1.3.0")
    same = propose(kube_api, moved, "reg.example/app:1.4.0")  # and now it is stable again
    assert not same.created


def test_newer_proposal_supersedes_older_pending(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    superseded_before = sample("headwind_update_requests_superseded_total",
                               kind="Deployment", namespace=namespace)
    older = propose(kube_api, obj, "reg.example/app:1.3.0")
    newer = propose(kube_api, obj, "reg.example/app:1.4.0")

    assert newer.created and newer.superseded == [older.name]
    old = ur.get(kube_api, namespace, older.name)
    assert old["status"]["phase"] == "Superseded"
    assert old["status"]["supersededBy"] == newer.name
    assert ur.get(kube_api, namespace, newer.name)["status"]["phase"] == "Pending"
    assert sample("headwind_update_requests_superseded_total", kind="Deployment",
                  namespace=namespace) == superseded_before + 1

    # Another workload with the same container name is a different target: nothing superseded.
    other = create(kube_api, namespace, "Deployment", "other", {"app": "reg.example/app:1.2.0"},
                   POLICY)
    assert propose(kube_api, other, "reg.example/app:1.5.0").superseded == []
    assert ur.get(kube_api, namespace, newer.name)["status"]["phase"] == "Pending"


def test_older_proposal_after_newer_pending_is_skipped(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    newer = propose(kube_api, obj, "reg.example/app:1.4.0")
    older = propose(kube_api, obj, "reg.example/app:1.3.0")
    same_version = propose(kube_api, obj, "reg.example/app:v1.4.0")

    assert not older.created and newer.name in older.skipped_reason
    assert "newer" in older.skipped_reason
    assert not same_version.created and "same" in same_version.skipped_reason
    assert [i["metadata"]["name"] for i in all_requests(kube_api, namespace)] == [newer.name]
    assert ur.get(kube_api, namespace, newer.name)["status"]["phase"] == "Pending"


def test_approved_older_request_is_kept_and_blocks_nothing_newer(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    approved = propose(kube_api, obj, "reg.example/app:1.3.0")
    approve_as_headwind(kube_api, namespace, approved.name, "alice", "bob")

    newer = propose(kube_api, obj, "reg.example/app:1.4.0")
    older = propose(kube_api, obj, "reg.example/app:1.2.5")

    assert newer.created and newer.superseded == []
    assert ur.get(kube_api, namespace, approved.name)["status"]["phase"] == "Approved"
    assert not older.created and older.skipped_reason


def test_set_phase_refuses_an_unexpected_phase(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    proposal = propose(kube_api, obj, "reg.example/app:1.3.0")
    ur.set_phase(kube_api, namespace, proposal.name, "Rejected", expect_phases={"Pending"},
                 extra_status={"rejectedBy": "alice"})

    with pytest.raises(ur.PhaseConflict, match="is Rejected; expected one of: Approved, Pending"):
        ur.set_phase(kube_api, namespace, proposal.name, "Approved",
                     expect_phases={"Pending", "Approved"})
    got = ur.get(kube_api, namespace, proposal.name)
    assert got["status"]["phase"] == "Rejected" and got["status"]["rejectedBy"] == "alice"


def test_status_write_with_stale_resource_version_is_refused_by_the_server(kube_api, namespace):
    """The guarantee set_phase relies on: a status PUT carrying an old resourceVersion is a 409."""
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    proposal = propose(kube_api, obj, "reg.example/app:1.3.0")
    stale = ur.get(kube_api, namespace, proposal.name)
    approve_as_headwind(kube_api, namespace, proposal.name, "a", "b")
    stale["status"] = {"phase": "Rejected"}
    with pytest.raises(KubeError) as conflict:
        request(kube_api, "PUT",
                f"/apis/headwind.sh/v1alpha1/namespaces/{namespace}/updaterequests/"
                f"{proposal.name}/status", body=stale)
    assert conflict.value.status == 409
    assert ur.get(kube_api, namespace, proposal.name)["status"]["phase"] == "Approved"


def test_spec_is_immutable(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    proposal = propose(kube_api, obj, "reg.example/app:1.3.0")
    with pytest.raises(KubeError) as refused:
        request(kube_api, "PATCH",
                f"/apis/headwind.sh/v1alpha1/namespaces/{namespace}/updaterequests/"
                f"{proposal.name}", body={"spec": {"newImage": "evil.example/app:9"}},
                content_type="application/merge-patch+json")
    assert refused.value.status == 422 and "immutable" in refused.value.message


def test_deleting_the_workload_garbage_collects_its_requests(kube_api, namespace):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": "reg.example/app:1.2.0"},
                 POLICY)
    proposal = propose(kube_api, obj, "reg.example/app:1.3.0")
    owner = ur.get(kube_api, namespace, proposal.name)["metadata"]["ownerReferences"]
    assert owner == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                      "uid": obj["metadata"]["uid"], "controller": False,
                      "blockOwnerDeletion": False}]

    request(kube_api, "DELETE", kind_of("Deployment").object_path(namespace, "web"),
            query={"propagationPolicy": "Background"})

    def gone() -> bool:
        try:
            ur.get(kube_api, namespace, proposal.name)
        except KubeError as exc:
            assert exc.status == 404
            return True
        return False

    # 60 s: the garbage collector also has to discover the CRD.
    eventually(gone, 60, "the UpdateRequest garbage-collected with its Deployment", interval=0.5)


def approve_as_headwind(api, namespace: str, name: str, *users: str) -> dict:
    """What Headwind's web does once its own checks passed: approval entries it signs, and the
    phase Approved (the apply task applies only proven approvals)."""
    from operator_app import attribution

    def change(obj: dict) -> dict:
        stamp = ur.rfc3339(datetime.now(UTC))
        status = dict(obj.get("status") or {})
        status.update(
            approvals=[attribution.sign_approval(obj, {"user": user, "at": stamp})
                       for user in users or ("alice",)],
            phase="Approved", approvedBy=", ".join(users or ("alice",)), approvedAt=stamp)
        return status

    return ur.update_status(api, namespace, name, change)
