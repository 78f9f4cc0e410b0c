"""The HTMX dashboard through Django's test client: pages, fragments, filters, rights, CSRF.

Real database, real views, templates, permissions and services. What touches Kubernetes (an
actual approve or reject) is in ``test_dashboard_actions.py``, on the testbed; here the cluster
is only ever absent.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from approvals import live
from approvals.models import NamespaceGrant, Phase, UpdateRequest

HX = {"HTTP_HX_REQUEST": "true"}
ROW = re.compile(r'<tr id="(ur_[^"]+)"')


def make(namespace: str = "team-a", name: str | None = None, *, minutes_ago: int = 0,
         **fields) -> UpdateRequest:
    make.counter += 1
    name = name or f"web-app-{make.counter}"
    values = dict(
        uid=f"uid-{namespace}-{name}", resource_version=str(make.counter),
        target_api_version="apps/v1", target_kind="Deployment", target_name="web",
        container="app", current_image="reg.example/team/app:1.2.0",
        new_image="reg.example/team/app:1.3.0", policy="minor", reason="1.2.0 → 1.3.0",
        source="webhook", phase=Phase.PENDING,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
        expires_at=timezone.now() + timedelta(hours=24),
    )
    values.update(fields)
    return UpdateRequest.objects.create(namespace=namespace, name=name, **values)


make.counter = 0


def approver(username: str = "alice", *patterns: str) -> User:
    user = User.objects.create_user(username, password="pw-" + username)
    group = Group.objects.create(name=f"approvers-{username}")
    group.permissions.add(Permission.objects.get(codename="approve_updaterequest"))
    user.groups.add(group)
    for pattern in patterns:
        NamespaceGrant.objects.create(group=group, pattern=pattern)
    return user


def rows(response) -> list[str]:
    return ROW.findall(response.content.decode())


def toast(response) -> dict:
    return json.loads(response["HX-Trigger"])["headwind:toast"]


@pytest.fixture
def alice(db, client):
    user = approver("alice", "team-*")
    client.force_login(user)
    return user


# --------------------------------------------------------------------------------------------
# Signing in
# --------------------------------------------------------------------------------------------


def test_dashboard_requires_login(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_htmx_request_after_the_session_ended_redirects_the_whole_page(client, db):
    response = client.get("/?phase=Pending", HTTP_HX_CURRENT_URL="http://testserver/?phase=Pending",
                          **HX)
    assert response.status_code == 401
    assert response["HX-Redirect"] == "/accounts/login/?next=/%3Fphase%3DPending"


def test_login_page_signs_in_and_lands_on_the_dashboard(client, db):
    User.objects.create_user("bob", password="secret-pw-1")
    page = client.get("/accounts/login/?next=/")
    assert page.status_code == 200
    assert b'name="username"' in page.content and b"csrfmiddlewaretoken" in page.content
    response = client.post("/accounts/login/", {"username": "bob", "password": "secret-pw-1"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    client.logout()
    bad = client.post("/accounts/login/", {"username": "bob", "password": "wrong"})
    assert bad.status_code == 200 and b"didn't match" in bad.content


def test_logout_is_a_post(client, alice):
    assert client.get("/").status_code == 200
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get("/").status_code == 302


# --------------------------------------------------------------------------------------------
# The list: full page, fragments, no CDN
# --------------------------------------------------------------------------------------------


def test_full_page_serves_its_own_assets_and_fits_a_phone(client, alice):
    make()
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and 'id="filters"' in html and 'id="results"' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    scripts = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert "/static/approvals/vendor/htmx-2.0.11.min.js" in scripts
    assert "/static/approvals/headwind.css" in scripts
    assert not [url for url in scripts if "//" in url], "assets must not come from elsewhere"
    assert 'data-live-url="/ws/updates/"' in html
    assert '"X-CSRFToken"' in html  # htmx sends the token on every POST
    assert response["Vary"].count("HX-Request") == 1


def test_static_assets_are_served_by_the_app(client, db):
    for path in ("/static/approvals/vendor/htmx-2.0.11.min.js", "/static/approvals/headwind.css",
                 "/static/approvals/headwind.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert len(body) > 1000, path


def test_htmx_request_gets_only_the_results_fragment(client, alice):
    make()
    response = client.get("/?phase=Pending", **HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="results"')
    assert "<html" not in html and 'id="filters"' not in html
    assert len(rows(response)) == 1


def test_history_restore_gets_the_full_page(client, alice):
    response = client.get("/?phase=Pending", HTTP_HX_HISTORY_RESTORE_REQUEST="true", **HX)
    assert "<html" in response.content.decode()


def test_pending_first_then_newest(client, alice):
    old_done = make(name="old-done", phase=Phase.COMPLETED, minutes_ago=1)
    old_pending = make(name="old-pending", minutes_ago=30)
    new_pending = make(name="new-pending", minutes_ago=5)
    rejected = make(name="rejected", phase=Phase.REJECTED, minutes_ago=0)
    ids = rows(client.get("/", **HX))
    assert ids == [live.row_id(r.namespace, r.name)
                   for r in (new_pending, old_pending, rejected, old_done)]


@pytest.mark.parametrize(("query", "expected"), [
    ("namespace=team-b", {"b-pending"}),
    ("kind=StatefulSet", {"a-sts"}),
    ("phase=Completed", {"a-done"}),
    ("policy=major", {"a-done"}),
    ("q=redis", {"a-sts"}),
    ("q=REDIS", {"a-sts"}),
    ("namespace=team-a&phase=Pending", {"a-pending", "a-sts"}),
    ("namespace=nowhere", set()),
])
def test_filters_run_on_the_server(client, alice, query, expected):
    make("team-a", "a-pending")
    make("team-a", "a-sts", target_kind="StatefulSet", target_name="cache",
         current_image="redis:7.0", new_image="redis:7.2")
    make("team-a", "a-done", phase=Phase.COMPLETED, policy="major")
    make("team-b", "b-pending")
    response = client.get(f"/?{query}", **HX)
    assert {key.split("_", 2)[2] for key in rows(response)} == expected
    if not expected:
        assert "No request matches these filters" in response.content.decode()


def test_sorting(client, alice):
    make("team-b", "zeta", target_name="zeta", minutes_ago=3)
    make("team-a", "alpha", target_name="alpha", minutes_ago=1)
    make("team-c", "mid", target_name="mid", minutes_ago=2)
    assert rows(client.get("/?sort=namespace", **HX)) == [
        "ur_team-a_alpha", "ur_team-b_zeta", "ur_team-c_mid"]
    assert rows(client.get("/?sort=-target", **HX)) == [
        "ur_team-b_zeta", "ur_team-c_mid", "ur_team-a_alpha"]
    assert rows(client.get("/?sort=created", **HX)) == [
        "ur_team-b_zeta", "ur_team-c_mid", "ur_team-a_alpha"]


def test_pagination_is_25_a_page_and_keeps_the_filters(client, alice):
    for index in range(60):
        make("team-a", f"app-{index:02d}", minutes_ago=index)
    make("team-z", "other")
    first = client.get("/?namespace=team-a", **HX)
    html = first.content.decode()
    assert len(rows(first)) == 25 and rows(first)[0] == "ur_team-a_app-00"
    assert "60</strong> requests match" in html and "page 1 of 3" in html
    assert 'hx-get="?namespace=team-a&amp;page=2"' in html
    last = client.get("/?namespace=team-a&page=3", **HX)
    assert len(rows(last)) == 10 and rows(last)[-1] == "ur_team-a_app-59"
    assert 'hx-get="?namespace=team-a&amp;page=2"' in last.content.decode()
    beyond = client.get("/?namespace=team-a&page=99", **HX)  # a stale link: the last page
    assert rows(beyond) == rows(last)
    assert rows(client.get("/?namespace=team-a&page=x", **HX)) == rows(first)


def test_queries_do_not_grow_with_rows_or_namespaces(client, db,
                                                    django_assert_max_num_queries):
    client.force_login(approver("zed", "team-*", "ns-3"))
    for index in range(60):
        make(f"ns-{index % 9}", f"r{index}")
    with django_assert_max_num_queries(12):
        assert len(rows(client.get("/"))) == 25
    with django_assert_max_num_queries(10):
        assert len(rows(client.get("/?page=2", **HX))) == 25


def test_filter_options_come_from_the_data(client, alice):
    make("team-a")
    make("team-b")
    html = client.get("/?namespace=team-b").content.decode()
    assert '<option value="team-a">team-a</option>' in html
    assert '<option value="team-b" selected>team-b</option>' in html


def test_many_rows_never_reach_the_browser(client, alice):
    UpdateRequest.objects.bulk_create([
        UpdateRequest(namespace=f"team-{i % 7}", name=f"r-{i}", uid=f"u-{i}",
                      resource_version="1", target_api_version="apps/v1",
                      target_kind="Deployment", target_name=f"w-{i}", container="app",
                      current_image="a:1", new_image="a:2", policy="minor",
                      created_at=timezone.now() - timedelta(seconds=i))
        for i in range(1000)
    ])
    response = client.get("/")
    assert len(rows(response)) == 25
    assert "1000</strong> requests" in response.content.decode()


# --------------------------------------------------------------------------------------------
# Rows and buttons follow the actor's rights
# --------------------------------------------------------------------------------------------


def test_buttons_for_an_approver_in_a_granted_namespace(client, alice):
    make("team-a", "mine")
    make("prod", "not-mine")
    make("team-a", "finished", phase=Phase.COMPLETED)
    html = client.get("/", **HX).content.decode()
    mine = _row_html(html, "ur_team-a_mine")
    assert 'hx-get="/updates/team-a/mine/approve?from=list"' in mine
    assert 'hx-get="/updates/team-a/mine/reject?from=list"' in mine
    not_mine = _row_html(html, "ur_prod_not-mine")
    assert "disabled" in not_mine and "hx-get" not in not_mine
    assert "alice has no grant for namespace prod" in not_mine
    assert "Approve" not in _row_html(html, "ur_team-a_finished")


def test_no_buttons_without_the_permission(client, db):
    client.force_login(User.objects.create_user("viewer"))
    make("team-a", "r1")
    row = _row_html(client.get("/", **HX).content.decode(), "ur_team-a_r1")
    assert "disabled" in row and "lacks the permission" in row


def test_someone_who_already_approved_cannot_approve_again(client, alice):
    make("team-a", "two", approvals_required=2,
         approvals=[{"user": "alice", "at": "2026-01-01T00:00:00Z"}])
    row = _row_html(client.get("/", **HX).content.decode(), "ur_team-a_two")
    assert "already approved" in row and "1/2" in row


def test_row_fragment_for_live_updates(client, alice):
    make("team-a", "r1", phase=Phase.APPROVED)
    response = client.get("/updates/team-a/r1/row")
    assert response.status_code == 200
    assert rows(response) == ["ur_team-a_r1"] and "Approved" in response.content.decode()
    assert client.get("/updates/team-a/gone/row").status_code == 404


# --------------------------------------------------------------------------------------------
# Detail page
# --------------------------------------------------------------------------------------------


def test_detail_shows_everything_about_a_request(client, alice):
    make("team-a", "r1", approvals_required=2, new_digest="sha256:" + "b" * 64,
         approvals=[{"user": "carol", "at": "2026-01-02T03:04:05Z", "comment": "lgtm"}],
         message="approved by carol (1 of 2)")
    html = client.get("/updates/team-a/r1").content.decode()
    for text in ("reg.example/team/app", ":1.2.0", ":1.3.0", "minor", "webhook",
                 "1.2.0 → 1.3.0", "1 of 2", "carol", "lgtm", "approved by carol (1 of 2)",
                 "Container", "sha256:" + "b" * 64, "Expires"):
        assert text in html, text
    assert 'hx-get="/updates/team-a/r1/approve?from=detail"' in html


def test_detail_shows_the_audit_history(client, alice):
    from approvals import audit

    make("team-a", "r1")
    make("team-a", "r2")
    audit.record("carol", "approve", "team-a/r1", audit.REFUSED, "carol has no grant")
    audit.record("alice", "reject", "team-a/r1", audit.SUCCESS, "breaks login")
    audit.record("alice", "approve", "team-a/r2", audit.SUCCESS)
    html = client.get("/updates/team-a/r1").content.decode()
    history = html[html.index('<ol class="history">'):]
    assert "proposed by Headwind (webhook)" in history
    assert history.index("carol") < history.index("breaks login")
    assert "refused" in history and "r2" not in history


def test_detail_fragment_for_htmx(client, alice):
    make("team-a", "r1")
    html = client.get("/updates/team-a/r1", **HX).content.decode()
    assert html.lstrip().startswith('<article id="detail"') and "<html" not in html


def test_missing_request_is_a_404_page_not_a_500(client, alice):
    response = client.get("/updates/team-a/nope")
    assert response.status_code == 404
    assert "No such update request" in response.content.decode()
    assert "team-a/nope" in response.content.decode()
    htmx = client.get("/updates/team-a/nope", **HX)
    assert htmx.status_code == 404 and "does not exist" in toast(htmx)["message"]
    for path in ("/updates/team-a/nope/approve", "/updates/team-a/nope/reject"):
        assert client.get(path).status_code == 404
        assert client.post(path, {"reason": "x"}).status_code == 404
    assert client.get("/updates/x/y/z/w").status_code == 404


# --------------------------------------------------------------------------------------------
# Dialogs and POSTs
# --------------------------------------------------------------------------------------------


def test_approve_dialog_fragment(client, alice):
    make("team-a", "r1")
    response = client.get("/updates/team-a/r1/approve?from=list", **HX)
    html = response.content.decode()
    assert html.lstrip().startswith("<dialog")
    assert 'hx-post="/updates/team-a/r1/approve"' in html
    assert 'hx-target="#ur_team-a_r1"' in html and "csrfmiddlewaretoken" in html
    assert 'name="comment"' in html and "required" not in html.split('name="comment"')[1][:40]


def test_reject_dialog_requires_a_reason(client, alice):
    make("team-a", "r1")
    html = client.get("/updates/team-a/r1/reject?from=detail", **HX).content.decode()
    assert 'hx-target="#detail"' in html and 'name="reason"' in html and "required" in html
    response = client.post("/updates/team-a/r1/reject", {"reason": "  ", "from": "list"}, **HX)
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#dialog-slot"
    assert "A reason is required" in response.content.decode()
    assert UpdateRequest.objects.get(name="r1").phase == Phase.PENDING


def test_dialog_for_a_request_one_may_not_decide_says_why(client, alice):
    make("prod", "theirs")
    make("team-a", "done", phase=Phase.COMPLETED)
    html = client.get("/updates/prod/theirs/approve", **HX).content.decode()
    assert "You cannot approve this request: alice has no grant for namespace prod" in html
    assert re.search(r'<button type="submit"[^>]*disabled', html)
    html = client.get("/updates/team-a/done/reject", **HX).content.decode()
    assert "This request is Completed; only Pending requests can be decided." in html


def test_dialogs_work_without_javascript(client, alice):
    make("team-a", "r1")
    html = client.get("/updates/team-a/r1/reject").content.decode()
    assert "<html" in html and "<dialog" not in html
    assert 'action="/updates/team-a/r1/reject"' in html


def test_post_without_csrf_token_is_refused(db):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(approver("alice", "*"))
    make("team-a", "r1")
    for path, data in (("/updates/team-a/r1/approve", {}),
                       ("/updates/team-a/r1/reject", {"reason": "no"})):
        response = browser.post(path, data, **HX)
        assert response.status_code == 403
        assert b"CSRF" in response.content
    assert UpdateRequest.objects.get(name="r1").phase == Phase.PENDING


def test_post_with_the_csrf_header_reaches_the_service(db, monkeypatch):
    """The header htmx sends (hx-headers on <body>) passes CSRF; the cluster is down here."""
    from django.test import Client

    from approvals import cluster
    from operator_app.kube import ClusterUnreachable

    def down():
        raise ClusterUnreachable("no cluster in this test")

    monkeypatch.setattr(cluster, "api", down)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(approver("alice", "*"))
    make("team-a", "r1")
    page = browser.get("/").content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    response = browser.post("/updates/team-a/r1/approve", {"comment": ""},
                            HTTP_X_CSRFTOKEN=token, **HX)
    assert response.status_code == 503
    assert toast(response)["level"] == "error"
    assert "not available" in toast(response)["message"]
    assert UpdateRequest.objects.get(name="r1").phase == Phase.PENDING


def test_get_only_pages_refuse_other_methods(client, alice):
    make("team-a", "r1")
    assert client.post("/").status_code == 405
    assert client.post("/updates/team-a/r1").status_code == 405
    assert client.delete("/updates/team-a/r1/approve").status_code == 405


# --------------------------------------------------------------------------------------------
# Live updates: the payload and the socket's door
# --------------------------------------------------------------------------------------------


def test_broadcast_payload_and_inferred_events(db):
    fresh = make("team-a", "fresh")
    assert live.infer_event(fresh) == live.CREATED
    older = make("team-a", "older", minutes_ago=30)
    assert live.infer_event(older) == live.UPDATED
    done = make("team-a", "done", phase=Phase.COMPLETED)
    assert live.infer_event(done) == live.UPDATED
    body = live.payload(fresh, live.CREATED)
    assert body == {
        "event": "created", "namespace": "team-a", "name": "fresh", "phase": "Pending",
        "target": "Deployment web", "new_image": "reg.example/team/app:1.3.0",
        "row_id": "ur_team-a_fresh", "row_url": "/updates/team-a/fresh/row",
        "detail_url": "/updates/team-a/fresh",
    }
    fresh.delete()
    assert live.infer_event(fresh) == live.DELETED


def test_row_ids_are_unambiguous_and_selector_safe():
    assert live.row_id("a-b", "c") != live.row_id("a", "b-c")
    assert live.row_id("ns", "web.v1.2") == "ur_ns_web__v1__2"


def test_broadcast_never_raises(db, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    try:
        assert live.broadcast(make("team-a", "r1")) is False
    finally:
        channel_layers.backends.clear()


@pytest.mark.django_db(transaction=True)
def test_anonymous_websocket_is_refused(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from headwind_site.asgi import application

    async def attempt():
        communicator = WebsocketCommunicator(application, "/ws/updates/",
                                             headers=[(b"origin", b"http://localhost")])
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    connected, code = async_to_sync(attempt)()
    assert not connected and code == 4401


def _row_html(html: str, row_id: str) -> str:
    start = html.index(f'<tr id="{row_id}"')
    return html[start:html.index("</tr>", start)]
