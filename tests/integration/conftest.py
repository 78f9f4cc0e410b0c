"""Fixtures for end-to-end tests: the operator processes, the registry → webhook relay, and the
observations that prove the operator and the worker have finished with an input."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from tests.testbed import cluster
from tests.testbed.fixtures import stop_processes
from tests.waiting import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def webhook_relay(testbed, notification_sink, live_server):
    """Registry notifications reach ``/webhook/registry`` of a live Django server."""
    with pytest.MonkeyPatch.context() as patch:  # session scope: no function-scoped monkeypatch
        patch.setenv("HEADWIND_WEBHOOK_REGISTRY_TOKEN", testbed.notify_token)
        notification_sink.forward_to = f"{live_server.url}/webhook/registry"
        try:
            yield live_server
        finally:
            notification_sink.forward_to = None


@pytest.fixture(scope="session")
def operators(testbed, celery_worker, django_db_setup, tmp_path_factory):
    """Two ``manage.py run_operator`` replicas competing for one Lease.

    Webhook verification is off for them: the vendor payloads name registries (ghcr.io,
    quay.io, ...) that do not exist on this machine, and these tests are about routing. The
    verifying path runs end to end in tests/integration/test_verification.py with its own
    installation. ``operators["restart"]()`` kills both with SIGKILL and starts them again
    (same identities, same Lease) and waits for a leader."""
    lease_namespace = f"headwind-{uuid.uuid4().hex[:6]}"
    logs = tmp_path_factory.mktemp("operators")
    procs = [_launch_operator(testbed, index, lease_namespace, logs) for index in range(2)]
    _wait_for_leader(testbed, lease_namespace, procs)

    def restart() -> None:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        procs[:] = [_launch_operator(testbed, index, lease_namespace, logs, restarted=True)
                    for index in range(2)]
        _wait_for_leader(testbed, lease_namespace, procs)

    yield {"lease_namespace": lease_namespace, "processes": procs, "restart": restart}
    stop_processes(*procs)


def _launch_operator(testbed, index: int, lease_namespace: str, logs: Path, *,
                     restarted: bool = False) -> subprocess.Popen:
    from django.conf import settings

    port = cluster.free_port()
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings",
               HEADWIND_TEST_DB=settings.DATABASES["default"]["NAME"],
               HEADWIND_OPERATOR_METRICS_PORT=str(port), PYTHONPATH=str(REPO_ROOT),
               HEADWIND_WEBHOOK_VERIFY="false", **testbed.env())
    log_path = logs / f"operator-{index}{'-restarted' if restarted else ''}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_operator", f"--identity=operator-{index}",
             f"--lease-namespace={lease_namespace}"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    proc.metrics_port, proc.log_path, proc.identity = port, log_path, f"operator-{index}"
    return proc


def _wait_for_leader(testbed, namespace, procs, timeout=60):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=testbed.kubeconfig)

    def leader_and_all_listed():
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"{proc.identity} exited:\n{cluster.log_tail(proc.log_path, 40)}")
        lease = client.CoordinationV1Api(api).read_namespaced_lease("headwind-operator",
                                                                    namespace)
        holder = lease.spec.holder_identity
        return holder if holder and all(b"listed" in p.log_path.read_bytes()
                                        for p in procs) else None

    try:
        return eventually(leader_and_all_listed, timeout, interval=0.3,
                          retry_on=(client.ApiException,),
                          what=lambda: "an operator leading, every replica listed:\n" + "\n".join(
                              cluster.log_tail(p.log_path, 20) for p in procs))
    finally:
        api.close()


@pytest.fixture
def stream_drained(redis_url):
    """Wait until the operator has read and acknowledged every queued image event.

    The operator acknowledges an entry only after the engine has decided on it and dispatched
    the result, so once drained, every decision (and its metrics) about it has been made.
    """
    import redis

    from operator_app import eventqueue

    client = redis.Redis.from_url(redis_url)

    def groups():
        return {g["name"].decode(): g for g in client.xinfo_groups(eventqueue.STREAM)}

    def drained() -> bool:
        group = groups().get(eventqueue.GROUP)
        return bool(group and group["pending"] == 0 and group.get("lag", 1) == 0)

    def wait(timeout: float = 30.0) -> None:
        eventually(drained, timeout, what=lambda: f"event stream drained ({groups()})",
                   interval=0.1)

    yield wait
    client.close()


def _scrape(port: int) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value} (labels as exported)."""
    samples = {}
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.fixture
def operator_metric(operators):
    """``operator_metric('name{labels}') -> float``: that sample summed over both replicas.

    Only the Lease holder decides, but which replica holds it is not the test's business, and a
    sum also catches a non-leader that decided when it must not have.
    """
    def read(sample: str) -> float:
        return sum(_scrape(p.metrics_port).get(sample, 0.0) for p in operators["processes"])

    return read


@pytest.fixture
def worker_idle(celery_worker, redis_url):
    """``worker_idle(namespace)``: wait until no Celery task for ``namespace`` is queued on the
    broker or held by the worker (active, reserved, or scheduled for a later retry)."""
    import redis

    from headwind_site.celery import app

    broker = redis.Redis.from_url(redis_url)
    queue = app.conf.task_default_queue

    def idle(namespace: str) -> bool:
        # The queue first: a message leaves it only for the worker, which the replies then show.
        # (Queued messages carry their arguments in the kwargsrepr header, in plain text.)
        if any(namespace.encode() in raw for raw in broker.lrange(queue, 0, -1)):
            return False
        inspect = app.control.inspect(timeout=5, limit=1)
        replies = [inspect.active(), inspect.reserved(), inspect.scheduled()]
        return all(reply is not None for reply in replies) and namespace not in repr(replies)

    def wait(namespace: str, timeout: float = 30.0) -> None:
        eventually(lambda: idle(namespace), timeout, f"no worker task left for {namespace}",
                   interval=0.2)

    yield wait
    broker.close()
