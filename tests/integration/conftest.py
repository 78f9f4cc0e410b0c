"""Fixtures for end-to-end tests: the operator processes and the registry → webhook relay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.testbed import cluster
from tests.testbed.fixtures import stop_processes

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def webhook_relay(testbed, notification_sink, live_server):
    """Registry notifications reach ``/webhook/registry`` of a live Django server."""
    os.environ["HEADWIND_WEBHOOK_REGISTRY_TOKEN"] = testbed.notify_token
    notification_sink.forward_to = f"{live_server.url}/webhook/registry"
    yield live_server
    notification_sink.forward_to = None


@pytest.fixture(scope="session")
def operators(testbed, celery_worker, django_db_setup, tmp_path_factory):
    """Two ``manage.py run_operator`` replicas competing for one Lease."""
    from django.conf import settings

    lease_namespace = f"headwind-{uuid.uuid4().hex[:6]}"
    logs = tmp_path_factory.mktemp("operators")
    procs = []
    for index in range(2):
        port = cluster.free_port()
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings",
                   HEADWIND_TEST_DB=settings.DATABASES["default"]["NAME"],
                   HEADWIND_OPERATOR_METRICS_PORT=str(port), PYTHONPATH=str(REPO_ROOT),
                   **testbed.env())
        log_path = logs / f"operator-{index}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "run_operator", f"--identity=operator-{index}",
                 f"--lease-namespace={lease_namespace}"],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        proc.metrics_port, proc.log_path, proc.identity = port, log_path, f"operator-{index}"
        procs.append(proc)
    _wait_for_leader(testbed, lease_namespace, procs)
    yield {"lease_namespace": lease_namespace, "processes": procs}
    stop_processes(*procs)


def _wait_for_leader(testbed, namespace, procs, timeout=60):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=testbed.kubeconfig)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    pytest.fail(f"{proc.identity} exited:\n{cluster.log_tail(proc.log_path, 40)}")
            try:
                lease = client.CoordinationV1Api(api).read_namespaced_lease(
                    "headwind-operator", namespace)
                holder = lease.spec.holder_identity
                if holder and all(b"listed" in p.log_path.read_bytes() for p in procs):
                    return holder
            except client.ApiException:
                pass
            time.sleep(0.3)
    finally:
        api.close()
    pytest.fail("no operator became leader:\n" + "\n".join(
        cluster.log_tail(p.log_path, 20) for p in procs))


@pytest.fixture
def stream_drained(redis_url):
    """Wait until the operator has read and acknowledged every queued image event."""
    import redis

    from operator_app import eventqueue

    client = redis.Redis.from_url(redis_url)

    def wait(timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            groups = {g["name"].decode(): g for g in client.xinfo_groups(eventqueue.STREAM)}
            group = groups.get(eventqueue.GROUP)
            if group and group["pending"] == 0 and group.get("lag", 1) == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"event stream not drained within {timeout}s: {groups}")

    return wait
