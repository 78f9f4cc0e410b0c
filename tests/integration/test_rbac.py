"""The shipped RBAC (deploy/manifests/rbac.yaml) is enough for everything the operator, the
worker and the approvals API do — checked with a real ServiceAccount token, not the admin."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from operator_app import apply, kube, proposals
from operator_app.cache import Informer, WorkloadCache
from operator_app.core.policy import PolicySpec
from operator_app.leader import LeaderElector
from operator_app.workloads import DEPLOYMENT, KINDS, project
from registry.credentials import CredentialStore

from .test_proposals import approve_as_headwind

pytestmark = pytest.mark.testbed

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "manifests" / "rbac.yaml"
PATHS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
}


@pytest.fixture
def headwind_api(kube_api, namespace, testbed):
    """An ApiClient authenticated as the headwind ServiceAccount bound by rbac.yaml."""
    text = RBAC.read_text().replace("headwind-system", namespace)
    suffix = namespace[-6:]
    for doc in yaml.safe_load_all(text):
        if doc["kind"].startswith("Cluster"):  # cluster-wide names must not collide
            doc["metadata"]["name"] += f"-{suffix}"
            if doc["kind"] == "ClusterRoleBinding":
                doc["roleRef"]["name"] += f"-{suffix}"
        kube.request(kube_api, "POST", PATHS[doc["kind"]].format(ns=namespace), body=doc)
    token = client.CoreV1Api(kube_api).create_namespaced_service_account_token(
        "headwind", namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    config = client.Configuration()
    config.host = testbed.apiserver_url
    config.ssl_ca_cert = testbed.ca_file
    config.api_key = {"authorization": f"Bearer {token}"}
    api = client.ApiClient(config)
    yield api
    api.close()
    for kind in ("ClusterRoleBinding", "ClusterRole"):
        kube.request(kube_api, "DELETE", f"{PATHS[kind]}/headwind-{suffix}")


def test_operator_and_worker_work_with_the_shipped_rbac(headwind_api, kube_api, namespace,
                                                        testbed):
    # Not a cluster admin: the token cannot read what it was not given.
    with pytest.raises(kube.KubeError) as refused:
        kube.request(headwind_api, "GET", "/api/v1/namespaces/kube-system/configmaps")
    assert refused.value.status == 403

    auth = base64.b64encode(b"u:p").decode()
    secret = {"auths": {"registry.example.com": {"auth": auth}}}
    client.CoreV1Api(kube_api).create_namespaced_secret(namespace, {
        "metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(secret).encode()).decode()}})
    image = "registry.example.com/team/app:1.2.0"
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "annotations": {"headwind.sh/policy": "minor",
                                                    "headwind.sh/min-update-interval": "0"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "app"}},
                 "template": {"metadata": {"labels": {"app": "app"}}, "spec": {
                     "imagePullSecrets": [{"name": "pull"}],
                     "containers": [{"name": "app", "image": image}]}}},
    }
    kube.request(kube_api, "POST", DEPLOYMENT.collection_path(namespace), body=deployment)

    # Caches: list and watch every kind cluster-wide.
    stop = threading.Event()
    cache = WorkloadCache()
    informers = [Informer(headwind_api, kind, cache, stop) for kind in KINDS.values()]
    for informer in informers:
        informer.watch_timeout = 2
        informer.start()
    try:
        assert all(i.synced.wait(15) for i in informers)
        assert cache.get(("Deployment", namespace, "app")) is not None
    finally:
        stop.set()

    # Leader election in its own namespace.
    elector = LeaderElector(headwind_api, namespace, stop=threading.Event())
    assert elector.try_acquire_or_renew()

    # Registry credentials from the pull secret.
    workload = project(DEPLOYMENT, kube.request(kube_api, "GET",
                                                DEPLOYMENT.object_path(namespace, "app")))
    (found,) = CredentialStore(headwind_api).for_workload(workload, "registry.example.com/team/app")
    assert found.username == "u"

    # An UpdateRequest, then the apply (patch, annotations, Event, request status).
    proposal = proposals.propose(
        headwind_api, kind=DEPLOYMENT, workload=workload, container="app", current_image=image,
        new_image="registry.example.com/team/app:1.3.0", new_digest=None,
        spec=PolicySpec.from_annotations(workload.annotation_map), reason="test",
        source="webhook")
    assert proposal.created
    approve_as_headwind(headwind_api, namespace, proposal.name, "rbac-test")  # as the web does
    result = apply.apply_update(headwind_api, apply.UpdateCommand(
        kind="Deployment", namespace=namespace, name="app", container="app",
        new_image="registry.example.com/team/app:1.3.0", expected_image=image,
        request=proposal.name, actor="rbac-test"))
    assert result.outcome == "applied", result.message
    status = proposals.get(headwind_api, namespace, proposal.name)["status"]
    assert status["phase"] in ("Completed", "RolledOut")

    # The approvals API's reviews.
    review = kube.request(headwind_api, "POST",
                          "/apis/authorization.k8s.io/v1/subjectaccessreviews", body={
                              "spec": {"user": "someone", "resourceAttributes": {
                                  "namespace": namespace, "verb": "patch", "group": "apps",
                                  "resource": "deployments", "name": "app"}}})
    assert review["status"]["allowed"] is False
    kube.request(headwind_api, "POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                 body={"spec": {"token": "not-a-token"}})
