"""The foundation: everything later issues rely on really works on the testbed."""

from __future__ import annotations

import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.waiting import eventually

pytestmark = pytest.mark.testbed


def deployment(name: str, image: str, replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


def test_create_deployment_and_read_it_back(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("web", "nginx:1.2.3"))
    read = apps.read_namespaced_deployment("web", namespace)
    assert read.spec.template.spec.containers[0].image == "nginx:1.2.3"
    assert read.metadata.uid


def test_server_reports_the_built_version(kube_api, testbed):
    assert client.VersionApi(kube_api).get_code().git_version == f"v{testbed.kubernetes_version}"


def test_rbac_refuses_a_service_account_without_rights(kube_api, namespace, testbed):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    config = client.Configuration()
    config.host = testbed.apiserver_url
    config.ssl_ca_cert = testbed.ca_file
    config.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(config) as as_nobody:
        with pytest.raises(ApiException) as refused:
            client.AppsV1Api(as_nobody).list_namespaced_deployment(namespace)
        assert refused.value.status == 403

        # Granting the right makes the same call succeed: the refusal was RBAC, not a broken token.
        rbac = client.RbacAuthorizationV1Api(kube_api)
        rbac.create_namespaced_role(namespace, {
            "metadata": {"name": "read-deployments"},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"],
                       "verbs": ["list"]}],
        })
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": "nobody-reads"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "read-deployments"},
            "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}],
        })
        def allowed() -> bool:
            try:
                client.AppsV1Api(as_nobody).list_namespaced_deployment(namespace)
            except ApiException as exc:
                if exc.status != 403:
                    raise
                return False  # the authorizer's cache has not seen the binding yet
            return True

        eventually(allowed, 10, "the RoleBinding taking effect", interval=0.2)


def test_deployment_rolls_out_to_ready_pods(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("api", "example/api:1.0.0", 2))
    wait_rolled_out(apps, namespace, "api", 2)
    apps.patch_namespaced_deployment("api", namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "api", "image": "example/api:1.1.0"}]}}}})
    wait_rolled_out(apps, namespace, "api", 2)
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector="app=api")
    running = [p for p in pods.items if p.metadata.deletion_timestamp is None]
    assert {p.spec.containers[0].image for p in running} == {"example/api:1.1.0"}
    assert all(p.spec.node_name == "kwok-node-0" for p in running)
    assert all(
        any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
        for p in running
    )


def wait_rolled_out(apps, namespace: str, name: str, replicas: int, timeout: float = 60) -> None:
    def rolled_out() -> bool:
        dep = apps.read_namespaced_deployment(name, namespace)
        status = dep.status
        return (
            status.observed_generation == dep.metadata.generation
            and status.updated_replicas == replicas
            and status.ready_replicas == replicas
            and status.available_replicas == replicas
            and (status.replicas or 0) == replicas
        )

    eventually(rolled_out, timeout, lambda: f"{namespace}/{name} rolled out (status: "
               f"{apps.read_namespaced_deployment(name, namespace).status})", interval=0.25)


def test_pushed_image_is_listed_with_its_digest(registry_pusher, namespace):
    repository = f"{namespace}/app"
    digest = registry_pusher.push_image(repository, "1.2.3")
    assert digest.startswith("sha256:") and len(digest) == 71
    assert registry_pusher.list_tags(repository) == ["1.2.3"]
    assert registry_pusher.head_digest(repository, "1.2.3") == digest
    # Another content under the same tag moves the tag to another digest.
    assert registry_pusher.push_image(repository, "1.2.3", content="rebuild") != digest


def test_registry_requires_credentials(testbed):
    assert requests.get(f"http://{testbed.registry}/v2/", timeout=5).status_code == 401
    wrong = requests.get(f"http://{testbed.registry}/v2/", auth=("headwind", "wrong"), timeout=5)
    assert wrong.status_code == 401


def test_bearer_token_registry_round_trip(token_registry_pusher, namespace):
    digest = token_registry_pusher.push_image(f"{namespace}/tok", "2.0.0")
    assert token_registry_pusher.head_digest(f"{namespace}/tok", "2.0.0") == digest


def test_registry_notification_reaches_a_local_endpoint(push_image, notification_sink, namespace,
                                                        testbed):
    repository = f"{namespace}/notified"
    digest = push_image(repository, "3.1.4")

    def is_our_push(note) -> bool:
        return any(
            e["action"] == "push" and e["target"]["repository"] == repository
            and e["target"].get("tag") == "3.1.4"
            for e in note.json()["events"]
        )

    note = notification_sink.wait_for(is_our_push)
    event = next(e for e in note.json()["events"] if e["target"]["repository"] == repository)
    assert event["target"]["digest"] == digest
    assert event["request"]["host"] == testbed.registry
    assert note.headers["Authorization"] == f"Bearer {testbed.notify_token}"


FLUX_HELM = ("helm.toolkit.fluxcd.io", "v2", "helmreleases")
FLUX_HELM_REPOSITORY = ("source.toolkit.fluxcd.io", "v1", "helmrepositories")
FLUX_OCI_REPOSITORY = ("source.toolkit.fluxcd.io", "v1", "ocirepositories")


def _create(kube_api, namespace: str, kind: tuple[str, str, str], body: dict) -> dict:
    group, version, plural = kind
    body = {"apiVersion": f"{group}/{version}", **body}
    return client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        group, version, namespace, plural, body, field_validation="Strict")


def _refusal(kube_api, namespace: str, kind: tuple[str, str, str], body: dict,
             status: int = 422) -> str:
    with pytest.raises(ApiException) as refused:
        _create(kube_api, namespace, kind, body)
    assert refused.value.status == status, refused.value.body
    return refused.value.body


def test_flux_crds_are_served_and_validate(kube_api, namespace):
    """Flux's real CRDs (tests/testbed/flux-crds/) are applied at `up`: HelmRelease v2,
    HelmRepository and OCIRepository v1 objects are stored, and the server refuses what Flux's
    schema (OpenAPI and CEL rules) refuses."""
    repository = _create(kube_api, namespace, FLUX_HELM_REPOSITORY, {
        "kind": "HelmRepository", "metadata": {"name": "charts"},
        "spec": {"url": "http://127.0.0.1:1/public/charts", "interval": "5m"}})
    assert repository["metadata"]["uid"] and repository["spec"]["url"].endswith("/charts")
    oci = _create(kube_api, namespace, FLUX_OCI_REPOSITORY, {
        "kind": "OCIRepository", "metadata": {"name": "demo"},
        "spec": {"url": "oci://127.0.0.1:1/charts/demo", "interval": "5m",
                 "ref": {"semver": ">=1.0.0"},
                 "layerSelector": {"mediaType":
                                   "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                                   "operation": "copy"}}})
    assert oci["spec"]["ref"] == {"semver": ">=1.0.0"}
    from_repository = _create(kube_api, namespace, FLUX_HELM, {
        "kind": "HelmRelease", "metadata": {"name": "from-repository"},
        "spec": {"interval": "10m", "chart": {"spec": {
            "chart": "demo", "version": "1.2.3",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}})
    assert from_repository["spec"]["chart"]["spec"]["version"] == "1.2.3"
    from_oci = _create(kube_api, namespace, FLUX_HELM, {
        "kind": "HelmRelease", "metadata": {"name": "from-oci"},
        "spec": {"interval": "10m", "chartRef": {"kind": "OCIRepository", "name": "demo"}}})
    assert from_oci["spec"]["chartRef"]["kind"] == "OCIRepository"

    # The CEL rule on HelmRelease.spec: exactly one of chart and chartRef.
    neither = _refusal(kube_api, namespace, FLUX_HELM, {
        "kind": "HelmRelease", "metadata": {"name": "neither"}, "spec": {"interval": "10m"}})
    assert "either chart or chartRef must be set" in neither
    both = _refusal(kube_api, namespace, FLUX_HELM, {
        "kind": "HelmRelease", "metadata": {"name": "both"},
        "spec": {"interval": "10m", "chartRef": {"kind": "OCIRepository", "name": "demo"},
                 "chart": {"spec": {"chart": "demo",
                                    "sourceRef": {"kind": "HelmRepository", "name": "c"}}}}})
    assert "either chart or chartRef must be set" in both
    # OpenAPI: enums, patterns, required fields, and no unknown fields (structural schemas).
    wrong_kind = _refusal(kube_api, namespace, FLUX_HELM, {
        "kind": "HelmRelease", "metadata": {"name": "wrong-kind"},
        "spec": {"interval": "10m", "chartRef": {"kind": "HelmRepository", "name": "demo"}}})
    assert "spec.chartRef.kind" in wrong_kind and "Unsupported value" in wrong_kind
    assert "spec.url" in _refusal(kube_api, namespace, FLUX_HELM_REPOSITORY, {
        "kind": "HelmRepository", "metadata": {"name": "ftp"}, "spec": {"url": "ftp://x/y"}})
    no_interval = _refusal(kube_api, namespace, FLUX_OCI_REPOSITORY, {
        "kind": "OCIRepository", "metadata": {"name": "no-interval"},
        "spec": {"url": "oci://127.0.0.1:1/charts/demo"}})
    assert "spec.interval" in no_interval and "Required value" in no_interval
    typo = _refusal(kube_api, namespace, FLUX_HELM, {
        "kind": "HelmRelease", "metadata": {"name": "typo"},
        "spec": {"interval": "10m", "chartRef": {"kind": "OCIRepository", "name": "demo"},
                 "valuez": {}}}, status=400)  # strict decoding refuses before validation
    assert 'unknown field \\"spec.valuez\\"' in typo

    listed = client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
        *FLUX_HELM[:2], namespace, FLUX_HELM[2])
    assert sorted(item["metadata"]["name"] for item in listed["items"]) == [
        "from-oci", "from-repository"]


def test_celery_task_round_trips_through_worker_and_redis(celery_worker, testbed, redis_url):
    import redis

    from operator_app.tasks import cluster_version

    result = cluster_version.delay()
    assert result.get(timeout=30) == f"v{testbed.kubernetes_version}"
    assert redis.Redis.from_url(redis_url).ping()
    assert b"cluster_version" in celery_worker.log_path.read_bytes()


def test_cli_up_then_down_leaves_no_process_behind(tmp_path):
    """The CLI itself: up prints export lines, status reports a crash, down stops everything."""
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.testbed.cluster import TestbedState, _alive

    root = Path(__file__).resolve().parents[2]
    state_dir = tmp_path / "bed"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tests.testbed", "--dir", str(state_dir),
                               *args], cwd=root, capture_output=True, text=True, timeout=180)

    up = cli("up")
    assert up.returncode == 0, up.stderr
    assert "export KUBECONFIG=" in up.stdout and "export REDIS_URL=" in up.stdout
    assert (state_dir / "env.sh").read_text() == up.stdout == cli("env").stdout
    components = TestbedState.load(state_dir).components
    assert {c.name for c in components} >= {
        "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
        "registry-basic", "registry-token", "registry-token-server", "chart-repo", "redis"}
    assert "export HEADWIND_TESTBED_CHART_REPO_URL='http://127.0.0.1:" in up.stdout
    assert all(_alive(c) for c in components)
    assert cli("status").returncode == 0

    redis = next(c for c in components if c.name == "redis")
    os.kill(redis.pid, signal.SIGKILL)
    eventually(lambda: not _alive(redis), 10, "redis gone after SIGKILL", interval=0.1)
    status = cli("status")
    assert status.returncode == 1
    assert "redis is not running; last log lines" in status.stdout
    assert "Ready to accept connections" in status.stdout  # the tail of its own log

    down = cli("down")
    assert down.returncode == 0, down.stderr
    assert not any(_alive(c) for c in components)
    assert not state_dir.exists()
    leftovers = subprocess.run(["pgrep", "-f", str(state_dir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", json.dumps(leftovers.stdout)
