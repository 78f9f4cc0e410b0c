"""The admin: a read-only mirror with filters and search, editable grants, a read-only audit.

(The bulk approve and reject actions run against the testbed: tests/integration.)
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse

from approvals import audit
from approvals.models import AuditEvent, NamespaceGrant

from .approvals_helpers import make_row

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:approvals_updaterequest_changelist")


@pytest.fixture
def admin_client():
    root = User.objects.create_superuser("root", password="x")
    client = Client()
    client.force_login(root)
    return client


def listed(response) -> list[str]:
    return [row.name for row in response.context["cl"].result_list]


def test_changelist_filters_search_and_pending_first(admin_client):
    make_row("team-a", "done", phase="Completed", age_minutes=1)
    make_row("team-a", "older", age_minutes=30)
    make_row("team-b", "newer", kind="StatefulSet", policy="patch",
             new="reg.example/postgres:16", age_minutes=10)
    assert listed(admin_client.get(CHANGELIST)) == ["newer", "older", "done"]
    assert listed(admin_client.get(CHANGELIST, {"namespace": "team-a"})) == ["older", "done"]
    assert listed(admin_client.get(CHANGELIST, {"target_kind": "StatefulSet"})) == ["newer"]
    assert listed(admin_client.get(CHANGELIST, {"phase__exact": "Completed"})) == ["done"]
    assert listed(admin_client.get(CHANGELIST, {"policy": "patch"})) == ["newer"]
    assert listed(admin_client.get(CHANGELIST, {"q": "postgres"})) == ["newer"]
    assert listed(admin_client.get(CHANGELIST, {"q": "older"})) == ["older"]
    page = admin_client.get(CHANGELIST)
    actions = dict(page.context["action_form"].fields["action"].choices)
    assert set(actions) == {"", "approve_selected", "reject_selected",
                            "roll_back_selected"}  # no bulk delete


def test_update_requests_cannot_be_added_changed_or_deleted(admin_client):
    row = make_row()
    assert admin_client.get(reverse("admin:approvals_updaterequest_add")).status_code == 403
    change = reverse("admin:approvals_updaterequest_change", args=[row.pk])
    page = admin_client.get(change)
    assert page.status_code == 200 and b'name="new_image"' not in page.content
    admin_client.post(change, {"new_image": "evil:1"})
    row.refresh_from_db()
    assert row.new_image == "reg.example/app:1.1.0"
    delete = reverse("admin:approvals_updaterequest_delete", args=[row.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403


def test_reject_action_asks_for_a_reason_first(admin_client):
    row = make_row()
    page = admin_client.post(CHANGELIST, {"action": "reject_selected",
                                          "_selected_action": [row.pk], "index": "0"})
    assert page.status_code == 200
    assert b'name="reason"' in page.content and row.name.encode() in page.content
    assert AuditEvent.objects.count() == 0


def test_staff_without_the_permission_sees_no_actions():
    staff = User.objects.create_user("sam", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_updaterequest"))
    client = Client()
    client.force_login(staff)
    make_row()
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert page.context["action_form"] is None or set(
        dict(page.context["action_form"].fields["action"].choices)) <= {""}
    nobody = User.objects.create_user("nobody", password="x", is_staff=True)
    client.force_login(nobody)
    assert client.get(CHANGELIST).status_code == 403


def test_namespace_grants_are_edited_in_the_admin(admin_client):
    team = Group.objects.create(name="team-a")
    add = reverse("admin:approvals_namespacegrant_add")
    response = admin_client.post(add, {"group": team.pk, "pattern": "team-a-*"})
    assert response.status_code == 302
    assert NamespaceGrant.objects.get().pattern == "team-a-*"
    neither = admin_client.post(add, {"pattern": "x"})
    assert b"Choose either a group or a user" in neither.content
    spaces = admin_client.post(add, {"group": team.pk, "pattern": "a b"})
    assert b"no spaces" in spaces.content


def test_audit_events_are_read_only(admin_client):
    event = audit.record("alice", "approve", "team-a/web-1")
    assert admin_client.get(reverse("admin:approvals_auditevent_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:approvals_auditevent_add")).status_code == 403
    change = reverse("admin:approvals_auditevent_change", args=[event.pk])
    admin_client.post(change, {"actor": "mallory"})
    event.refresh_from_db()
    assert event.actor == "alice"
    delete = reverse("admin:approvals_auditevent_delete", args=[event.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
