"""A person at the dashboard: sign in, approve until Completed, reject, live rows, refusals.

See ``conftest.py`` for what runs (all of it real). Pages are never reloaded after signing in
unless a test says so: ``window.__stayed`` proves that what changed came over htmx or the socket.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from playwright.sync_api import expect

from approvals import live
from approvals.models import NamespaceGrant
from operator_app import proposals as ur
from operator_app.kube import request
from operator_app.workloads import kind_of
from tests.integration.test_dashboard_actions import NEW, OLD, pending_request

from .pages import PASSWORD, sign_in

pytestmark = [pytest.mark.testbed, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SLOW = 45_000  # ms: through the Celery worker, the API server and the mirror


def person(username: str, pattern: str | None = None, *, permission: bool = True) -> User:
    user = User.objects.create_user(username, password=PASSWORD)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="approve_updaterequest"))
    if pattern:
        NamespaceGrant.objects.create(user=user, pattern=pattern)
    return user


def row(page, namespace: str, name: str):
    return page.locator(f"#{live.row_id(namespace, name)}")


def mark_page(page) -> None:
    page.evaluate("window.__stayed = true")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__stayed") is True, "the page was reloaded"


def image_of(kube_api, namespace: str, name: str = "web") -> str:
    obj = request(kube_api, "GET", kind_of("Deployment").object_path(namespace, name))
    return obj["spec"]["template"]["spec"]["containers"][0]["image"]


def test_sign_in_approve_and_watch_it_complete(open_page, kube_api, namespace, mirror,
                                               celery_worker):
    name = pending_request(kube_api, namespace)
    person("alice", namespace)
    page = open_page()

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    sign_in(page, "alice")
    mark_page(page)
    line = row(page, namespace, name)
    expect(line).to_contain_text("Pending")
    expect(line).to_contain_text(":1.3.0")

    line.get_by_role("link", name="Approve").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("Approve Deployment web?")
    expect(dialog).to_contain_text(OLD)
    dialog.locator("textarea[name=comment]").fill("tested on staging")
    dialog.get_by_role("button", name="Approve").click()

    expect(page.locator("dialog[open]")).to_have_count(0)
    expect(page.locator("#toasts")).to_contain_text(f"Approved {namespace}/{name}")
    expect(line.locator(".badge")).to_have_text(re.compile("Approved|Completed"))
    expect(line.locator(".badge")).to_have_text(re.compile("Completed|RolledOut"),
                                                timeout=SLOW)  # live, no reload
    assert_not_reloaded(page)
    assert image_of(kube_api, namespace) == NEW
    status = ur.get(kube_api, namespace, name)["status"]
    assert status["approvals"][0] == {"user": "alice", "at": status["approvals"][0]["at"],
                                      "comment": "tested on staging"}

    line.get_by_role("link", name=re.compile("web")).click()  # the detail page
    expect(page.locator("#detail")).to_contain_text(re.compile("Completed|RolledOut"))
    expect(page.locator("#detail")).to_contain_text("tested on staging")
    expect(page.locator("#detail .facts")).to_contain_text("alice")


def test_reject_with_a_reason_on_the_detail_page(open_page, kube_api, namespace, mirror):
    name = pending_request(kube_api, namespace)
    person("bob", "t-*")
    page = open_page()
    sign_in(page, "bob", then=f"/updates/{namespace}/{name}")
    mark_page(page)
    detail = page.locator("#detail")
    expect(detail).to_contain_text("Pending")

    detail.get_by_role("link", name="Reject").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_role("button", name="Reject").click()  # empty: the browser insists
    expect(dialog).to_be_visible()
    assert dialog.locator("textarea[name=reason]").evaluate("el => !el.validity.valid")
    dialog.locator("textarea[name=reason]").fill("1.3.0 breaks the login page")
    dialog.get_by_role("button", name="Reject").click()

    expect(page.locator("dialog[open]")).to_have_count(0)
    expect(page.locator("#toasts")).to_contain_text(f"Rejected {namespace}/{name}")
    expect(detail.locator(".badge")).to_have_text("Rejected")
    expect(detail).to_contain_text("1.3.0 breaks the login page")
    expect(detail.get_by_role("link", name="Approve")).to_have_count(0)
    assert_not_reloaded(page)
    status = ur.get(kube_api, namespace, name)["status"]
    assert (status["phase"], status["rejectedBy"]) == ("Rejected", "bob")


def test_a_request_created_meanwhile_appears_live(open_page, kube_api, namespace, mirror):
    first = pending_request(kube_api, namespace)
    person("carol", "*")
    page = open_page()
    sign_in(page, "carol", then=f"/?namespace={namespace}")
    mark_page(page)
    expect(row(page, namespace, first)).to_be_visible()

    second = pending_request(kube_api, namespace, name="api", new="reg.example/team/app:1.4.0")

    fresh = row(page, namespace, second)
    expect(fresh).to_be_visible(timeout=SLOW)
    expect(fresh).to_contain_text("Deployment api")
    expect(page.locator("#toasts")).to_contain_text(f"New request {namespace}/{second}")
    expect(page.locator("#rows tr").first).to_have_id(live.row_id(namespace, second))
    expect(page.locator(".summary")).to_contain_text("2 requests")
    assert_not_reloaded(page)

    # A change made elsewhere (kubectl) shows up in place too.
    ur.set_phase(kube_api, namespace, first, ur.Phase.REJECTED, message="by kubectl",
                 extra_status={"rejectedBy": "kubectl"})
    expect(row(page, namespace, first).locator(".badge")).to_have_text("Rejected", timeout=SLOW)
    assert_not_reloaded(page)


def test_the_detail_page_follows_changes_live(open_page, kube_api, namespace, mirror):
    name = pending_request(kube_api, namespace)
    person("hugo", namespace)
    page = open_page()
    sign_in(page, "hugo", then=f"/updates/{namespace}/{name}")
    mark_page(page)
    expect(page.locator("#detail .badge")).to_have_text("Pending")

    ur.set_phase(kube_api, namespace, name, ur.Phase.REJECTED, message="not this week",
                 extra_status={"rejectedBy": "kubectl"})

    expect(page.locator("#detail .badge")).to_have_text("Rejected", timeout=SLOW)
    expect(page.locator("#detail")).to_contain_text("not this week")
    expect(page.locator("#detail").get_by_role("link", name="Approve")).to_have_count(0)
    assert_not_reloaded(page)


def test_a_user_without_the_namespace_is_refused(open_page, kube_api, namespace, mirror):
    name = pending_request(kube_api, namespace)
    person("dave", "other-team")
    erin = person("erin", namespace)

    page = open_page()
    sign_in(page, "dave", then=f"/?namespace={namespace}")
    line = row(page, namespace, name)
    expect(line.get_by_role("button", name="Approve")).to_be_disabled()
    expect(line.get_by_role("button", name="Reject")).to_be_disabled()
    expect(line).to_contain_text(f"dave has no grant for namespace {namespace}")

    # The server decides, whatever the page shows: erin's grant goes while her dialog is open.
    other = open_page()
    sign_in(other, "erin", then=f"/?namespace={namespace}")
    mark_page(other)
    line = row(other, namespace, name)
    line.get_by_role("link", name="Approve").click()
    submit = other.locator("dialog[open]").get_by_role("button", name="Approve")
    expect(submit).to_be_enabled()
    NamespaceGrant.objects.filter(user=erin).delete()
    submit.click()

    toast = other.locator("#toasts .toast-error")
    expect(toast).to_contain_text(f"Could not approve {namespace}/{name}: "
                                  f"erin has no grant for namespace {namespace}")
    expect(other.locator("dialog[open]")).to_have_count(0)
    expect(line.locator(".badge")).to_have_text("Pending")
    expect(line.get_by_role("link", name="Approve")).to_be_visible()  # the row is unchanged
    assert_not_reloaded(other)
    cr = ur.get(kube_api, namespace, name)
    assert ur.phase_of(cr) == "Pending" and not cr["status"].get("approvals")


def test_filters_paginate_on_the_server_and_push_the_url(open_page, kube_api, namespace, mirror):
    for index in range(3):
        pending_request(kube_api, namespace, name=f"web-{index}")
    person("frank", "*")
    page = open_page()
    sign_in(page, "frank")
    mark_page(page)

    page.select_option("select[name=namespace]", namespace)
    expect(page).to_have_url(re.compile(rf"namespace={namespace}"))
    expect(page.locator("#rows tr")).to_have_count(3)
    page.fill("input[name=q]", "web-1")
    expect(page.locator("#rows tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"q=web-1"))
    page.fill("input[name=q]", "no-such-thing")
    expect(page.locator(".empty")).to_contain_text("No request matches")
    assert_not_reloaded(page)
    page.go_back()  # history works: the previous filter comes back from the server
    expect(page.locator("#rows tr")).to_have_count(1)


def test_anonymous_visitors_get_neither_pages_nor_the_socket(open_page, asgi_server):
    page = open_page()
    page.goto("/updates/anything/at-all")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    outcome = page.evaluate("""() => new Promise(resolve => {
        const socket = new WebSocket(location.origin.replace('http', 'ws') + '/ws/updates/');
        socket.onopen = () => resolve('open');
        socket.onclose = () => resolve('closed');
    })""")
    assert outcome == "closed"


def test_phone_width_layout(open_page, kube_api, namespace, mirror, tmp_path):
    name = pending_request(kube_api, namespace)
    person("gina", namespace)
    page = open_page(width=390, height=844)
    sign_in(page, "gina", then=f"/?namespace={namespace}")
    line = row(page, namespace, name)
    expect(line).to_be_visible()

    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "sideways scrolling"
    assert line.evaluate("el => getComputedStyle(el).display") == "block"  # a card, not a row
    approve = line.get_by_role("link", name="Approve")
    box = approve.bounding_box()
    assert box["width"] >= 120 and box["height"] >= 32, box  # a thumb can hit it
    shots = Path(os.environ.get("HEADWIND_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "dashboard-390.png"))

    approve.click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    dialog_box = dialog.bounding_box()
    assert dialog_box["x"] >= 0 and dialog_box["x"] + dialog_box["width"] <= 390
    page.screenshot(path=str(shots / "dialog-390.png"))
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.locator("dialog[open]")).to_have_count(0)
    assert ur.phase_of(ur.get(kube_api, namespace, name)) == "Pending"


def test_the_summary_and_title_follow_live_updates(open_page, kube_api, namespace, mirror):
    """A row that a live update moves to another phase changes the summary above the list
    ("2 requests match · N pending") and the title's pending count too, without a reload."""
    from approvals.models import Phase, UpdateRequest
    from tests.waiting import eventually

    first = pending_request(kube_api, namespace)
    pending_request(kube_api, namespace, name="api", new="reg.example/team/app:1.4.0")
    person("iris", namespace)
    page = open_page()
    sign_in(page, "iris", then=f"/?namespace={namespace}&phase=Pending")
    mark_page(page)
    summary = page.locator("#results .summary")
    expect(summary).to_contain_text("2 requests match")

    def shows_the_pending_count() -> bool:
        """Pending counts every namespace (other tests' requests come and go meanwhile)."""
        count = UpdateRequest.objects.filter(phase=Phase.PENDING).count()
        title = page.title()
        return (summary.get_attribute("data-pending") == str(count)
                and f"{count} pending" in summary.inner_text()
                and (title.startswith(f"({count}) ") if count else not title.startswith("(")))

    eventually(shows_the_pending_count, 30, "the summary's pending count", interval=0.2)

    ur.set_phase(kube_api, namespace, first, ur.Phase.REJECTED, message="by kubectl",
                 extra_status={"rejectedBy": "kubectl"})
    expect(row(page, namespace, first).locator(".badge")).to_have_text("Rejected", timeout=SLOW)
    expect(summary).to_contain_text("1 request matches", timeout=SLOW)
    eventually(shows_the_pending_count, 30, "the pending count after the change", interval=0.2)
    assert_not_reloaded(page)
