"""Shared helpers for the approvals unit tests (database only, no cluster)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from approvals.models import UpdateRequest

_counter = itertools.count(1)


def make_row(namespace: str = "team-a", name: str | None = None, *, phase: str = "Pending",
             kind: str = "Deployment", target: str = "web", policy: str = "minor",
             current: str = "reg.example/app:1.0.0", new: str = "reg.example/app:1.1.0",
             age_minutes: int = 0, **extra) -> UpdateRequest:
    number = next(_counter)
    return UpdateRequest.objects.create(
        namespace=namespace, name=name or f"req-{number}", uid=f"uid-{number}",
        resource_version=str(number), target_api_version="apps/v1", target_kind=kind,
        target_name=target, container="app", current_image=current, new_image=new,
        policy=policy, phase=phase,
        created_at=datetime.now(UTC) - timedelta(minutes=age_minutes), **extra)


def cr(namespace: str = "team-a", name: str = "web-app-1-1-0-abc", *, uid: str = "u-1",
       rv: str = "10", phase: str | None = "Pending", **status) -> dict:
    obj = {
        "apiVersion": "headwind.sh/v1alpha1", "kind": "UpdateRequest",
        "metadata": {"namespace": namespace, "name": name, "uid": uid, "resourceVersion": rv,
                     "creationTimestamp": "2026-01-02T03:04:05Z"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "namespace": namespace, "name": "web", "uid": "w-1"},
                 "containerName": "app", "currentImage": "reg.example/app:1.0.0",
                 "newImage": "reg.example/app:1.1.0", "policy": "minor",
                 "reason": "1.0.0 → 1.1.0", "source": "webhook", "approvalsRequired": 2,
                 "expiresAt": "2026-01-03T03:04:05Z"},
    }
    if phase is not None:
        obj["status"] = {"phase": phase, **status}
    return obj


def record_broadcasts(monkeypatch) -> list[tuple[str, bool]]:
    """Record the mirror's live broadcasts instead of sending them to a channel layer."""
    from approvals import live

    sent = []
    monkeypatch.setattr(live, "broadcast",
                        lambda row, event=None: sent.append((row.name, getattr(row, "deleted",
                                                                               False))))
    return sent
