"""pytest fixtures over the real testbed: one per test session, a namespace per test."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.waiting import eventually

from . import build, cluster
from .charts import ChartRepo, Helm
from .registry import RegistryPusher

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Notification:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class NotificationSink:
    """Receives the registry's notifications; can relay them to another URL (the webhook)."""

    url: str = ""
    received: list[Notification] = field(default_factory=list)
    forward_to: str | None = None
    forward_statuses: list[int] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def record(self, note: Notification) -> None:
        if self.forward_to:
            headers = {k: v for k, v in note.headers.items()
                       if k.lower() in {"content-type", "authorization"}}
            response = requests.post(self.forward_to, data=note.body, headers=headers, timeout=10)
            self.forward_statuses.append(response.status_code)
        with self._cond:
            self.received.append(note)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Notification], bool], timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for note in self.received:
                    if predicate(note):
                        return note
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching notification within {timeout}s")
                self._cond.wait(remaining)


def _start_sink() -> tuple[NotificationSink, ThreadingHTTPServer]:
    sink = NotificationSink()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            sink.record(Notification(self.path, dict(self.headers.items()), body))
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/registry-events"
    return sink, server


@pytest.fixture(scope="session")
def notification_sink() -> Iterator[NotificationSink]:
    sink, server = _start_sink()
    yield sink
    server.shutdown()


@pytest.fixture(scope="session")
def testbed(notification_sink, tmp_path_factory) -> Iterator[cluster.TestbedState]:
    """A whole testbed for the session; its env is exported so code under test finds it."""
    directory = tmp_path_factory.mktemp("testbed")
    bed = cluster.Testbed(directory, notify_urls=[notification_sink.url])
    try:
        state = bed.up()
    except cluster.TestbedError as exc:
        pytest.fail(f"testbed did not start: {exc}", pytrace=False)
    saved = {key: os.environ.get(key) for key in state.env()}
    os.environ.update(state.env())
    _point_settings_at(state)
    yield state
    dead = cluster.crashed(directory)
    cluster.stop(directory)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    assert not dead, f"testbed components crashed during the session: {dead}"


def _point_settings_at(state: cluster.TestbedState) -> None:
    from django.conf import settings

    from headwind_site.celery import app

    settings.KUBECONFIG = state.kubeconfig
    settings.HEADWIND = dataclasses.replace(settings.HEADWIND, registry_ca_file=state.ca_file)
    settings.REDIS_URL = state.redis_url
    settings.CELERY_BROKER_URL = settings.CELERY_RESULT_BACKEND = state.redis_url
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                    "CONFIG": {"hosts": [state.redis_url]}}
    }
    app.conf.broker_url = app.conf.result_backend = state.redis_url


@pytest.fixture(scope="session")
def kube_api(testbed):
    """An ApiClient with the testbed admin's client certificate (group system:masters)."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=testbed.kubeconfig)
    yield api
    api.close()


@pytest.fixture
def namespace(kube_api, request) -> Iterator[str]:
    """A fresh namespace per test, so tests never see each other's objects."""
    from kubernetes import client

    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": name, "labels": {"headwind.sh/test": "true"}}})
    # Admission refuses pods until the default ServiceAccount exists (the controller-manager
    # makes it; after an API server restart that can take a while).
    eventually(lambda: core.list_namespaced_service_account(name).items, 60,
               f"the default ServiceAccount of {name}")
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def registry_pusher(testbed) -> RegistryPusher:
    return RegistryPusher(testbed.registry, testbed.registry_user, testbed.registry_password)


@pytest.fixture(scope="session")
def token_registry_pusher(testbed) -> RegistryPusher:
    return RegistryPusher(testbed.token_registry, testbed.registry_user, testbed.registry_password)


@pytest.fixture(scope="session")
def push_image(registry_pusher) -> Callable[..., str]:
    """``push_image(repository, tag, content=None) -> digest`` on the basic-auth registry."""
    return registry_pusher.push_image


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> Helm:
    """The real helm CLI (tests/testbed/tools/helm, built once and cached) with its own config,
    cache, data and registry-credential files for the session (never the user's)."""
    try:
        return Helm.build(tmp_path_factory.mktemp("helm-home"))
    except build.BuildError as exc:
        pytest.fail(f"helm could not be built: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def chart_repo(testbed, helm) -> ChartRepo:
    """The testbed's chart repository server: ``chart_repo.publish_http("public/<name>", *pkgs)
    -> repository URL``, ``stats()``, ``auth`` for ``private/...``."""
    return ChartRepo.of(testbed, helm)


@pytest.fixture(scope="session")
def redis_url(testbed) -> str:
    return testbed.redis_url


@pytest.fixture(scope="session")
def celery_worker(testbed, django_db_setup, tmp_path_factory) -> Iterator[subprocess.Popen]:
    """A real Celery worker process on the testbed's Redis, sharing the test database."""
    from django.conf import settings

    from headwind_site.celery import app

    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    metrics_port = cluster.free_port()
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="tests.settings",
        HEADWIND_TEST_DB=settings.DATABASES["default"]["NAME"],
        PYTHONPATH=str(REPO_ROOT),
        HEADWIND_WORKER_METRICS_PORT=str(metrics_port),
        **testbed.env(),
    )
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "headwind_site", "worker", "--pool=threads",
             "--concurrency=4", "--loglevel=INFO", "--without-gossip", "--without-mingle",
             f"--hostname=test-worker-{os.getpid()}@%h"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    def answering() -> bool:
        if worker.poll() is not None:
            pytest.fail(f"celery worker exited:\n{cluster.log_tail(log_path, 40)}")
        return bool(app.control.ping(timeout=0.5))

    try:
        eventually(answering, 60, "the celery worker answering a ping", interval=0)
    except AssertionError:
        worker.kill()
        pytest.fail(f"celery worker did not start:\n{cluster.log_tail(log_path, 40)}")
    worker.log_path = log_path
    worker.metrics_port = metrics_port
    yield worker
    stop_processes(worker)


def serve_web(testbed, log_path: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """The shipped web process (``python -m headwind_site.web``) on a free port, with the test
    settings, the testbed's environment and ``env``; returns it and its base URL once
    ``/healthz`` answers. Stop it with :func:`stop_processes`."""
    port = cluster.free_port()
    full = {**os.environ, **testbed.env(), "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(REPO_ROOT), **env}
    full.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the server keeps Django's guard
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "headwind_site.web", "-b", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT, env=full, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if server.poll() is not None:
            pytest.fail(f"the web exited:\n{cluster.log_tail(log_path, 40)}")
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200

    try:
        eventually(healthy, 60, "the web answering /healthz", interval=0.1,
                   retry_on=(requests.ConnectionError,))
    except AssertionError as exc:
        server.kill()
        pytest.fail(f"the web did not start ({exc}):\n{cluster.log_tail(log_path, 40)}")
    return server, base


def stop_processes(*procs: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM all, then wait; whatever is still running after ``timeout`` gets SIGKILL."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def mirror(kube_api):
    """The UpdateRequest mirror in a thread, as run_operator runs it; stopped within seconds."""
    from channels.layers import channel_layers

    from approvals import cluster as approvals_cluster
    from approvals.mirror import UpdateRequestMirror

    channel_layers.backends.clear()  # rebuilt on the testbed's Redis for live broadcasts
    approvals_cluster.use(None)  # services build their own client from the testbed kubeconfig
    stop = threading.Event()
    watcher = UpdateRequestMirror(kube_api, stop)
    watcher.watch_timeout = 2
    watcher.start()
    assert watcher.synced.wait(30), "the mirror did not list"
    yield watcher
    stop.set()
    watcher.join(15)
    assert not watcher.is_alive()


@pytest.fixture(autouse=True)
def _fresh_django_cache():
    """Per-process caches (sign-in throttling) must not carry over from one test to the next."""
    from django.core.cache import cache

    cache.clear()
    yield


@dataclass
class KubeUser:
    """A ServiceAccount with its own Role, and an ApiClient that authenticates as it."""

    name: str
    username: str  # what the API server sees: system:serviceaccount:<namespace>:<name>
    api: object
    token: str


@pytest.fixture
def kube_user(kube_api, namespace, testbed) -> Iterator[Callable[..., KubeUser]]:
    """``kube_user(name, rules)``: a real user of the testbed with exactly ``rules`` (RBAC
    PolicyRules) in the test's namespace; proven by the API server, not claimed."""
    from kubernetes import client

    from operator_app import kube

    made = []

    def make(name: str, rules: list[dict]) -> KubeUser:
        core = client.CoreV1Api(kube_api)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
        kube.request(kube_api, "POST", f"{rbac}/roles",
                     body={"metadata": {"name": name}, "rules": rules})
        kube.request(kube_api, "POST", f"{rbac}/rolebindings", body={
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
        token = core.create_namespaced_service_account_token(
            name, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
        config = client.Configuration()
        config.host = testbed.apiserver_url
        config.ssl_ca_cert = testbed.ca_file
        config.api_key = {"authorization": f"Bearer {token}"}
        api = client.ApiClient(config)
        made.append(api)
        return KubeUser(name, f"system:serviceaccount:{namespace}:{name}", api, token)

    yield make
    for api in made:
        api.close()


@pytest.fixture
def admission_policy_absent(kube_api):
    """Headwind's admission policy binding removed for one test (a cluster where nobody
    installed it), and put back afterwards."""
    from operator_app import kube
    from operator_app.attribution import ADMISSION, POLICY_NAME

    path = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
    binding = kube.request(kube_api, "GET", f"{path}/{POLICY_NAME}")
    kube.request(kube_api, "DELETE", f"{path}/{POLICY_NAME}")
    ADMISSION.forget()
    try:
        yield
    finally:
        body = {"apiVersion": binding["apiVersion"], "kind": binding["kind"],
                "metadata": {"name": POLICY_NAME}, "spec": binding["spec"]}
        kube.request(kube_api, "POST", path, body=body)
        ADMISSION.forget()


@pytest.fixture
def registry_pull_access(kube_api, namespace, testbed) -> str:
    """A pull secret for both testbed registries on the namespace's default ServiceAccount, as a
    cluster whose nodes pull from a private registry has: Headwind reads it to poll and to
    verify webhooks. Returns the Secret's name."""
    import base64

    from kubernetes import client

    auth = base64.b64encode(f"{testbed.registry_user}:{testbed.registry_password}".encode())
    config = {"auths": {host: {"auth": auth.decode()}
                        for host in (testbed.registry, testbed.token_registry)}}
    core = client.CoreV1Api(kube_api)
    eventually(lambda: any(sa.metadata.name == "default"
                           for sa in core.list_namespaced_service_account(namespace).items),
               60, f"the default ServiceAccount of {namespace}")
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "testbed-registries"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}})
    core.patch_namespaced_service_account(
        "default", namespace, {"imagePullSecrets": [{"name": "testbed-registries"}]})
    return "testbed-registries"


_REDIS_DATABASES = itertools.cycle(range(1, 16))


@pytest.fixture(scope="module")
def installation(testbed, django_db_setup, tmp_path_factory):
    """``installation(**options)``: a whole Headwind in its own processes and Redis database
    (tests/testbed/installation.py), stopped at the end of the module."""
    from django.conf import settings

    from .installation import Installation

    made = []

    def start(**options) -> Installation:
        db = next(_REDIS_DATABASES)  # Redis has 16 databases; 0 is the session's
        bed = Installation(testbed, tmp_path_factory.mktemp("installation"),
                           db_path=settings.DATABASES["default"]["NAME"], redis_db=db,
                           **options)
        made.append(bed)
        return bed.start()

    yield start
    for bed in made:
        bed.stop()


@pytest.fixture(scope="session")
def kubectl() -> Path:
    """The real kubectl CLI (tests/testbed/tools/kubectl: k8s.io/kubectl at the testbed's
    Kubernetes version), built once and cached; it needs no testbed."""
    try:
        return build.kubectl()
    except build.BuildError as exc:
        pytest.fail(f"kubectl could not be built: {exc}", pytrace=False)
