"""The poller on the testbed: real registries, real apiserver (Secrets, ServiceAccounts,
Deployments through the informer), the real Engine with a recording dispatcher.

The only stand-in is a tiny local HTTP server answering 429 + Retry-After, playing a
rate-limited registry next to the real one.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client import REGISTRY

from operator_app import kube
from operator_app.cache import Informer, WorkloadCache
from operator_app.engine import Engine
from operator_app.workloads import DEPLOYMENT, ContainerImage, WorkloadProjection
from registry.credentials import CredentialStore
from registry.poller import MAX_IDLE_SLEEP, Poller
from tests.waiting import eventually

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]  # the tag book

# event-source polling: the session's operators also hear the registry's webhooks, and must not
# move these workloads before the poller under test looks at them.
AUTO = {"headwind.sh/require-approval": "false", "headwind.sh/min-update-interval": "0",
        "headwind.sh/event-source": "polling"}


class RecordingDispatcher:
    def __init__(self) -> None:
        self.proposed: list = []
        self.applied: list = []

    def propose(self, plan) -> None:
        self.proposed.append(plan)

    def apply(self, plan) -> None:
        self.applied.append(plan)


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class HttpLog:
    """``session_factory`` for the poller: every HTTP request it makes, as (method, path)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()

    def __call__(self) -> requests.Session:
        session = requests.Session()
        session.hooks["response"].append(self._record)
        return session

    def _record(self, response, *args, **kwargs):
        with self._lock:
            self.calls.append((response.request.method, urlsplit(response.request.url).path,
                               response.status_code))

    def count(self, method: str, suffix: str, *, status: int | None = None) -> int:
        return sum(1 for m, path, code in self.calls
                   if m == method and path.endswith(suffix) and (status is None or code == status))

    def manifest_gets(self) -> int:
        return sum(1 for m, path, _ in self.calls if m == "GET" and "/manifests/" in path)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def pull_secret(kube_api, namespace, name, registry, user, password,
                kind="kubernetes.io/dockerconfigjson"):
    entry = {"username": user, "password": password, "auth": b64(f"{user}:{password}")}
    if kind == "kubernetes.io/dockerconfigjson":
        data = {".dockerconfigjson": b64(json.dumps({"auths": {registry: entry}}))}
    else:
        data = {".dockercfg": b64(json.dumps({f"http://{registry}": entry}))}
    kube.request(kube_api, "POST", f"/api/v1/namespaces/{namespace}/secrets",
                 body={"metadata": {"name": name}, "type": kind, "data": data})


def deployment(name, image, annotations, pull_secrets=("regcred",)):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"imagePullSecrets": [{"name": s} for s in pull_secrets],
                                           "containers": [{"name": "app", "image": image}]}}}}


def projection(namespace, name, image, annotations, *, pull_secrets=("regcred",),
               service_account="default"):
    return WorkloadProjection("Deployment", namespace, name, f"uid-{name}", "1",
                              tuple(sorted(annotations.items())),
                              (ContainerImage("app", image),), tuple(pull_secrets),
                              service_account)


class NamespaceView:
    """The informer's cache seen through one namespace: the informer is cluster-wide, and
    Deployments of earlier tests linger while their namespaces are being deleted."""

    def __init__(self, cache: WorkloadCache, namespace: str) -> None:
        self.cache = cache
        self.namespace = namespace

    def snapshot(self):
        return [w for w in self.cache.snapshot() if w.namespace == self.namespace]

    def matches(self, repository):
        return [(w, c) for w, c in self.cache.matches(repository) if w.namespace == self.namespace]

    def get(self, key):
        return self.cache.get(key) if key[1] == self.namespace else None


@pytest.fixture
def deployments(kube_api, namespace):
    """A Deployment informer filling a cache from the real apiserver (seen for ``namespace``)."""
    cache = WorkloadCache()
    stop = threading.Event()
    informer = Informer(kube_api, DEPLOYMENT, cache, stop)
    informer.watch_timeout = 1  # short watches, so teardown does not wait for one to end
    informer.start()
    assert informer.synced.wait(15)

    def create(namespace, obj):
        kube.request(kube_api, "POST", DEPLOYMENT.collection_path(namespace), body=obj)
        key = ("Deployment", namespace, obj["metadata"]["name"])
        eventually(lambda: cache.get(key) is not None, 15, f"{key} in the cache")

    create.cache = NamespaceView(cache, namespace)
    yield create
    stop.set()
    informer.join(timeout=15)


@pytest.fixture
def make_poller(kube_api):
    made = []

    def make(cache, **options):
        dispatcher = RecordingDispatcher()
        clock = Clock()
        http = HttpLog()
        options.setdefault("interval", 300)
        options.setdefault("jitter", 0)
        poller = Poller(kube_api, cache, Engine(cache, dispatcher), clock=clock,
                        session_factory=http, **options)
        poller.dispatcher, poller.test_clock, poller.http = dispatcher, clock, http
        made.append(poller)
        return poller

    yield make
    for poller in made:
        poller.close()


def metric(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_new_tag_is_found_and_planned(kube_api, namespace, testbed, push_image, deployments,
                                      make_poller):
    repository = f"{namespace}/app"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.2.3")
    pull_secret(kube_api, namespace, "regcred", testbed.registry, testbed.registry_user,
                testbed.registry_password)
    deployments(namespace, deployment("app", f"{image}:1.2.3",
                                      {"headwind.sh/policy": "minor", **AUTO}))
    poller = make_poller(deployments.cache)
    cycles = metric("headwind_polling_cycles_total")
    tag_requests = metric("headwind_polling_requests_total", registry=testbed.registry,
                          kind="tags", outcome="ok")

    first = poller.run_once()
    assert (first.plans, first.errors, first.due_workloads) == ([], [], 1)

    push_image(repository, "1.3.0")
    push_image(repository, "2.0.0")
    assert poller.run_once().idle  # not due again before its interval
    poller.test_clock.advance(301)
    report = poller.run_once()
    assert report.errors == []
    (plan,) = report.plans
    assert (plan.new_image, plan.source) == (f"{image}:1.3.0", "polling")
    assert poller.dispatcher.applied == [plan] and poller.dispatcher.proposed == []
    assert report.new_tags == 2
    assert report.requests["tags"] == 1 and report.requests.get("head", 0) == 0
    assert poller.http.manifest_gets() == 0
    assert metric("headwind_polling_cycles_total") == cycles + 2
    assert metric("headwind_polling_requests_total", registry=testbed.registry, kind="tags",
                  outcome="ok") == tag_requests + 2
    assert metric("headwind_polling_new_tags_found_total", registry=testbed.registry) >= 2


def test_same_tag_rebuild_is_found_under_digest_policy(kube_api, namespace, testbed, push_image,
                                                       deployments, make_poller):
    repository = f"{namespace}/web"
    image = f"{testbed.registry}/{repository}"
    first = push_image(repository, "latest", "build 1")
    pull_secret(kube_api, namespace, "regcred", testbed.registry, testbed.registry_user,
                testbed.registry_password)
    deployments(namespace, deployment("web", f"{image}:latest@{first}",
                                      {"headwind.sh/policy": "digest", **AUTO}))
    poller = make_poller(deployments.cache)
    assert poller.run_once().plans == []

    second = push_image(repository, "latest", "build 2")
    poller.test_clock.advance(301)
    report = poller.run_once()
    (plan,) = report.plans
    assert plan.new_image == f"{image}:latest@{second}"
    # Digest policy only: one HEAD of the followed tag, no tag listing at all.
    assert report.requests["head"] == 1 and report.requests.get("tags", 0) == 0
    assert poller.http.count("HEAD", f"/{repository}/manifests/latest", status=200) == 2
    assert poller.http.manifest_gets() == 0


def test_pinned_image_keeps_its_pin_on_a_new_tag(kube_api, namespace, testbed, push_image,
                                                 deployments, make_poller):
    repository = f"{namespace}/pinned"
    image = f"{testbed.registry}/{repository}"
    old = push_image(repository, "1.0.0")
    pull_secret(kube_api, namespace, "regcred", testbed.registry, testbed.registry_user,
                testbed.registry_password)
    deployments(namespace, deployment("pinned", f"{image}:1.0.0@{old}",
                                      {"headwind.sh/policy": "minor", **AUTO}))
    new = push_image(repository, "1.1.0")
    push_image(repository, "0.9.0")
    report = make_poller(deployments.cache).run_once()
    (plan,) = report.plans
    assert plan.new_image == f"{image}:1.1.0@{new}"
    assert report.requests["head"] == 1  # only the chosen target, not every tag


def test_two_workloads_on_one_repository_share_one_tag_list(kube_api, namespace, testbed,
                                                           push_image, deployments, make_poller):
    repository = f"{namespace}/shared"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.2.3")
    pull_secret(kube_api, namespace, "regcred", testbed.registry, testbed.registry_user,
                testbed.registry_password)
    deployments(namespace, deployment("minor", f"{image}:1.2.3",
                                      {"headwind.sh/policy": "minor", **AUTO}))
    deployments(namespace, deployment("patch", f"{image}:1.2.3",
                                      {"headwind.sh/policy": "patch", **AUTO}))
    push_image(repository, "1.2.4")
    push_image(repository, "1.3.0")
    poller = make_poller(deployments.cache)
    report = poller.run_once()
    assert report.due_workloads == 2 and report.groups == 1
    assert poller.http.count("GET", f"/{repository}/tags/list", status=200) == 1
    assert sorted((p.workload.name, p.new_image) for p in report.plans) == [
        ("minor", f"{image}:1.3.0"), ("patch", f"{image}:1.2.4")]


@pytest.fixture
def rate_limited_registry():
    """A real HTTP peer that answers 429 + Retry-After: 120 to everything and counts hits;
    ``hits.delay`` makes it slow as well."""

    class Hits(list):
        delay = 0.0

    hits = Hits()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self):
            time.sleep(hits.delay)  # the scenario: a slow registry (0 unless a test sets it)
            hits.append(self.path)
            self.send_response(429)
            self.send_header("Retry-After", "120")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = _answer  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_rate_limited_host_is_backed_off_while_others_are_polled(
        kube_api, namespace, testbed, push_image, make_poller, rate_limited_registry):
    limited, hits = rate_limited_registry
    repository = f"{namespace}/fine"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.0.0")
    push_image(repository, "1.1.0")
    pull_secret(kube_api, namespace, "regcred", testbed.registry, testbed.registry_user,
                testbed.registry_password)
    cache = WorkloadCache()
    annotations = {"headwind.sh/policy": "minor", **AUTO}
    cache.upsert(projection(namespace, "fine", f"{image}:1.0.0", annotations))
    for index in range(3):
        cache.upsert(projection(namespace, f"limited-{index}",
                                f"{limited}/team/app-{index}:1.0.0", annotations))
    poller = make_poller(cache, max_concurrency_per_registry=1)
    backoffs = metric("headwind_polling_backoffs_total", registry=limited)

    report = poller.run_once()
    assert [p.workload.name for p in report.plans] == ["fine"]
    assert len(hits) == 1  # the first 429 stops the other two repositories of that host
    assert report.backed_off == {limited}
    assert len(report.errors) == 1 and "429" in report.errors[0]
    assert metric("headwind_polling_backoffs_total", registry=limited) == backoffs + 1
    assert metric("headwind_polling_errors_total", registry=limited) >= 1

    poller.test_clock.advance(60)  # inside Retry-After: the host is not contacted
    again = poller.run_once()
    assert len(hits) == 1 and again.backed_off == {limited} and again.groups == 0
    assert again.next_due_in == min(60, MAX_IDLE_SLEEP)  # the loop's wake-up

    poller.test_clock.advance(61)  # Retry-After is over: the still-due workloads are retried
    later = poller.run_once()
    assert len(hits) == 2 and later.groups == 3


def test_slow_host_does_not_hold_up_the_cycle(kube_api, namespace, testbed, push_image,
                                              make_poller, rate_limited_registry):
    slow, hits = rate_limited_registry
    hits.delay = 4.0
    repository = f"{namespace}/quick"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.0.0")
    push_image(repository, "1.0.1")
    pull_secret(kube_api, namespace, "regcred", testbed.registry, testbed.registry_user,
                testbed.registry_password)
    cache = WorkloadCache()
    annotations = {"headwind.sh/policy": "patch", **AUTO}
    cache.upsert(projection(namespace, "quick", f"{image}:1.0.0", annotations))
    cache.upsert(projection(namespace, "slow", f"{slow}/team/app:1.0.0", annotations))
    poller = make_poller(cache)

    started = time.monotonic()
    first = poller.run_once(wait=2)
    assert time.monotonic() - started < 3.5  # did not wait for the slow host
    assert [p.workload.name for p in first.plans] == ["quick"]
    assert (first.in_flight, first.errors) == (1, [])

    second = poller.run_once(wait=10)  # the slow group is not started twice, only collected
    assert (second.groups, second.groups_finished, second.in_flight) == (0, 1, 0)
    assert len(second.errors) == 1 and second.backed_off == {slow}
    assert len(hits) == 1


def test_skipped_policies_touch_no_registry(namespace, make_poller):
    cache = WorkloadCache()
    image = "registry.invalid/team/app:1.0.0"  # any request here would fail loudly
    cache.upsert(projection(namespace, "none", image, {"headwind.sh/policy": "none"}))
    cache.upsert(projection(namespace, "invalid", image, {"headwind.sh/policy": "sometimes"}))
    cache.upsert(projection(namespace, "webhook-only", image, {
        "headwind.sh/policy": "minor", "headwind.sh/event-source": "webhook"}))
    poller = make_poller(cache)
    report = poller.run_once()
    assert (report.groups, report.skipped_workloads, report.errors) == (0, 3, [])
    assert poller.http.calls == []


def test_per_workload_polling_interval(kube_api, namespace, testbed, push_image, make_poller):
    repository = f"{namespace}/intervals"
    image = f"{testbed.registry}/{repository}:1.0.0"
    push_image(repository, "1.0.0")
    pull_secret(kube_api, namespace, "regcred", testbed.registry, testbed.registry_user,
                testbed.registry_password)
    cache = WorkloadCache()
    cache.upsert(projection(namespace, "fast", image, {
        "headwind.sh/policy": "minor", "headwind.sh/polling-interval": "60"}))
    cache.upsert(projection(namespace, "default", image, {"headwind.sh/policy": "minor"}))
    poller = make_poller(cache)
    assert poller.run_once().due_workloads == 2
    poller.test_clock.advance(61)
    assert poller.run_once().due_workloads == 1
    poller.test_clock.advance(240)
    assert poller.run_once().due_workloads == 2


def test_credentials_from_pull_secret_and_service_account(kube_api, namespace, testbed, caplog):
    registry = testbed.registry
    pull_secret(kube_api, namespace, "own", registry, "own-user", "own-password-1")
    pull_secret(kube_api, namespace, "from-sa", registry, "sa-user", "sa-password-2",
                kind="kubernetes.io/dockercfg")
    kube.request(kube_api, "PATCH", f"/api/v1/namespaces/{namespace}/serviceaccounts/default",
                 body={"imagePullSecrets": [{"name": "from-sa"}, {"name": "gone"}]},
                 content_type="application/merge-patch+json")
    now = [0.0]
    store = CredentialStore(kube_api, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="registry.credentials")
    repository = f"{registry}/{namespace}/app"

    via_sa = store.for_workload(projection(namespace, "a", "x", {}, pull_secrets=()), repository)
    assert [c.username for c in via_sa] == ["sa-user"]
    both = store.for_workload(projection(namespace, "b", "x", {}, pull_secrets=("own",)),
                              repository)
    assert [c.username for c in both] == ["own-user", "sa-user"]  # pod's own first
    other = store.for_workload(projection(namespace, "c", "x", {}, pull_secrets=("own",)),
                               "ghcr.io/team/app")
    assert other == []
    reads = store.api_reads
    assert reads == 4  # ServiceAccount, from-sa, gone (404), own
    store.for_workload(projection(namespace, "d", "x", {}, pull_secrets=("own",)), repository)
    assert store.api_reads == reads  # all from the TTL cache
    now[0] += 301
    store.for_workload(projection(namespace, "e", "x", {}, pull_secrets=("own",)), repository)
    assert store.api_reads == reads + 4  # expired: read again
    assert sum("gone not found" in r.getMessage() for r in caplog.records) == 1  # logged once
    for secret in ("own-password-1", "sa-password-2", b64("own-user:own-password-1")):
        assert secret not in caplog.text


def test_loop_runs_only_while_allowed_and_stops(kube_api, namespace, testbed, push_image,
                                                settings):
    from registry.poller import start_poller

    repository = f"{namespace}/loop"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.0.0")
    push_image(repository, "1.0.1")
    pull_secret(kube_api, namespace, "regcred", testbed.registry, testbed.registry_user,
                testbed.registry_password)
    cache = WorkloadCache()
    cache.upsert(projection(namespace, "loop", f"{image}:1.0.0",
                            {"headwind.sh/policy": "patch", **AUTO}))
    dispatcher = RecordingDispatcher()
    engine = Engine(cache, dispatcher)
    stop = threading.Event()
    allowed = threading.Event()
    refusals = []

    def may_run() -> bool:
        if not allowed.is_set():
            refusals.append(time.monotonic())
        return allowed.is_set()

    settings.HEADWIND = dataclasses.replace(settings.HEADWIND, polling_enabled=False)
    assert start_poller(kube_api, cache, engine, stop=stop, may_run=may_run) is None

    settings.HEADWIND = dataclasses.replace(settings.HEADWIND, polling_enabled=True)
    cycles = metric("headwind_polling_cycles_total")
    thread = start_poller(kube_api, cache, engine, stop=stop, may_run=may_run)
    # Refused twice: the loop asked, held off, and came round to ask again instead of polling.
    eventually(lambda: len(refusals) >= 2, 15, "the loop asking twice whether it may poll")
    assert dispatcher.applied == []  # not the leader yet: no polling
    assert metric("headwind_polling_cycles_total") == cycles
    allowed.set()
    eventually(lambda: dispatcher.applied, 15, "the loop polling once allowed", interval=0.1)
    assert dispatcher.applied[0].new_image == f"{image}:1.0.1"
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
