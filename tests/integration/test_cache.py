"""The informer cache against the real apiserver: list, watch, bookmarks, 410 re-list."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client

from operator_app.cache import Informer, WorkloadCache
from operator_app.workloads import DEPLOYMENT
from tests.waiting import eventually

pytestmark = pytest.mark.testbed


def deployment(name: str, image: str, annotations: dict | None) -> dict:
    return {"metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"initContainers": [{"name": "init",
                                                               "image": "busybox:1.36"}],
                                           "containers": [{"name": "main", "image": image}]}}}}


@pytest.fixture
def informer(kube_api):
    cache = WorkloadCache()
    stop = threading.Event()
    thread = Informer(kube_api, DEPLOYMENT, cache, stop)
    thread.watch_timeout = 5  # exercise re-watching from the last resourceVersion
    thread.start()
    assert thread.synced.wait(15)
    yield thread
    stop.set()
    thread.join(timeout=15)


def test_cache_follows_creates_edits_and_deletes(kube_api, namespace, informer):
    apps = client.AppsV1Api(kube_api)
    cache = informer.cache
    apps.create_namespaced_deployment(
        namespace, deployment("web", "registry.example.com:5000/team/web:1.0", {
            "headwind.sh/policy": "minor", "unrelated.io/x": "y"}))
    apps.create_namespaced_deployment(namespace, deployment("plain", "nginx:1.25", None))
    eventually(lambda: cache.get(("Deployment", namespace, "web")) is not None)

    (item, container), = cache.matches("registry.example.com:5000/team/web")
    assert (item.name, container.name) == ("web", "main")
    assert dict(item.annotations) == {"headwind.sh/policy": "minor"}  # only ours are kept
    assert [m[1].name for m in cache.matches("docker.io/library/busybox")
            if m[0].namespace == namespace] == ["init"]
    assert cache.get(("Deployment", namespace, "plain")) is None  # not opted in

    apps.patch_namespaced_deployment("web", namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "main", "image": "ghcr.io/team/web:2.0"}]}}}})
    eventually(lambda: cache.matches("ghcr.io/team/web"))
    assert cache.matches("registry.example.com:5000/team/web") == []

    apps.patch_namespaced_deployment("web", namespace, {"metadata": {"annotations": {
        "headwind.sh/policy": None}}})
    eventually(lambda: cache.get(("Deployment", namespace, "web")) is None)
    assert cache.matches("ghcr.io/team/web") == []

    apps.patch_namespaced_deployment("web", namespace, {"metadata": {"annotations": {
        "headwind.sh/policy": "patch"}}})
    eventually(lambda: cache.get(("Deployment", namespace, "web")) is not None)
    apps.delete_namespaced_deployment("web", namespace)
    eventually(lambda: cache.get(("Deployment", namespace, "web")) is None)


def test_relist_after_a_watch_gap_repairs_the_cache(kube_api, namespace):
    """What a 410 Gone leads to: objects changed while nobody watched are found by the re-list."""
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(
        namespace, deployment("gone", "quay.io/org/gone:1.0", {"headwind.sh/policy": "all"}))
    cache = WorkloadCache()
    stopped = threading.Event()
    stopped.set()
    informer = Informer(kube_api, DEPLOYMENT, cache, stopped)
    informer.list()
    assert cache.get(("Deployment", namespace, "gone")) is not None
    listed_version = informer.resource_version

    apps.delete_namespaced_deployment("gone", namespace)
    apps.create_namespaced_deployment(
        namespace, deployment("late", "quay.io/org/late:1.0", {"headwind.sh/policy": "all"}))
    informer.list()
    assert cache.get(("Deployment", namespace, "gone")) is None
    assert cache.get(("Deployment", namespace, "late")) is not None
    assert cache.matches("quay.io/org/gone") == []
    assert int(informer.resource_version) > int(listed_version)


def test_leadership_lapses_by_our_own_clock_when_renewals_stop(kube_api, namespace):
    """A renewal that hangs must not leave a replica acting after its lease could be taken."""
    from operator_app.leader import LeaderElector

    first = LeaderElector(kube_api, namespace, identity="a", lease_seconds=3, renew_seconds=1,
                          stop=threading.Event())
    second = LeaderElector(kube_api, namespace, identity="b", lease_seconds=3, renew_seconds=1,
                           stop=threading.Event())
    first.start()
    eventually(first.leading, 10)
    assert not second.try_acquire_or_renew()  # held and fresh
    first.stop_event.set()  # "a" stops renewing without releasing (as if hung)
    first.release = lambda: None
    first.join(5)
    first.is_leader.set()  # what a hung renewal would leave behind
    eventually(lambda: not first.leading(), 5)  # lapses by its own clock within the margin
    eventually(second.try_acquire_or_renew, 10)  # and only then can "b" take over
