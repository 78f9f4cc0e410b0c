"""The workload inventory, the radar, minimum release age and maintenance windows on the
testbed: the session's two real ``run_operator`` replicas (the leader keeps the inventory and
runs the radar), the real registry and worker."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from approvals.models import AuditEvent, Workload
from headwind_site.running import Replica
from operator_app import kube
from operator_app.dispatch import ClusterDispatcher
from operator_app.engine import Engine
from operator_app.workloads import KINDS
from registry import tagbook
from registry.models import SeenTag
from registry.poller import Poller
from tests.waiting import eventually

from .test_engine_e2e import create, image_of, push_and_deliver, read, wait_image, workload
from .test_rollouts import update

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

DIRECT = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false",
          "headwind.sh/min-update-interval": "0"}


def row(namespace: str, name: str, container: str = "app", kind: str = "Deployment"):
    return Workload.objects.filter(kind=kind, namespace=namespace, name=name,
                                   container=container).first()


def wait_row(namespace, name, predicate=lambda r: True, timeout=40, **keys):
    def found():
        current = row(namespace, name, **keys)
        return current if current is not None and predicate(current) else None

    def describe():
        current = row(namespace, name, **keys)
        return f"inventory row {namespace}/{name}: {current.__dict__ if current else None}"

    return eventually(found, timeout, describe, interval=0.3)


def test_inventory_follows_the_cluster_live(kube_api, namespace, operators):
    create(kube_api, namespace, workload("Deployment", "web", "reg.example/team/web:1.4.0",
                                         {**DIRECT, "headwind.sh/event-source": "webhook"}))
    create(kube_api, namespace, workload("StatefulSet", "db", "reg.example/team/db:15.2",
                                         {"headwind.sh/policy": "patch"}))
    create(kube_api, namespace, workload("Deployment", "unmanaged", "reg.example/team/x:1.0",
                                         {}))
    web = wait_row(namespace, "web")
    assert (web.current, web.policy, web.trigger, web.require_approval) == (
        "reg.example/team/web:1.4.0", "minor", "webhook", False)
    db = wait_row(namespace, "db", kind="StatefulSet")
    assert (db.policy, db.require_approval) == ("patch", True)
    assert row(namespace, "unmanaged") is None

    # The API lists the same rows.
    from django.contrib.auth.models import User

    client = Client()
    client.force_login(User.objects.create_user("viewer", password="pw"))
    listed = client.get("/api/v1/workloads", {"namespace": namespace}).json()
    assert {(i["kind"], i["name"], i["container"]) for i in listed["items"]} == {
        ("Deployment", "web", "app"), ("StatefulSet", "db", "app")}
    assert client.get("/api/v1/workloads", {"kind": "Pod"}).status_code == 400

    # An update shows as the last update; an opt-out disappears.
    update(namespace, "Deployment", "web", "reg.example/team/web:1.4.0",
           "reg.example/team/web:1.5.0")
    web = wait_row(namespace, "web", lambda r: r.last_to.endswith(":1.5.0"))
    assert (web.last_from, web.last_by) == ("reg.example/team/web:1.4.0", "headwind")
    assert web.current == "reg.example/team/web:1.5.0"
    kube.request(kube_api, "PATCH", KINDS["StatefulSet"].object_path(namespace, "db"),
                 body=[{"op": "remove", "path": "/metadata/annotations/headwind.sh~1policy"}],
                 content_type="application/json-patch+json")
    eventually(lambda: row(namespace, "db", kind="StatefulSet") is None, 30, "opt-out gone")


def test_radar_shows_a_major_the_policy_blocks(kube_api, namespace, testbed, push_image,
                                               notification_sink, webhook_relay, operators,
                                               operator_metric):
    repository = f"{namespace}/app"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.0.0")
    create(kube_api, namespace, workload("Deployment", "app", f"{image}:1.0.0",
                                         {"headwind.sh/policy": "minor"}))
    wait_row(namespace, "app")
    push_and_deliver(push_image, notification_sink, repository, "1.1.0")
    push_and_deliver(push_image, notification_sink, repository, "2.0.0")
    radar = wait_row(namespace, "app", lambda r: r.newest_any == "2.0.0"
                     and r.newest_allowed == "1.1.0")
    assert (radar.behind_policy, radar.behind_any) == (1, 2)
    assert radar.checked_at is not None
    # (The exposition orders label names alphabetically.)
    labels = f'container="app",kind="Deployment",name="app",namespace="{namespace}"'
    assert operator_metric(f'headwind_versions_behind{{{labels},scope="policy"}}') == 1
    assert operator_metric(f'headwind_versions_behind{{{labels},scope="any"}}') == 2
    # 1.0.0 was heard of (its push) before: its age is exported.
    eventually(lambda: operator_metric(f"headwind_running_version_age_seconds{{{labels}}}") > 0,
               20, "the running version's age exported")
    # The approval waits: the radar and the request agree, and the page shows both.
    from django.contrib.auth.models import User

    client = Client()
    client.force_login(User.objects.create_user("viewer", password="pw"))
    listed = client.get("/api/v1/workloads", {"namespace": namespace, "behind": "policy"}).json()
    (item,) = listed["items"]
    assert item["radar"]["newestAllowed"] == "1.1.0" and item["radar"]["newestAny"] == "2.0.0"
    assert eventually(lambda: client.get("/api/v1/workloads", {"namespace": namespace}).json()
                      ["items"][0]["openRequests"] == 1, 20)
    page = client.get(f"/workloads/{namespace}/Deployment/app").content.decode()
    assert "2.0.0" in page and "1.1.0" in page


def test_minimum_release_age_releases_by_itself(kube_api, namespace, testbed, push_image,
                                                notification_sink, webhook_relay, operators,
                                                stream_drained, worker_idle):
    repository = f"{namespace}/app"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.0.0")
    create(kube_api, namespace, workload("Deployment", "app", f"{image}:1.0.0", {
        **DIRECT, "headwind.sh/min-release-age": "20s"}))
    wait_row(namespace, "app")
    pushed = datetime.now(UTC)
    push_and_deliver(push_image, notification_sink, repository, "1.1.0")
    stream_drained()
    worker_idle(namespace)
    assert image_of(kube_api, namespace, "Deployment", "app") == f"{image}:1.0.0"  # too young
    waiting = wait_row(namespace, "app", lambda r: r.waiting_until is not None)
    assert waiting.newest_allowed == "1.1.0"
    assert pushed + timedelta(seconds=15) < waiting.waiting_until < pushed + timedelta(
        seconds=30)
    # Nobody pushes again: it is applied once it is old enough.
    wait_image(kube_api, namespace, "Deployment", "app", f"{image}:1.1.0", timeout=60)
    applied = datetime.fromisoformat(json.loads(read(kube_api, namespace, "Deployment", "app")[
        "metadata"]["annotations"]["headwind.sh/update-history"])[0]["at"])
    assert applied >= waiting.waiting_until.replace(microsecond=0)


def test_release_age_comes_from_the_image_config(kube_api, namespace, testbed, push_image,
                                                 registry_pull_access):
    """The poller reads the image config's ``created`` of the candidates (once per digest):
    an image built two days ago passes a one-day minimum although Headwind saw it just now;
    one built now does not. A build tool's placeholder time (1970) counts as unknown."""
    repository = f"{namespace}/app"
    image = f"{testbed.registry}/{repository}"
    now = datetime.now(UTC)
    stamp = (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    push_image(repository, "1.0.0", created="1970-01-01T00:00:00Z")
    push_image(repository, "1.1.0", created=stamp)
    push_image(repository, "1.2.0", created=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    create(kube_api, namespace, workload("Deployment", "app", f"{image}:1.0.0", {
        **DIRECT, "headwind.sh/event-source": "polling", "headwind.sh/min-release-age": "1d"}))

    stop = threading.Event()
    api = kube.api_client()
    replica = Replica(api, stop)
    try:
        replica.wait_synced(30)
        applied = []

        class Recording(ClusterDispatcher):
            def apply(self, plan):
                applied.append(plan.new_image)

        poller = Poller(api, replica.cache,
                        Engine(replica.cache, Recording(api), released=tagbook.released),
                        jitter=0)
        eventually(lambda: replica.cache.get(("Deployment", namespace, "app")), 20)
        poller._next_due.clear()
        poller.run_once(wait=30)
        poller.close()
    finally:
        stop.set()
        api.close()
    rows = {r.tag: r for r in SeenTag.objects.filter(repository=f"{testbed.registry}/"
                                                     f"{repository}")}
    assert rows["1.1.0"].created == datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert rows["1.0.0"].created is None and rows["1.0.0"].created_checked  # 1970: not believed
    assert rows["1.2.0"].created is not None
    assert applied == [f"{image}:1.1.0"]


def _window(start: datetime, minutes: int) -> str:
    end = start + timedelta(minutes=minutes)
    return f"{start:%H:%M:%S}-{end:%H:%M:%S} UTC"


def test_an_update_outside_the_window_is_applied_when_it_opens(kube_api, namespace, operators,
                                                               celery_worker):
    opens = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)
    create(kube_api, namespace, workload("Deployment", "app", "reg.example/team/app:1.0.0", {
        **DIRECT, "headwind.sh/maintenance-window": _window(opens, 10)}))
    update(namespace, "Deployment", "app", "reg.example/team/app:1.0.0",
           "reg.example/team/app:1.1.0")
    scheduled = eventually(lambda: json.loads(read(kube_api, namespace, "Deployment", "app")[
        "metadata"].get("annotations", {}).get("headwind.sh/scheduled") or "{}"), 20)
    assert scheduled["app"] == {"to": "reg.example/team/app:1.1.0",
                                "at": opens.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert wait_row(namespace, "app", lambda r: r.scheduled_for is not None).scheduled_for \
        == opens
    assert image_of(kube_api, namespace, "Deployment", "app") == "reg.example/team/app:1.0.0"
    wait_image(kube_api, namespace, "Deployment", "app", "reg.example/team/app:1.1.0",
               timeout=60)
    obj = read(kube_api, namespace, "Deployment", "app")
    applied = datetime.fromisoformat(json.loads(obj["metadata"]["annotations"][
        "headwind.sh/update-history"])[0]["at"])
    assert opens <= applied < opens + timedelta(seconds=30)
    assert "headwind.sh/scheduled" not in obj["metadata"]["annotations"]


def test_apply_now_skips_the_window(kube_api, namespace, operators, celery_worker):
    from approvals.auth import create_api_token

    from .test_approvals import make_user
    from .test_approvals_api import api

    opens = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    create(kube_api, namespace, workload("Deployment", "app", "reg.example/team/app:1.0.0", {
        **DIRECT, "headwind.sh/maintenance-window": _window(opens, 30)}))
    update(namespace, "Deployment", "app", "reg.example/team/app:1.0.0",
           "reg.example/team/app:1.1.0")
    wait_row(namespace, "app", lambda r: r.scheduled_for is not None)
    client = Client()
    path = f"workloads/{namespace}/Deployment/app/apply-now"
    _, viewer_key = create_api_token(make_user("viewer", permission=False, grant=namespace),
                                     "t")
    assert api(client, "POST", path, {"container": "app"},
               HTTP_AUTHORIZATION=f"Token {viewer_key}").status_code == 403
    _, key = create_api_token(make_user("oncall", grant=namespace), "t")
    response = api(client, "POST", path, {"container": "app"}, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 202, response.content
    assert response.json()["queued"]["to"] == "reg.example/team/app:1.1.0"
    wait_image(kube_api, namespace, "Deployment", "app", "reg.example/team/app:1.1.0")
    assert AuditEvent.objects.filter(actor="oncall", action="apply_now",
                                     result="success").exists()
    assert api(client, "POST", path, {"container": "app"},
               HTTP_AUTHORIZATION=f"Token {key}").status_code == 409  # nothing waits any more
