"""Server-side filtering and sorting of the mirror, and the mirror's own bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from approvals import mirror
from approvals.models import UpdateRequest
from approvals.selectors import InvalidFilter, filter_requests, phase_counts

from .approvals_helpers import cr, make_row, record_broadcasts

pytestmark = pytest.mark.django_db


@pytest.fixture
def broadcasts(monkeypatch):
    return record_broadcasts(monkeypatch)


def names(queryset) -> list[str]:
    return [row.name for row in queryset]


@pytest.fixture
def rows():
    return {
        "old-pending": make_row("team-a", "old-pending", age_minutes=50),
        "new-done": make_row("team-a", "new-done", phase="Completed", age_minutes=1),
        "mid-pending": make_row("team-b", "mid-pending", kind="StatefulSet", target="db",
                                policy="patch", new="reg.example/postgres:16.2",
                                age_minutes=20),
        "rejected": make_row("team-b", "rejected", phase="Rejected", kind="CronJob",
                             target="backup", age_minutes=5),
        "approved": make_row("team-c", "approved", phase="Approved", age_minutes=30),
    }


def test_default_order_is_pending_first_then_newest(rows):
    assert names(filter_requests({})) == [
        "mid-pending", "old-pending", "new-done", "rejected", "approved"]


@pytest.mark.parametrize("params, expected", [
    ({"namespace": "team-b"}, ["mid-pending", "rejected"]),
    ({"namespace": "team-a,team-c"}, ["old-pending", "new-done", "approved"]),
    ({"kind": "statefulset"}, ["mid-pending"]),
    ({"kind": "CronJob,StatefulSet"}, ["mid-pending", "rejected"]),
    ({"phase": "pending"}, ["mid-pending", "old-pending"]),
    ({"phase": "Approved,Rejected"}, ["rejected", "approved"]),
    ({"policy": "patch"}, ["mid-pending"]),
    ({"q": "POSTGRES"}, ["mid-pending"]),
    ({"q": "backup"}, ["rejected"]),
    ({"q": "old-pend"}, ["old-pending"]),
    ({"namespace": "team-a", "phase": "Completed"}, ["new-done"]),
    ({"sort": "created"}, ["old-pending", "approved", "mid-pending", "rejected", "new-done"]),
    ({"sort": "-created"}, ["new-done", "rejected", "mid-pending", "approved", "old-pending"]),
    ({"sort": "phase"}, ["mid-pending", "old-pending", "approved", "new-done", "rejected"]),
    ({"sort": "namespace", "phase": "Pending"}, ["old-pending", "mid-pending"]),
    ({"sort": "-namespace", "phase": "Pending"}, ["mid-pending", "old-pending"]),
    ({"sort": "target", "namespace": "team-b"}, ["rejected", "mid-pending"]),
])
def test_filters_and_sorts(rows, params, expected):
    assert names(filter_requests(params)) == expected
    assert names(filter_requests(params, strict=True)) == expected


@pytest.mark.parametrize("params, field", [
    ({"kind": "Pod"}, "kind"),
    ({"phase": "Done"}, "phase"),
    ({"sort": "size"}, "sort"),
    ({"q": "x" * 2000}, "q"),
    ({"namespace": "n" * 2000}, "namespace"),
])
def test_strict_mode_names_the_bad_parameter(rows, params, field):
    with pytest.raises(InvalidFilter) as exc:
        list(filter_requests(params, strict=True))
    assert exc.value.field == field


def test_lenient_mode_ignores_what_it_cannot_use(rows):
    assert names(filter_requests({"sort": "size"})) == names(filter_requests({}))
    assert names(filter_requests({"kind": "Pod"})) == []  # an unknown kind matches nothing
    assert len(filter_requests({"q": "x" * 2000})) == 5


def test_phase_counts(rows):
    counts = phase_counts()
    assert counts["Pending"] == 2 and counts["Completed"] == 1 and counts["Superseded"] == 0


# --------------------------------------------------------------------------------------------
# Mirror rows
# --------------------------------------------------------------------------------------------


def test_fields_of_a_custom_resource():
    obj = cr(approvals=[{"user": "alice", "at": "2026-01-02T04:00:00Z", "comment": "ok"}],
             message="approved by alice (1 of 2)", lastUpdated="2026-01-02T04:00:00Z")
    fields = mirror.fields_of(obj)
    assert fields["namespace"] == "team-a" and fields["uid"] == "u-1"
    assert fields["target_kind"] == "Deployment" and fields["target_name"] == "web"
    assert fields["approvals_required"] == 2 and fields["phase"] == "Pending"
    assert fields["approvals"][0]["user"] == "alice"
    assert fields["created_at"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert fields["expires_at"] == datetime(2026, 1, 3, 3, 4, 5, tzinfo=UTC)
    assert mirror.fields_of(cr(phase=None))["phase"] == "Pending"  # no status yet
    assert mirror.fields_of(cr(phase="Bogus"))["phase"] == "Pending"
    long = cr()
    long["spec"]["containerName"] = "c" * 400
    assert len(mirror.fields_of(long)["container"]) == 253


def test_upsert_creates_updates_and_never_goes_back(broadcasts):
    row = mirror.upsert(cr(rv="10"))
    assert row.phase == "Pending" and UpdateRequest.objects.count() == 1
    mirror.upsert(cr(rv="12", phase="Approved", approvedBy="alice, bob",
                     approvedAt="2026-01-02T05:00:00Z"))
    row.refresh_from_db()
    assert (row.phase, row.approved_by, row.resource_version) == ("Approved", "alice, bob", "12")
    assert row.approved_at == datetime(2026, 1, 2, 5, tzinfo=UTC)
    mirror.upsert(cr(rv="11", phase="Pending"))  # a late watch event
    row.refresh_from_db()
    assert row.phase == "Approved"
    assert broadcasts == [("web-app-1-1-0-abc", False)] * 2


def test_recreated_object_replaces_the_old_row(broadcasts):
    mirror.upsert(cr(uid="old", rv="5"))
    mirror.upsert(cr(uid="new", rv="9", phase="Pending"))
    assert list(UpdateRequest.objects.values_list("uid", flat=True)) == ["new"]


def test_delete_and_replace(broadcasts):
    mirror.upsert(cr(name="a", uid="a", rv="1"))
    mirror.upsert(cr(name="b", uid="b", rv="2"))
    mirror.upsert(cr(name="c", uid="c", rv="3"))
    broadcasts.clear()
    mirror.delete(cr(name="a", uid="a"))
    assert broadcasts == [("a", True)]
    broadcasts.clear()
    changed, removed = mirror.replace([cr(name="b", uid="b", rv="2"),
                                       cr(name="d", uid="d", rv="4")])
    assert (changed, removed) == (1, 1)
    assert sorted(UpdateRequest.objects.values_list("name", flat=True)) == ["b", "d"]
    assert sorted(broadcasts) == [("c", True), ("d", False)]  # unchanged b: no broadcast


def test_unusable_objects_are_skipped(broadcasts):
    broken = cr()
    del broken["metadata"]["uid"]
    assert mirror.upsert(broken) is None
    assert UpdateRequest.objects.count() == 0


def test_broadcast_failures_do_not_stop_the_mirror(monkeypatch):
    from approvals import live

    def boom(row, event=None):
        raise RuntimeError("channel layer down")

    monkeypatch.setattr(live, "broadcast", boom)
    assert mirror.upsert(cr()) is not None
