"""Dashboard actions on the testbed: real UpdateRequests, real API server, real Redis.

The Django test client posts what the dialogs post (htmx headers included); the services write
the custom resource, and the rows come from the mirror's own ``upsert``. No Celery worker here
(the full path to Completed is the browser test's): an approval is queued and left at that.
"""

from __future__ import annotations

import json
import re
import threading

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission, User
from django.test import Client

from approvals import cluster, live, mirror
from approvals.models import AuditEvent, NamespaceGrant, Phase, UpdateRequest
from operator_app import proposals as ur

from .test_proposals import create, propose

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

OLD, NEW = "reg.example/team/app:1.2.0", "reg.example/team/app:1.3.0"
HX = {"HTTP_HX_REQUEST": "true"}


def pending_request(kube_api, namespace: str, *, name: str = "web", new: str = NEW,
                    annotations: dict | None = None) -> str:
    """A Deployment running OLD and a Pending UpdateRequest moving it to ``new``; its name."""
    obj = create(kube_api, namespace, "Deployment", name, {"app": OLD},
                 {"headwind.sh/policy": "minor", **(annotations or {})})
    return propose(kube_api, obj, new).name


def mirrored(kube_api, namespace: str, name: str) -> UpdateRequest:
    return mirror.upsert(ur.get(kube_api, namespace, name), notify=False)


def user_with(username: str, pattern: str | None) -> User:
    user = User.objects.create_user(username, password="pw-" + username)
    user.user_permissions.add(Permission.objects.get(codename="approve_updaterequest"))
    if pattern:
        NamespaceGrant.objects.create(user=user, pattern=pattern)
    return user


def browser_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def toast(response) -> dict:
    return json.loads(response["HX-Trigger"])["headwind:toast"]


@pytest.fixture(autouse=True)
def services_use_the_testbed(testbed):
    cluster.use(None)  # built again from the testbed's kubeconfig on first use
    yield
    cluster.use(None)


def test_approve_from_the_list_records_the_real_user(kube_api, namespace):
    name = pending_request(kube_api, namespace)
    mirrored(kube_api, namespace, name)
    alice = browser_for(user_with("alice", "t-*"))

    response = alice.post(f"/updates/{namespace}/{name}/approve",
                          {"comment": "ship it", "from": "list"}, **HX)

    assert response.status_code == 200, response.content
    html = response.content.decode()
    assert html.lstrip().startswith(f'<tr id="{live.row_id(namespace, name)}"')
    assert "Approved" in html and "hx-get" not in html  # no buttons once decided
    assert toast(response) == {"level": "success",
                               "message": f"Approved {namespace}/{name}; the update is being "
                                          "applied."}
    # The approval queued the update: a Celery worker of the session may have applied it
    # already, so the phase is Approved or one that follows it; who approved stays.
    approved_or_later = (Phase.APPROVED, Phase.COMPLETED, Phase.ROLLED_OUT)
    status = ur.get(kube_api, namespace, name)["status"]
    assert status["phase"] in approved_or_later and status["approvedBy"] == "alice"
    assert status["approvals"][0]["user"] == "alice"
    assert status["approvals"][0]["comment"] == "ship it"
    assert UpdateRequest.objects.get(namespace=namespace, name=name).phase in approved_or_later
    event = AuditEvent.objects.get(action="approve", target=f"{namespace}/{name}")
    assert (event.actor, event.result) == ("alice", "success")


def test_two_approvers_needed_the_first_approval_keeps_it_pending(kube_api, namespace):
    name = pending_request(kube_api, namespace,
                           annotations={"headwind.sh/approvals-required": "2"})
    mirrored(kube_api, namespace, name)
    alice = browser_for(user_with("alice", namespace))

    response = alice.post(f"/updates/{namespace}/{name}/approve", {"from": "detail"}, **HX)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<article id="detail"')
    assert "already approved" in html  # alice's buttons are now disabled
    assert toast(response)["message"] == f"Approval recorded for {namespace}/{name} (1 of 2)."
    assert ur.phase_of(ur.get(kube_api, namespace, name)) == "Pending"


def test_reject_with_a_reason(kube_api, namespace):
    name = pending_request(kube_api, namespace)
    mirrored(kube_api, namespace, name)
    bob = browser_for(user_with("bob", "*"))

    response = bob.post(f"/updates/{namespace}/{name}/reject",
                        {"reason": "1.3.0 breaks the login page", "from": "list"}, **HX)

    assert response.status_code == 200
    assert "Rejected" in response.content.decode()
    assert toast(response) == {"level": "success", "message": f"Rejected {namespace}/{name}."}
    status = ur.get(kube_api, namespace, name)["status"]
    assert (status["phase"], status["rejectedBy"], status["message"]) == (
        "Rejected", "bob", "1.3.0 breaks the login page")


def test_no_grant_for_the_namespace_is_a_403_toast_and_nothing_changes(kube_api, namespace):
    name = pending_request(kube_api, namespace)
    before = mirrored(kube_api, namespace, name)
    carol = browser_for(user_with("carol", "other-team"))

    page = carol.get("/", {"namespace": namespace}, **HX).content.decode()
    assert f"carol has no grant for namespace {namespace}" in page
    assert f'hx-get="/updates/{namespace}/{name}/approve' not in page

    response = carol.post(f"/updates/{namespace}/{name}/approve", {"from": "list"}, **HX)

    assert response.status_code == 403
    assert "HX-Retarget" not in response  # htmx swaps nothing: the row stays as it was
    assert toast(response) == {
        "level": "error",
        "message": f"Could not approve {namespace}/{name}: carol has no grant for namespace "
                   f"{namespace}",
    }
    cr = ur.get(kube_api, namespace, name)
    assert ur.phase_of(cr) == "Pending" and not cr["status"].get("approvals")
    after = UpdateRequest.objects.get(pk=before.pk)
    assert (after.phase, after.resource_version) == ("Pending", before.resource_version)
    event = AuditEvent.objects.get(action="approve", target=f"{namespace}/{name}")
    assert (event.actor, event.result) == ("carol", "refused")


def test_acting_on_a_decided_request_is_a_409_toast(kube_api, namespace):
    name = pending_request(kube_api, namespace)
    mirrored(kube_api, namespace, name)
    ur.set_phase(kube_api, namespace, name, ur.Phase.REJECTED, message="no",
                 extra_status={"rejectedBy": "kubectl"})
    dave = browser_for(user_with("dave", "*"))

    response = dave.post(f"/updates/{namespace}/{name}/approve", {"from": "list"}, **HX)

    assert response.status_code == 409
    assert toast(response)["level"] == "error"
    assert "is Rejected; only Pending requests can be approved" in toast(response)["message"]


def test_without_javascript_the_action_redirects_with_a_message(kube_api, namespace):
    name = pending_request(kube_api, namespace)
    mirrored(kube_api, namespace, name)
    erin = browser_for(user_with("erin", "*"))

    response = erin.post(f"/updates/{namespace}/{name}/reject", {"reason": "not now"},
                         follow=True)

    assert response.redirect_chain == [(f"/updates/{namespace}/{name}", 302)]
    assert f"Rejected {namespace}/{name}." in response.content.decode()


def test_broadcast_reaches_a_signed_in_websocket(kube_api, namespace, redis_url):
    """``live.broadcast`` from a plain thread (as the mirror calls it) → Redis → the socket."""
    from channels.layers import channel_layers
    from channels.testing import WebsocketCommunicator

    from headwind_site.asgi import application

    channel_layers.backends.clear()  # built again on the testbed's Redis
    name = pending_request(kube_api, namespace)
    row = mirrored(kube_api, namespace, name)
    viewer = browser_for(User.objects.create_user("viewer"))
    cookie = f"sessionid={viewer.cookies['sessionid'].value}".encode()

    async def listen() -> tuple[dict, bool]:
        socket = WebsocketCommunicator(application, "/ws/updates/", headers=[
            (b"origin", b"http://localhost"), (b"cookie", cookie)])
        connected, _ = await socket.connect()
        assert connected
        sent = []
        thread = threading.Thread(target=lambda: sent.append(live.broadcast(row)))
        thread.start()
        message = await socket.receive_json_from(timeout=10)
        thread.join()
        await socket.disconnect()
        return message, sent[0]

    message, sent = async_to_sync(listen)()

    assert sent is True
    assert message["namespace"] == namespace and message["name"] == name
    assert message["event"] == "created" and message["phase"] == "Pending"
    assert message["row_url"] == f"/updates/{namespace}/{name}/row"
    assert re.fullmatch(r"ur_[a-z0-9-]+_[a-z0-9-]+", message["row_id"])
