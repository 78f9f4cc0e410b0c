"""Headwind's admission policy (deploy/admission/updaterequests.yaml) on the real API server:
who may propose, approve and change the phase of an UpdateRequest through the Kubernetes API.

The users are real ServiceAccounts with their own Roles; the API server proves who they are.
"""

from __future__ import annotations

import pytest

from operator_app import attribution
from operator_app import proposals as ur
from operator_app.kube import KubeError, request
from tests.waiting import eventually

from .test_proposals import create, propose

pytestmark = pytest.mark.testbed

OLD = "reg.example/team/app:1.2.0"
NEW = "reg.example/team/app:1.3.0"
UR_RULES = [
    {"apiGroups": ["headwind.sh"], "resources": ["updaterequests"],
     "verbs": ["get", "list", "create", "update", "patch"]},
    {"apiGroups": ["headwind.sh"], "resources": ["updaterequests/status"],
     "verbs": ["get", "update", "patch"]},
]
PATCH_DEPLOYMENTS = {"apiGroups": ["apps"], "resources": ["deployments"],
                     "verbs": ["get", "patch"]}


def collection(namespace: str) -> str:
    return f"/apis/headwind.sh/v1alpha1/namespaces/{namespace}/updaterequests"


def forged_request(namespace: str, image: str) -> dict:
    return {"apiVersion": "headwind.sh/v1alpha1", "kind": "UpdateRequest",
            "metadata": {"name": "forged", "namespace": namespace},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "namespace": namespace, "name": "web"},
                     "containerName": "app", "currentImage": OLD, "newImage": image,
                     "policy": "minor"}}


def write_status(api, namespace: str, name: str, change) -> dict:
    obj = ur.get(api, namespace, name)
    obj["status"] = change(dict(obj.get("status") or {}))
    return request(api, "PUT", f"{collection(namespace)}/{name}/status", body=obj)


def refused(call) -> KubeError:
    with pytest.raises(KubeError) as info:
        call()
    assert info.value.status in (403, 422), info.value
    return info.value


def test_without_patch_rights_nobody_can_propose(kube_api, namespace, kube_user):
    create(kube_api, namespace, "Deployment", "web", {"app": OLD}, {"headwind.sh/policy": "minor"})
    intruder = kube_user("intruder", UR_RULES)  # may write UpdateRequests, not Deployments
    error = refused(lambda: request(intruder.api, "POST", collection(namespace),
                                    body=forged_request(namespace, "reg.example/team/app:6.6.6")))
    assert "may propose or approve updates" in error.message


def test_someone_who_may_patch_the_target_may_propose(kube_api, namespace, kube_user):
    create(kube_api, namespace, "Deployment", "web", {"app": OLD}, {"headwind.sh/policy": "minor"})
    owner = kube_user("owner", [*UR_RULES, PATCH_DEPLOYMENTS])
    made = request(owner.api, "POST", collection(namespace), body=forged_request(namespace, NEW))
    assert made["metadata"]["name"] == "forged"
    assert not attribution.request_signed(made)  # not Headwind's: only the policy vouches for it


def test_only_headwind_sets_phases(kube_api, namespace, kube_user):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    owner = kube_user("owner", [*UR_RULES, PATCH_DEPLOYMENTS])
    intruder = kube_user("intruder", UR_RULES)

    for writer in (owner, intruder):
        error = refused(lambda w=writer: write_status(
            w.api, namespace, proposal.name,
            lambda status: {**status, "phase": "Approved", "approvedBy": "nobody"}))
        assert "only Headwind sets" in error.message or "may propose or approve" in error.message
    assert ur.phase_of(ur.get(kube_api, namespace, proposal.name)) == ur.Phase.PENDING


def test_an_approval_names_its_author_and_earlier_ones_stay(kube_api, namespace, kube_user):
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor", "headwind.sh/approvals-required": "2"})
    proposal = propose(kube_api, obj, NEW)
    owner = kube_user("owner", [*UR_RULES, PATCH_DEPLOYMENTS])
    intruder = kube_user("intruder", UR_RULES)
    at = "2026-11-27T10:00:00Z"

    def add(user, name):
        return write_status(user.api, namespace, proposal.name, lambda status: {
            **status, "approvals": [*status.get("approvals", []), {"user": name, "at": at}]})

    error = refused(lambda: add(owner, "alice"))  # forging another user's name
    assert "must name its author" in error.message
    refused(lambda: add(intruder, intruder.username))  # own name, but no right on the target
    written = add(owner, owner.username)
    assert [a["user"] for a in written["status"]["approvals"]] == [owner.username]

    # Earlier approvals stay as they are: nobody but Headwind removes or rewrites one.
    second = kube_user("second", [*UR_RULES, PATCH_DEPLOYMENTS])
    refused(lambda: write_status(second.api, namespace, proposal.name,
                                 lambda status: {**status, "approvals": [
                                     {"user": second.username, "at": at}]}))
    both = add(second, second.username)
    assert [a["user"] for a in both["status"]["approvals"]] == [owner.username, second.username]


def test_headwind_itself_is_not_limited(kube_api, namespace):
    """The operator's identity (here the testbed admin, which holds every verb including
    'operate') writes phases and approval entries for the people it checked itself."""
    obj = create(kube_api, namespace, "Deployment", "web", {"app": OLD},
                 {"headwind.sh/policy": "minor"})
    proposal = propose(kube_api, obj, NEW)
    updated = ur.set_phase(kube_api, namespace, proposal.name, ur.Phase.REJECTED,
                           message="by Headwind", expect_phases={ur.Phase.PENDING})
    assert updated["status"]["phase"] == "Rejected"


def test_the_operator_sees_whether_the_policy_is_installed(kube_api, namespace, kube_user,
                                                          admission_policy_absent):
    checker = attribution.AdmissionPolicy(ttl=0)
    assert not checker.installed(kube_api)
    # And the API server no longer enforces it (what a cluster without the policy allows).
    create(kube_api, namespace, "Deployment", "web", {"app": OLD}, {"headwind.sh/policy": "minor"})
    intruder = kube_user("intruder", UR_RULES)

    def forged_accepted() -> bool:
        try:
            request(intruder.api, "POST", collection(namespace),
                    body=forged_request(namespace, "reg.example/team/app:6.6.6"))
        except KubeError:
            return False
        return True

    eventually(forged_accepted, timeout=20, what="the policy no longer enforced")


def test_the_installed_policy_is_recognised(kube_api):
    assert attribution.AdmissionPolicy(ttl=0).installed(kube_api)
