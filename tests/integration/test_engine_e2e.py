"""End to end on the testbed: registry push → notification → webhook → stream → operator (leader
of two) → Celery worker → patched workload or one UpdateRequest."""

from __future__ import annotations

import json

import pytest
import requests
from kubernetes import client

from operator_app import kube
from operator_app.workloads import KINDS
from tests.waiting import eventually

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

ANNOTATIONS = {
    "headwind.sh/policy": "minor",
    "headwind.sh/require-approval": "false",
    "headwind.sh/min-update-interval": "0",
}


def workload(kind: str, name: str, image: str, annotations: dict) -> dict:
    pod = {"metadata": {"labels": {"app": name}},
           "spec": {"containers": [{"name": "app", "image": image}]}}
    spec: dict
    if kind == "CronJob":
        pod["spec"]["restartPolicy"] = "OnFailure"
        spec = {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": pod}}}
    else:
        spec = {"selector": {"matchLabels": {"app": name}}, "template": pod}
        if kind != "DaemonSet":
            spec["replicas"] = 1
        if kind == "StatefulSet":
            spec["serviceName"] = name
    return {"apiVersion": KINDS[kind].api_version, "kind": kind,
            "metadata": {"name": name, "annotations": annotations}, "spec": spec}


def create(kube_api, namespace: str, obj: dict) -> None:
    kube.request(kube_api, "POST", KINDS[obj["kind"]].collection_path(namespace), body=obj)


def read(kube_api, namespace: str, kind: str, name: str) -> dict:
    return kube.request(kube_api, "GET", KINDS[kind].object_path(namespace, name))


def image_of(kube_api, namespace, kind, name) -> str:
    return KINDS[kind].containers(read(kube_api, namespace, kind, name))[0].image


def wait_image(kube_api, namespace, kind, name, expected, timeout=30) -> None:
    eventually(lambda: image_of(kube_api, namespace, kind, name) == expected, timeout,
               lambda: f"{kind} {name}: image is {image_of(kube_api, namespace, kind, name)}, "
                       f"expected {expected}", interval=0.2)


def push_and_deliver(push_image, notification_sink, repository, tag, content=None) -> str:
    digest = push_image(repository, tag, content)
    notification_sink.wait_for(
        lambda note: any(e.get("action") == "push" and e["target"].get("repository") == repository
                         and e["target"].get("tag") == tag and e["target"].get("digest") == digest
                         for e in note.json().get("events", [])))
    return digest


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "CronJob"])
def test_minor_push_updates_and_major_push_does_not(kind, kube_api, namespace, testbed, push_image,
                                                    notification_sink, webhook_relay, operators,
                                                    stream_drained, operator_metric, worker_idle):
    repository = f"{namespace}/app"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.2.3")
    create(kube_api, namespace, workload(kind, "app", f"{image}:1.2.3", ANNOTATIONS))

    push_and_deliver(push_image, notification_sink, repository, "1.3.0")
    wait_image(kube_api, namespace, kind, "app", f"{image}:1.3.0")
    stream_drained()  # every event so far is decided: what is counted from here on is 2.0.0's
    unchanged, update = (f'headwind_decisions_total{{kind="{kind}",namespace="{namespace}",'
                         f'outcome="{outcome}"}}' for outcome in ("unchanged", "update"))
    before = {sample: operator_metric(sample) for sample in (unchanged, update)}

    push_and_deliver(push_image, notification_sink, repository, "2.0.0")
    stream_drained()  # the operator has decided on 2.0.0 (it acknowledges after deciding) …
    assert operator_metric(unchanged) > before[unchanged]
    assert operator_metric(update) == before[update]
    worker_idle(namespace)  # … and nothing for this namespace is queued or running
    assert image_of(kube_api, namespace, kind, "app") == f"{image}:1.3.0"

    obj = read(kube_api, namespace, kind, "app")
    history = json.loads(obj["metadata"]["annotations"]["headwind.sh/update-history"])
    assert [(h["from"], h["to"]) for h in history] == [(f"{image}:1.2.3", f"{image}:1.3.0")]


def test_same_push_delivered_five_times_opens_one_update_request(
        kube_api, namespace, testbed, push_image, notification_sink, webhook_relay, operators,
        stream_drained):
    repository = f"{namespace}/api"
    image = f"{testbed.registry}/{repository}"
    create(kube_api, namespace, workload("Deployment", "api", f"{image}:1.2.3",
                                         {"headwind.sh/policy": "minor"}))
    push_and_deliver(push_image, notification_sink, repository, "1.3.0")
    note = notification_sink.received[-1]
    for _ in range(4):  # the registry retrying the same delivery
        response = requests.post(f"{webhook_relay.url}/webhook/registry", data=note.body,
                                 headers={"Content-Type": note.headers["Content-Type"],
                                          "Authorization": f"Bearer {testbed.notify_token}"})
        assert response.status_code == 202
    stream_drained()
    requests_ = client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
        "headwind.sh", "v1alpha1", namespace, "updaterequests")["items"]
    assert len(requests_) == 1
    (ur,) = requests_
    assert ur["spec"]["newImage"] == f"{image}:1.3.0"
    assert ur["spec"]["currentImage"] == f"{image}:1.2.3"
    assert ur["status"]["phase"] == "Pending"
    assert image_of(kube_api, namespace, "Deployment", "api") == f"{image}:1.2.3"


def test_digest_policy_pins_a_rebuilt_tag(kube_api, namespace, testbed, push_image,
                                          notification_sink, webhook_relay, operators):
    repository = f"{namespace}/web"
    image = f"{testbed.registry}/{repository}"
    first = push_image(repository, "latest", "build 1")
    create(kube_api, namespace, workload("Deployment", "web", f"{image}:latest@{first}", {
        "headwind.sh/policy": "digest", "headwind.sh/require-approval": "false",
        "headwind.sh/min-update-interval": "0"}))
    second = push_and_deliver(push_image, notification_sink, repository, "latest", "build 2")
    assert second != first
    wait_image(kube_api, namespace, "Deployment", "web", f"{image}:latest@{second}")


def test_two_operators_one_leader_one_patch(kube_api, namespace, testbed, push_image,
                                            notification_sink, webhook_relay, operators,
                                            stream_drained, worker_idle):
    lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(
        "headwind-operator", operators["lease_namespace"])
    identities = {p.identity for p in operators["processes"]}
    assert lease.spec.holder_identity in identities
    leader_flags = {
        p.identity: requests.get(f"http://127.0.0.1:{p.metrics_port}/metrics").text
        for p in operators["processes"]
    }
    assert {i for i, text in leader_flags.items() if "\nheadwind_leader 1.0" in text} == {
        lease.spec.holder_identity}

    repository = f"{namespace}/once"
    image = f"{testbed.registry}/{repository}"
    create(kube_api, namespace, workload("Deployment", "once", f"{image}:1.0.0", ANNOTATIONS))
    push_and_deliver(push_image, notification_sink, repository, "1.1.0")
    wait_image(kube_api, namespace, "Deployment", "once", f"{image}:1.1.0")
    stream_drained()  # every delivery of the push is decided, by whichever replica …
    worker_idle(namespace)  # … and every task queued for it has run: a second patch is in by now
    obj = read(kube_api, namespace, "Deployment", "once")
    assert len(json.loads(obj["metadata"]["annotations"]["headwind.sh/update-history"])) == 1
    events = client.CoreV1Api(kube_api).list_namespaced_event(
        namespace, field_selector="involvedObject.name=once,reason=ImageUpdated").items
    assert sum(e.count or 1 for e in events) == 1


def scrape(port: int) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value} (labels as exported)."""
    samples = {}
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_update_path_metrics_are_emitted(kube_api, namespace, testbed, push_image,
                                         notification_sink, webhook_relay, operators,
                                         celery_worker, stream_drained):
    repository = f"{namespace}/metered"
    image = f"{testbed.registry}/{repository}"
    create(kube_api, namespace, workload("Deployment", "metered", f"{image}:1.0.0", ANNOTATIONS))
    create(kube_api, namespace, workload("Deployment", "gated", f"{image}:1.0.0",
                                         {"headwind.sh/policy": "minor"}))
    push_and_deliver(push_image, notification_sink, repository, "1.1.0")
    wait_image(kube_api, namespace, "Deployment", "metered", f"{image}:1.1.0")
    stream_drained()

    lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(
        "headwind-operator", operators["lease_namespace"])
    leader = next(p for p in operators["processes"]
                  if p.identity == lease.spec.holder_identity)
    operator = scrape(leader.metrics_port)
    labels = f'kind="Deployment",namespace="{namespace}"'
    assert operator[f'headwind_decisions_total{{{labels},outcome="update"}}'] == 1
    assert operator[f'headwind_decisions_total{{{labels},outcome="approval"}}'] == 1
    assert operator[f"headwind_update_requests_created_total{{{labels}}}"] == 1
    assert operator['headwind_events_processed_total{source="webhook"}'] >= 1
    assert operator["headwind_event_decision_seconds_count"] >= 1
    assert operator['headwind_workloads_watched{kind="Deployment"}'] >= 2
    assert operator["headwind_leader"] == 1

    eventually(lambda: scrape(celery_worker.metrics_port).get(
        f"headwind_updates_applied_total{{{labels}}}") == 1, 10,
        lambda: f"the worker counting one update applied in {namespace}", interval=0.2)

    from operator_app.metrics import WEBHOOK_EVENTS  # the live server runs in this process

    assert WEBHOOK_EVENTS.labels("registry", "accepted")._value.get() >= 1


def test_a_host_in_capitals_matches_a_push_named_in_lower_case(
        kube_api, namespace, testbed, notification_sink, webhook_relay, operators):
    """The workload spells its registry host ``LOCALHOST:<port>``; the registry's notification
    names the host the pusher used, ``localhost:<port>``. Hosts compare case-insensitively."""
    from tests.testbed.registry import RegistryPusher

    port = testbed.registry.rpartition(":")[2]
    pusher = RegistryPusher(f"localhost:{port}", testbed.registry_user,
                            testbed.registry_password)
    repository = f"{namespace}/app"
    image = f"LOCALHOST:{port}/{repository}"
    pusher.push_image(repository, "1.2.3")
    create(kube_api, namespace, workload("Deployment", "app", f"{image}:1.2.3", ANNOTATIONS))

    digest = pusher.push_image(repository, "1.3.0")
    note = notification_sink.wait_for(
        lambda note: any(e["target"].get("digest") == digest and e.get("action") == "push"
                         for e in note.json().get("events", [])))
    hosts = {e["request"]["host"] for e in note.json()["events"] if e.get("action") == "push"}
    assert hosts == {f"localhost:{port}"}  # the notification really names it in lower case
    wait_image(kube_api, namespace, "Deployment", "app", f"{image}:1.3.0")  # spelling kept


def managers(obj: dict) -> dict[str, set[str]]:
    """managedFields as {manager: the top-level field paths it owns} (fieldsV1 keys)."""
    owned: dict[str, set[str]] = {}
    for entry in obj["metadata"].get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        owned.setdefault(entry["manager"], set()).update(
            f"{top}.{sub}" for top, inner in fields.items() for sub in (inner or {"": 0}))
    return owned


def test_every_write_names_the_field_manager_headwind(kube_api, namespace, testbed, push_image,
                                                      notification_sink, webhook_relay, operators):
    """The workloads and UpdateRequests Headwind writes show ``headwind`` in managedFields, never
    the client library's default (``OpenAPI-Generator``): ``kubectl get -o yaml
    --show-managed-fields`` tells people who changed what."""
    repository = f"{namespace}/fm"
    image = f"{testbed.registry}/{repository}"
    push_image(repository, "1.0.0")
    for name, approval in (("auto", "false"), ("gated", "true")):
        obj = workload("Deployment", name, f"{image}:1.0.0", {
            **ANNOTATIONS, "headwind.sh/require-approval": approval})
        kube.request(kube_api, "POST", KINDS["Deployment"].collection_path(namespace), body=obj,
                     query={"fieldManager": "test-setup"})
    push_and_deliver(push_image, notification_sink, repository, "1.1.0")
    wait_image(kube_api, namespace, "Deployment", "auto", f"{image}:1.1.0")

    owned = managers(read(kube_api, namespace, "Deployment", "auto"))
    assert "OpenAPI-Generator" not in owned
    assert "f:spec.f:template" in owned["headwind"], owned
    assert "f:metadata.f:annotations" in owned["headwind"], owned

    def update_request() -> dict | None:
        items = kube.request(kube_api, "GET", f"/apis/headwind.sh/v1alpha1/namespaces/{namespace}"
                                              "/updaterequests")["items"]
        return items[0] if items and (items[0].get("status") or {}).get("phase") else None

    ur = eventually(update_request, 30, "an UpdateRequest with a status", interval=0.2)
    assert set(managers(ur)) == {"headwind"}, managers(ur)
