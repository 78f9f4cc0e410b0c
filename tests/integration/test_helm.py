"""Flux HelmReleases on the testbed: Flux's real CRDs, charts made and served by the real
helm CLI (an HTTP repository with and without basic auth, and OCI in the docker-registry),
Headwind's own caches, poller, engine, UpdateRequests and Celery worker.

No Flux controller runs: Headwind's job ends when it has written the new version (or tag) that
Flux would then install, and Flux's own schema validates every write.
"""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from django.test import Client

from approvals.models import NamespaceGrant
from headwind_site.running import Replica
from operator_app import kube
from operator_app import proposals as ur
from operator_app.dispatch import ClusterDispatcher
from operator_app.engine import Engine
from operator_app.workloads import HELMRELEASE, OCIREPOSITORY
from registry.poller import Poller
from tests.waiting import eventually

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

DIRECT = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false",
          "headwind.sh/min-update-interval": "0"}
REPOSITORIES = "/apis/source.toolkit.fluxcd.io/v1/namespaces/{ns}/helmrepositories"


def helm_repository(kube_api, namespace: str, name: str, url: str, *, oci: bool = False,
                    secret: str | None = None) -> None:
    spec: dict = {"url": url, "interval": "10m"}
    if oci:
        spec["type"] = "oci"
    if secret:
        spec["secretRef"] = {"name": secret}
    kube.request(kube_api, "POST", REPOSITORIES.format(ns=namespace), body={
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": name}, "spec": spec})


def helm_release(kube_api, namespace: str, name: str, chart: str, version: str,
                 source: str, annotations: dict | None = None) -> None:
    kube.request(kube_api, "POST", HELMRELEASE.collection_path(namespace), body={
        "apiVersion": HELMRELEASE.api_version, "kind": "HelmRelease",
        "metadata": {"name": name, "annotations": annotations or DIRECT},
        "spec": {"interval": "10m", "chart": {"spec": {
            "chart": chart, "version": version,
            "sourceRef": {"kind": "HelmRepository", "name": source}}}}})


def release_version(kube_api, namespace: str, name: str) -> str:
    obj = kube.request(kube_api, "GET", HELMRELEASE.object_path(namespace, name))
    return obj["spec"]["chart"]["spec"]["version"]


def basic_secret(kube_api, namespace: str, name: str, user: str, password: str) -> None:
    kube.request(kube_api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "metadata": {"name": name}, "type": "Opaque",
        "stringData": {"username": user, "password": password}})


def docker_secret(kube_api, namespace: str, name: str, host: str, user: str,
                  password: str) -> None:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {host: {"auth": auth}}}
    kube.request(kube_api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}})


@pytest.fixture
def headwind(kube_api, testbed):
    """Headwind's caches (every kind, Flux's sources too) and a poller on the real cluster,
    dispatching to the real worker; ``poll()`` runs one cycle with everything due."""
    stop = threading.Event()
    api = kube.api_client()  # its own connection pool, closed at the end (ends the watches)
    replica = Replica(api, stop)
    replica.wait_synced(30)

    class Running:
        cache = replica.cache
        engine = Engine(replica.cache, ClusterDispatcher(kube_api))
        poller = Poller(kube_api, replica.cache, engine, sources=replica.source, jitter=0)

        @staticmethod
        def knows(namespace: str, name: str) -> bool:
            item = replica.cache.get(("HelmRelease", namespace, name))
            return item is not None and bool(item.containers)

        @classmethod
        def poll(cls):
            cls.poller._next_due.clear()
            return cls.poller.run_once(wait=30)

        @staticmethod
        def plans(report, namespace: str) -> list[str]:
            """The new references planned for ``namespace`` (the cluster holds other tests'
            workloads too)."""
            return [p.new_image for p in report.plans if p.workload.namespace == namespace]

    yield Running
    stop.set()
    Running.poller.close()
    api.close()


def charts(helm, tmp_path, name: str, *versions: str):
    return [helm.make_chart(tmp_path, name, version) for version in versions]


def test_http_repository_minor_policy(kube_api, namespace, helm, chart_repo, headwind,
                                      celery_worker, tmp_path):
    """1.0.0 → 1.1.0 is applied; 2.0.0 (a major) and 1.2.0-rc.1 (a pre-release) are not."""
    url = chart_repo.publish_http(f"public/{namespace}",
                                  *charts(helm, tmp_path, "podinfo", "1.0.0", "1.1.0", "2.0.0",
                                          "1.2.0-rc.1"))
    helm_repository(kube_api, namespace, "repo", url)
    helm_release(kube_api, namespace, "web", "podinfo", "1.0.0", "repo")
    eventually(lambda: headwind.knows(namespace, "web"), 30, "the HelmRelease in the cache")

    report = headwind.poll()
    assert headwind.plans(report, namespace) == [f"{url}/podinfo:1.1.0"], report.summary()
    eventually(lambda: release_version(kube_api, namespace, "web") == "1.1.0", 30,
               "the chart version written")
    obj = kube.request(kube_api, "GET", HELMRELEASE.object_path(namespace, "web"))
    history = json.loads(obj["metadata"]["annotations"]["headwind.sh/update-history"])
    assert (history[0]["from"], history[0]["to"]) == (f"{url}/podinfo:1.0.0",
                                                       f"{url}/podinfo:1.1.0")


def test_an_unchanged_index_costs_a_304_and_no_parsing(kube_api, namespace, helm, chart_repo,
                                                       headwind, tmp_path):
    url = chart_repo.publish_http(f"public/{namespace}",
                                  *charts(helm, tmp_path, "podinfo", "1.0.0"))
    helm_repository(kube_api, namespace, "repo", url)
    helm_release(kube_api, namespace, "web", "podinfo", "1.0.0", "repo")
    eventually(lambda: headwind.knows(namespace, "web"), 30, "the HelmRelease in the cache")
    path = f"/public/{namespace}/index.yaml"

    headwind.poll()
    client = next(c for (u, _), c in headwind.poller._chart_clients.items() if u == url)
    parses = client.parses
    before = chart_repo.path_stats(path)
    headwind.poll()
    after = chart_repo.path_stats(path)
    assert after.get("304", 0) == before.get("304", 0) + 1
    assert client.parses == parses  # nothing read, nothing parsed


def test_an_authenticated_repository(kube_api, namespace, helm, chart_repo, headwind,
                                     celery_worker, tmp_path):
    url = chart_repo.publish_http(f"private/{namespace}",
                                  *charts(helm, tmp_path, "api", "3.1.0", "3.2.0"))
    basic_secret(kube_api, namespace, "repo-auth", *chart_repo.auth)
    helm_repository(kube_api, namespace, "repo", url, secret="repo-auth")
    helm_release(kube_api, namespace, "api", "api", "3.1.0", "repo")
    eventually(lambda: headwind.knows(namespace, "api"), 30, "the HelmRelease in the cache")

    report = headwind.poll()
    assert not [e for e in report.errors if namespace in e], report.summary()
    eventually(lambda: release_version(kube_api, namespace, "api") == "3.2.0", 30,
               "the chart version written")


def test_an_oci_helm_repository(kube_api, namespace, helm, testbed, headwind, celery_worker,
                                tmp_path):
    for package in charts(helm, tmp_path, "queue", "0.4.0", "0.5.0", "1.0.0"):
        helm.push_oci(package, testbed.registry, testbed.registry_user,
                      testbed.registry_password, path=f"{namespace}/charts")
    docker_secret(kube_api, namespace, "registry", testbed.registry, testbed.registry_user,
                  testbed.registry_password)
    helm_repository(kube_api, namespace, "oci", f"oci://{testbed.registry}/{namespace}/charts",
                    oci=True, secret="registry")
    helm_release(kube_api, namespace, "queue", "queue", "0.4.0", "oci")
    eventually(lambda: headwind.knows(namespace, "queue"), 30, "the HelmRelease in the cache")

    report = headwind.poll()
    assert headwind.plans(report, namespace) == [
        f"oci://{testbed.registry}/{namespace}/charts/queue:0.5.0"], report.summary()
    eventually(lambda: release_version(kube_api, namespace, "queue") == "0.5.0", 30,
               "the chart version written")


def test_an_oci_repository_through_chart_ref(kube_api, namespace, helm, testbed, headwind,
                                             celery_worker, tmp_path):
    """``spec.chartRef`` → OCIRepository: Headwind moves the OCIRepository's ``spec.ref.tag``
    (a version with build metadata is written as Helm tags it: ``+`` → ``_``)."""
    for package in charts(helm, tmp_path, "cache", "2.0.0", "2.1.0+build.7"):
        helm.push_oci(package, testbed.registry, testbed.registry_user,
                      testbed.registry_password, path=f"{namespace}/charts")
    docker_secret(kube_api, namespace, "registry", testbed.registry, testbed.registry_user,
                  testbed.registry_password)
    kube.request(kube_api, "POST", OCIREPOSITORY.collection_path(namespace), body={
        "apiVersion": OCIREPOSITORY.api_version, "kind": "OCIRepository",
        "metadata": {"name": "cache"},
        "spec": {"url": f"oci://{testbed.registry}/{namespace}/charts/cache", "interval": "5m",
                 "ref": {"tag": "2.0.0"}, "secretRef": {"name": "registry"}}})
    kube.request(kube_api, "POST", HELMRELEASE.collection_path(namespace), body={
        "apiVersion": HELMRELEASE.api_version, "kind": "HelmRelease",
        "metadata": {"name": "cache", "annotations": DIRECT},
        "spec": {"interval": "10m", "chartRef": {"kind": "OCIRepository", "name": "cache"}}})
    eventually(lambda: headwind.knows(namespace, "cache"), 30, "the HelmRelease in the cache")

    report = headwind.poll()
    assert headwind.plans(report, namespace) == [
        f"oci://{testbed.registry}/{namespace}/charts/cache:2.1.0+build.7"], report.summary()

    def tag() -> str:
        return kube.request(kube_api, "GET", OCIREPOSITORY.object_path(namespace, "cache")
                            )["spec"]["ref"]["tag"]

    eventually(lambda: tag() == "2.1.0_build.7", 30, "the OCIRepository's tag moved")
    source = kube.request(kube_api, "GET", OCIREPOSITORY.object_path(namespace, "cache"))
    assert "headwind.sh/update-history" in source["metadata"]["annotations"]


def test_a_chart_update_approved_in_the_dashboard(kube_api, namespace, helm, chart_repo,
                                                  headwind, celery_worker, mirror, tmp_path,
                                                  django_user_model):
    url = chart_repo.publish_http(f"public/{namespace}",
                                  *charts(helm, tmp_path, "podinfo", "6.5.0", "6.6.0"))
    helm_repository(kube_api, namespace, "repo", url)
    helm_release(kube_api, namespace, "web", "podinfo", "6.5.0", "repo",
                 {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "true"})
    eventually(lambda: headwind.knows(namespace, "web"), 30, "the HelmRelease in the cache")
    headwind.poll()

    (request,) = kube.request(kube_api, "GET", f"/apis/headwind.sh/v1alpha1/namespaces/"
                              f"{namespace}/updaterequests")["items"]
    assert request["spec"]["targetRef"]["kind"] == "HelmRelease"
    assert request["spec"]["chart"] == {"name": "podinfo", "sourceURL": url,
                                        "currentVersion": "6.5.0", "newVersion": "6.6.0"}
    name = request["metadata"]["name"]
    user = django_user_model.objects.create_superuser("chartadmin", password="pw-123456789")
    NamespaceGrant.objects.create(user=user, pattern="*")
    browser = Client()
    browser.force_login(user)
    eventually(lambda: b"chart podinfo" in browser.get("/").content, 30,
               "the request on the dashboard, as a chart")
    page = browser.get(f"/updates/{namespace}/{name}")
    assert b"6.5.0" in page.content and b"6.6.0" in page.content
    done = browser.post(f"/updates/{namespace}/{name}/approve", {"comment": "ship it"},
                        HTTP_HX_REQUEST="true")
    assert done.status_code == 200, done.content
    eventually(lambda: release_version(kube_api, namespace, "web") == "6.6.0", 30,
               "the approved chart version written")
    # The worker writes the version, then the request's outcome: a second write, a moment later.
    eventually(lambda: ur.phase_of(ur.get(kube_api, namespace, name)) in ur.APPLIED_PHASES, 30,
               lambda: f"the request applied: {ur.phase_of(ur.get(kube_api, namespace, name))}")
    api = browser.get(f"/api/v1/updates/{namespace}/{name}").json()
    assert api["chart"]["newVersion"] == "6.6.0" and api["target"]["kind"] == "HelmRelease"


def test_a_range_version_is_left_alone(kube_api, namespace, helm, chart_repo, headwind,
                                       operators, tmp_path):
    url = chart_repo.publish_http(f"public/{namespace}",
                                  *charts(helm, tmp_path, "podinfo", "6.5.0", "6.6.0"))
    helm_repository(kube_api, namespace, "repo", url)
    helm_release(kube_api, namespace, "web", "podinfo", "6.x", "repo")
    eventually(lambda: ("HelmRelease", namespace, "web") in
               {item.key for item in headwind.cache.snapshot()}, 30, "the HelmRelease cached")
    assert not headwind.knows(namespace, "web")  # nothing to follow: no chart slot
    report = headwind.poll()
    assert not any(p.workload.namespace == namespace for p in report.plans)
    assert release_version(kube_api, namespace, "web") == "6.x"

    def told() -> list:
        events = kube.request(kube_api, "GET", f"/api/v1/namespaces/{namespace}/events")
        return [e for e in events["items"] if e["reason"] == "ChartFollowedByFlux"]

    (event,) = eventually(told, 30, "an Event saying why")
    assert "6.x" in event["message"] and "Flux follows it" in event["message"]


def test_chart_ranges_follow_masterminds(kube_api, namespace, helm, chart_repo, headwind,
                                         celery_worker, tmp_path):
    """The chart path uses the same evaluator as images: Masterminds 3.4+ admits a
    pre-release when one comparator of the group names a pre-release."""
    url = chart_repo.publish_http(f"public/{namespace}",
                                  *charts(helm, tmp_path, "edge", "1.0.0", "1.5.0-rc.1",
                                          "2.0.0"))
    helm_repository(kube_api, namespace, "repo", url)
    helm_release(kube_api, namespace, "edge", "edge", "1.0.0", "repo",
                 {**DIRECT, "headwind.sh/policy": "all",
                  "headwind.sh/semver-range": ">=1.0.0-0 <2.0.0"})
    eventually(lambda: headwind.knows(namespace, "edge"), 30, "the HelmRelease in the cache")
    headwind.poll()
    eventually(lambda: release_version(kube_api, namespace, "edge") == "1.5.0-rc.1", 30,
               "the pre-release the range admits")


def test_an_oci_chart_push_webhook_moves_the_release(kube_api, namespace, helm, testbed,
                                                     notification_sink, webhook_relay,
                                                     operators, tmp_path):
    """helm push → the registry's notification → webhook → the operators' engine → the chart
    version, without polling, within seconds."""
    first, second = charts(helm, tmp_path, "hook", "1.0.0", "1.1.0")
    helm.push_oci(first, testbed.registry, testbed.registry_user, testbed.registry_password,
                  path=f"{namespace}/charts")
    docker_secret(kube_api, namespace, "registry", testbed.registry, testbed.registry_user,
                  testbed.registry_password)
    helm_repository(kube_api, namespace, "oci", f"oci://{testbed.registry}/{namespace}/charts",
                    oci=True, secret="registry")
    helm_release(kube_api, namespace, "hook", "hook", "1.0.0", "oci")
    following = f"HelmRelease {namespace}/hook follows oci://{testbed.registry}/{namespace}" \
                f"/charts/hook:1.0.0".encode()
    eventually(lambda: all(following in p.log_path.read_bytes()
                           for p in operators["processes"]), 30, "the operators' caches")

    pushed_at = time.monotonic()
    helm.push_oci(second, testbed.registry, testbed.registry_user, testbed.registry_password,
                  path=f"{namespace}/charts")
    eventually(lambda: release_version(kube_api, namespace, "hook") == "1.1.0", 30,
               "the pushed chart version written", interval=0.1)
    assert time.monotonic() - pushed_at < 10
