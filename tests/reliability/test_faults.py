"""Faults on the testbed: a whole Headwind (web, operators, worker; its own Redis database)
under kill -9, restarts and load. Each scenario ends with nothing lost and nothing doubled,
counted from the Deployments' ``headwind.sh/update-history``; its figures are printed at the end
of the run ("Headwind fault suite: figures").
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from operator_app import kube
from operator_app.proposals import rfc3339
from operator_app.workloads import KINDS
from tests.testbed import cluster
from tests.waiting import eventually

from .conftest import Fleet, report

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("quiet_relay", "registry_pull_access")]


def deliver_all(bed, fleet: Fleet, tag: str, digests: dict[str, str], targets=None) -> None:
    for target in targets or fleet.targets:
        response = bed.deliver(fleet.notification(target, tag, digests[target.name]))
        assert response.status_code == 202, response.text


def push_all(fleet: Fleet, tag: str, targets=None) -> dict[str, str]:
    return {t.name: fleet.push_image(t.repository, tag) for t in targets or fleet.targets}


def test_worker_killed_mid_burst(installation, kube_api, namespace, testbed, push_image):
    """kill -9 of the only worker while it holds updates (deferred by min-update-interval, so
    surely in flight); a new worker takes them over once Redis hands them out again."""
    bed = installation(operators=1, workers=1)
    try:
        now = rfc3339(datetime.now(UTC))
        held = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false",
                "headwind.sh/min-update-interval": "20", "headwind.sh/last-update": now}
        fleet = Fleet(kube_api, namespace, testbed, push_image, 20)
        for target in fleet.targets[10:]:  # half of them wait for their interval in the worker
            kube.request(kube_api, "PATCH", KINDS["Deployment"].object_path(namespace,
                                                                            target.name),
                         body={"metadata": {"annotations": held}},
                         content_type="application/merge-patch+json")
        fleet.known_by(bed)
        digests = push_all(fleet, "1.1.0")
        deliver_all(bed, fleet, "1.1.0", digests)
        eventually(lambda: fleet.updated("1.1.0") >= 10, 60, "the first half applied")
        eventually(lambda: b"deferred" in bed.processes["worker-0"].log_path.read_bytes(), 30,
                   "the other half held by the worker")
        killed_at = time.monotonic()
        bed.kill("worker-0")  # SIGKILL: no warm shutdown, no message handed back
        bed.add_worker(1)
        eventually(lambda: fleet.updated("1.1.0") == 20, 120, "every update applied")
        recovery = time.monotonic() - killed_at
        lost, doubled = fleet.tally("1.1.0")
        report("worker kill -9 mid-burst", updates=20, held_by_killed_worker=10, lost=lost,
               doubled=doubled, recovery_s=round(recovery, 1))
        assert (lost, doubled) == (0, 0)
        assert recovery <= 90
    finally:
        bed.stop()


def test_leader_killed_mid_burst(installation, kube_api, namespace, testbed, push_image):
    """kill -9 of the leading operator while it holds events it has not acknowledged (their
    tags are not readable yet); the other replica takes the Lease and claims them."""
    bed = installation(operators=2, workers=1,
                       extra_env={"HEADWIND_WEBHOOK_VERIFY_NOT_FOUND_SECONDS": "120"})
    try:
        fleet = Fleet(kube_api, namespace, testbed, push_image, 20)
        fleet.known_by(bed)
        first, second = fleet.targets[:10], fleet.targets[10:]
        digests = push_all(fleet, "1.1.0", first)
        # The second half is announced before it can be read: the leader keeps those entries
        # pending and retries them (same content, same digest: learnt from a scratch push).
        for target in second:
            digests[target.name] = push_image(f"{namespace}/scratch", target.name,
                                              f"release of {target.name}")
        deliver_all(bed, fleet, "1.1.0", digests)
        eventually(lambda: fleet.updated("1.1.0") == 10, 60, "the first half applied")
        leader = bed.leader()
        assert leader is not None
        eventually(lambda: "not readable yet" in bed.processes[leader].log(), 30,
                   "the second half pending with the leader")
        killed_at = time.monotonic()
        bed.kill(leader)
        for target in second:
            assert push_image(target.repository, "1.1.0",
                              f"release of {target.name}") == digests[target.name]
        new_leader = eventually(lambda: (bed.leader() or "") if bed.leader() != leader else "",
                                30, "another replica leading")
        takeover = time.monotonic() - killed_at
        eventually(lambda: fleet.updated("1.1.0") == 20, 90, "every update applied")
        recovery = time.monotonic() - killed_at
        lost, doubled = fleet.tally("1.1.0")
        report("leader kill -9 mid-burst (2 operators)", updates=20, pending_at_kill=10,
               lost=lost, doubled=doubled, takeover_s=round(takeover, 1),
               recovery_s=round(recovery, 1), new_leader=new_leader)
        assert (lost, doubled) == (0, 0)
        assert takeover <= 15
    finally:
        bed.stop()


def test_redis_restart_with_updates_in_flight(installation, kube_api, namespace, testbed,
                                             push_image):
    """Redis restarts (persistent, as production runs it) while the worker holds updates and the
    stream holds events; every process rides it out, nothing held is lost, and the next push
    is applied too."""
    bed = installation(operators=1, workers=1)
    try:
        now = rfc3339(datetime.now(UTC))
        held = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false",
                "headwind.sh/min-update-interval": "15", "headwind.sh/last-update": now}
        fleet = Fleet(kube_api, namespace, testbed, push_image, 4, annotations=held)
        fleet.known_by(bed)
        digests = push_all(fleet, "1.1.0")
        deliver_all(bed, fleet, "1.1.0", digests)
        eventually(lambda: bed.processes["worker-0"].log().count("deferred") >= 4, 30,
                   "the updates held by the worker")
        directory = Path(testbed.directory)
        cluster.stop_component(directory, "redis")
        down_at = time.monotonic()
        eventually(lambda: "unavailable" in bed.processes["operator-0"].log(), 30,
                   "the operator noticing the outage")
        eventually(lambda: time.monotonic() - down_at >= 5, 10, "five seconds without Redis")
        cluster.start_component(directory, "redis")
        up_at = time.monotonic()
        # Held (unacknowledged) messages come back after the visibility timeout, once the
        # worker has reconnected: about a minute, more when its reconnect backoff is unlucky.
        eventually(lambda: fleet.updated("1.1.0") == 4, 150,
                   lambda: "the held updates applied; worker log:\n"
                   + bed.processes["worker-0"].log()[-4000:])
        digests = push_all(fleet, "1.2.0")

        def delivered() -> bool:
            try:
                return all(bed.deliver(fleet.notification(t, "1.2.0", digests[t.name]))
                           .status_code == 202 for t in fleet.targets)
            except requests.RequestException:
                return False

        eventually(delivered, 30, "webhooks accepted again")
        eventually(lambda: fleet.updated("1.2.0") == 4, 60, "the new pushes applied")
        recovery = time.monotonic() - up_at
        alive = {name: p.alive() for name, p in bed.processes.items()}
        _, held_doubled = fleet.tally("1.1.0")  # all four reached 1.1.0 (waited for above)
        lost, doubled = fleet.tally("1.2.0")
        report("Redis restart with updates in flight, then a push",
               outage_s=round(up_at - down_at, 1), held=4, lost=lost,
               doubled=doubled + held_doubled, recovery_s=round(recovery, 1),
               processes_alive=all(alive.values()))
        assert all(alive.values()), {n: bed.processes[n].log()[-3000:] for n, a in alive.items()
                                     if not a}
        assert (lost, doubled, held_doubled) == (0, 0, 0)
    finally:
        bed.stop()


def test_apiserver_outage_of_ten_seconds(installation, kube_api, namespace, testbed,
                                         push_image):
    """The API server is down for 10 s while pushes arrive; they are applied once it is back."""
    bed = installation(operators=1, workers=1)
    try:
        fleet = Fleet(kube_api, namespace, testbed, push_image, 10)
        fleet.known_by(bed)
        digests = push_all(fleet, "1.1.0")
        directory = Path(testbed.directory)
        cluster.stop_component(directory, "kube-apiserver")
        down_at = time.monotonic()
        deliver_all(bed, fleet, "1.1.0", digests)
        eventually(lambda: time.monotonic() - down_at >= 10, 15, "ten seconds of outage")
        cluster.start_component(directory, "kube-apiserver")
        eventually(lambda: apiserver_ready(testbed), 60, "the API server back",
                   retry_on=(requests.RequestException,))
        back_at = time.monotonic()
        eventually(lambda: fleet.updated("1.1.0") == 10, 90, "every update applied")
        catch_up = time.monotonic() - back_at
        lost, doubled = fleet.tally("1.1.0")
        report("API server down 10 s during pushes", updates=10, lost=lost, doubled=doubled,
               catch_up_s=round(catch_up, 1))
        assert (lost, doubled) == (0, 0)
    finally:
        bed.stop()


def test_two_thousand_deliveries_on_sixteen_connections(installation, kube_api, namespace,
                                                        testbed, push_image):
    """2,000 deliveries (each push delivered 100 times, as a retrying registry might) on 16
    connections: every one accepted, none lost in the stream, each update applied once."""
    bed = installation(operators=1, workers=1)
    try:
        fleet = Fleet(kube_api, namespace, testbed, push_image, 20)
        fleet.known_by(bed)
        digests = push_all(fleet, "1.1.0")
        bodies = [fleet.notification(t, "1.1.0", digests[t.name]) for t in fleet.targets] * 100
        statuses: Counter = Counter()
        lock = threading.Lock()
        local = threading.local()

        def send(body: bytes) -> None:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            status = bed.deliver(body, session=session).status_code
            with lock:
                statuses[status] += 1

        import redis

        from operator_app import eventqueue

        stream = redis.Redis.from_url(bed.redis_url)
        before = stream.xlen(eventqueue.STREAM)
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(send, bodies))
        seconds = time.monotonic() - started
        queued = stream.xlen(eventqueue.STREAM) - before
        bed.stream_drained(timeout=240)
        eventually(lambda: fleet.updated("1.1.0") == 20, 60, "every update applied")
        lost, doubled = fleet.tally("1.1.0")
        report("2,000 deliveries on 16 connections", accepted=statuses[202],
               server_errors=sum(n for s, n in statuses.items() if s >= 500),
               accepted_per_s=round(statuses[202] / seconds), queued=queued, lost=lost,
               doubled=doubled)
        assert statuses == {202: 2000}
        assert queued == 2000
        assert (lost, doubled) == (0, 0)
    finally:
        bed.stop()


def apiserver_ready(testbed) -> bool:
    return requests.get(f"{testbed.apiserver_url}/readyz", verify=testbed.ca_file,
                        cert=None, timeout=2).status_code in (200, 401, 403)
