"""A person rolls a workload back from its page in Chromium: the history, the confirmation, the
hold it leaves, and releasing it. Everything real (see ``conftest.py``)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from approvals.models import AuditEvent
from operator_app.apply import UpdateCommand
from operator_app.tasks import queue_update
from tests.integration.test_engine_e2e import create, image_of, wait_image, workload

from .pages import sign_in
from .test_dashboard_browser import person

pytestmark = [pytest.mark.testbed, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

IMAGE = "reg.example/team/app"
DIRECT = {"headwind.sh/policy": "minor", "headwind.sh/require-approval": "false",
          "headwind.sh/min-update-interval": "0"}


def test_roll_back_from_the_workload_page(open_page, kube_api, namespace, celery_worker):
    create(kube_api, namespace, workload("Deployment", "app", f"{IMAGE}:1.0.0", DIRECT))
    queue_update(UpdateCommand(kind="Deployment", namespace=namespace, name="app",
                               container="app", new_image=f"{IMAGE}:1.1.0",
                               expected_image=f"{IMAGE}:1.0.0"))
    wait_image(kube_api, namespace, "Deployment", "app", f"{IMAGE}:1.1.0")
    person("carol", namespace)
    page = open_page()
    sign_in(page, "carol")

    page.goto(f"/workloads/{namespace}/Deployment/app")
    slot = page.locator("tr[data-slot=app]")
    expect(slot).to_contain_text(f"{IMAGE}:1.1.0")
    page.get_by_role("link", name=f"Roll back to {IMAGE}:1.0.0").click()

    # The confirmation: nothing has happened yet.
    expect(page.locator("h1")).to_have_text("Roll back Deployment app?")
    expect(page.locator(".facts")).to_contain_text(f"{IMAGE}:1.0.0")
    assert image_of(kube_api, namespace, "Deployment", "app") == f"{IMAGE}:1.1.0"
    page.fill("textarea[name=reason]", "1.1.0 breaks checkout")
    page.get_by_role("button", name="Roll back").click()

    expect(page).to_have_url(re.compile(rf"/workloads/{namespace}/Deployment/app$"))
    expect(page.locator("#toasts")).to_contain_text(f"Rolling app back to {IMAGE}:1.0.0")
    wait_image(kube_api, namespace, "Deployment", "app", f"{IMAGE}:1.0.0")
    assert AuditEvent.objects.filter(actor="carol", action="rollback", result="success",
                                     reason="1.1.0 breaks checkout").exists()

    page.reload()
    expect(slot.locator(".hold")).to_contain_text("held at 1.0.0 by carol")
    expect(page.locator("tr.rollback")).to_contain_text("1.1.0 breaks checkout")
    slot.get_by_role("button", name="Release hold").click()
    expect(page.locator("#toasts")).to_contain_text("Released the hold on app")
    expect(slot.locator(".hold")).to_have_text("—")


def test_a_viewer_sees_the_history_but_no_buttons(open_page, kube_api, namespace,
                                                  celery_worker):
    create(kube_api, namespace, workload("Deployment", "app", f"{IMAGE}:1.0.0", DIRECT))
    queue_update(UpdateCommand(kind="Deployment", namespace=namespace, name="app",
                               container="app", new_image=f"{IMAGE}:1.1.0",
                               expected_image=f"{IMAGE}:1.0.0"))
    wait_image(kube_api, namespace, "Deployment", "app", f"{IMAGE}:1.1.0")
    person("dave", namespace, permission=False)
    page = open_page()
    sign_in(page, "dave")
    page.goto(f"/workloads/{namespace}/deployments/app")
    expect(page.locator(".history-table")).to_contain_text(f"{IMAGE}:1.0.0")
    expect(page.get_by_role("link", name=re.compile("Roll back to"))).to_have_count(0)
    expect(page.locator("article")).to_contain_text("You can look, not act")
    # Posting anyway is refused by the service, whatever the page offered.
    csrf = page.locator("form.logout input[name=csrfmiddlewaretoken]").get_attribute("value")
    response = page.request.post(f"/workloads/{namespace}/Deployment/app/rollback",
                                 form={"csrfmiddlewaretoken": csrf, "container": "app",
                                       "to": f"{IMAGE}:1.0.0"})
    assert response.status == 403
    assert "lacks the permission" in response.text()
    assert image_of(kube_api, namespace, "Deployment", "app") == f"{IMAGE}:1.1.0"
