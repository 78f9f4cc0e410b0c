"""The Workloads page in Chromium: the inventory as the operator's caches see it, filtered on
the server, following the cluster without a reload, and a row leading to its workload page.

The inventory runs here as run_operator runs it (``headwind_site.inventory.Inventory`` on a
real ``Replica``'s informer caches, leading), writing the rows daphne serves."""

from __future__ import annotations

import re
import threading

import pytest
from playwright.sync_api import expect

from headwind_site.inventory import Inventory
from headwind_site.running import Replica
from operator_app import kube
from tests.integration.test_engine_e2e import create, workload

from .pages import sign_in
from .test_dashboard_browser import assert_not_reloaded, mark_page, person

pytestmark = [pytest.mark.testbed, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SLOW = 30_000  # ms: informer → inventory flush → the page's next refresh (every 5 s)


@pytest.fixture
def inventory(testbed):
    stop = threading.Event()
    api = kube.api_client()
    replica = Replica(api, stop)
    replica.wait_synced(30)
    keeper = Inventory(replica.cache, stop, lambda: True, offer=lambda event: None,
                       interval=1.0)
    keeper.start()
    yield keeper
    stop.set()
    keeper.join(5)
    api.close()


def test_workloads_page_lists_filters_and_follows_the_cluster(open_page, kube_api, namespace,
                                                              inventory):
    create(kube_api, namespace, workload("Deployment", "web", "reg.example/team/web:1.4.0",
                                         {"headwind.sh/policy": "minor"}))
    create(kube_api, namespace, workload("StatefulSet", "db", "reg.example/team/db:15.2",
                                         {"headwind.sh/policy": "patch"}))
    person("erin", namespace)
    page = open_page()
    sign_in(page, "erin")
    page.goto(f"/workloads/?namespace={namespace}")
    mark_page(page)
    table = page.locator("#workload-results")
    expect(table.locator(f"tr[data-key='Deployment/{namespace}/web/app']")).to_contain_text(
        "1.4.0", timeout=SLOW)
    expect(table.locator(f"tr[data-key='StatefulSet/{namespace}/db/app']")).to_contain_text(
        "patch", timeout=SLOW)

    # Server-side filter, without a reload.
    page.select_option("#workload-filters select[name=kind]", "StatefulSet")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"kind=StatefulSet"))
    page.select_option("#workload-filters select[name=kind]", "")
    expect(table.locator("tbody tr")).to_have_count(2)

    # A new annotated workload appears by itself.
    create(kube_api, namespace, workload("DaemonSet", "agent", "reg.example/team/agent:3.0.0",
                                         {"headwind.sh/policy": "major"}))
    expect(table.locator(f"tr[data-key='DaemonSet/{namespace}/agent/app']")).to_be_visible(
        timeout=SLOW)
    assert_not_reloaded(page)

    table.get_by_role("link", name="Deployment web").click()
    expect(page).to_have_url(re.compile(rf"/workloads/{namespace}/Deployment/web$"))
    expect(page.locator("tr[data-slot=app]")).to_contain_text("reg.example/team/web:1.4.0")
