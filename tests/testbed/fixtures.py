"""pytest fixtures over the real testbed: one per test session, a namespace per test."""

from __future__ import annotations

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

from . import cluster
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
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # admission refuses pods until the default SA exists
        if core.list_namespaced_service_account(name).items:
            break
        time.sleep(0.1)
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
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5):
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            pytest.fail(f"celery worker did not start:\n{cluster.log_tail(log_path, 40)}")
    worker.log_path = log_path
    worker.metrics_port = metrics_port
    yield worker
    stop_processes(worker)


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
