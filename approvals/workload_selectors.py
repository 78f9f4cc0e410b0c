"""Filtering, search and sorting of the workload inventory (``approvals.Workload``), shared by the
Workloads page and ``GET /api/v1/workloads``.

=============  ==================================================================================
``namespace``  exact namespace; several separated by commas
``kind``       Deployment, StatefulSet, DaemonSet, CronJob, HelmRelease; case-blind
``policy``     the policy (patch, minor, ...)
``q``          case-insensitive substring of the name, container, or running reference
``behind``     ``policy`` (the policy would move it) or ``any`` (newer versions exist)
``sort``       one of :data:`SORTS`; a leading ``-`` reverses; default ``namespace``
=============  ==================================================================================

Each row carries ``open_requests``: its Pending and Approved UpdateRequests.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from .models import Phase, UpdateRequest, Workload
from .selectors import KINDS, MAX_VALUE, InvalidFilter, _canonical, _values, sort_columns

SORTS: dict[str, tuple[str, ...]] = {
    "namespace": ("namespace", "kind", "name", "container"),
    "name": ("name", "namespace", "container"),
    "kind": ("kind", "namespace", "name"),
    "behind": ("-behind_policy", "-behind_any", "namespace", "name"),
    "updated": ("-last_update_at", "namespace", "name"),
    "age": ("running_released", "namespace", "name"),
}
DEFAULT_SORT = "namespace"
BEHIND = ("policy", "any")


def open_requests() -> Subquery:
    """Pending and Approved requests of the same workload container."""
    rows = (UpdateRequest.objects.filter(
        target_kind=OuterRef("kind"), namespace=OuterRef("namespace"),
        target_name=OuterRef("name"), container=OuterRef("container"),
        phase__in=[Phase.PENDING, Phase.APPROVED])
        .order_by().values("container").annotate(n=Count("id")).values("n"))
    return Subquery(rows, output_field=IntegerField())


def filter_workloads(params: Mapping[str, str] | None = None, *,
                     strict: bool = False) -> QuerySet:
    params = params or {}
    rows = Workload.objects.all()
    namespaces = _values(params, "namespace", strict)
    if namespaces:
        rows = rows.filter(namespace__in=namespaces)
    kinds = _values(params, "kind", strict)
    if kinds:
        rows = rows.filter(kind__in=_canonical("kind", kinds, KINDS, strict))
    policies = _values(params, "policy", strict)
    if policies:
        rows = rows.filter(policy__in=[p.lower() for p in policies])
    behind = _values(params, "behind", strict)
    if behind:
        scopes = _canonical("behind", behind, BEHIND, strict)
        condition = Q()
        for scope in scopes:
            condition |= Q(**{f"behind_{scope}__gt": 0})
        rows = rows.filter(condition) if scopes else rows.none()
    text = params.get("q")
    if isinstance(text, str) and text.strip():
        if len(text) > MAX_VALUE:
            if strict:
                raise InvalidFilter("q", f"longer than {MAX_VALUE} characters")
        else:
            text = text.strip()
            rows = rows.filter(Q(name__icontains=text) | Q(container__icontains=text)
                               | Q(current__icontains=text))
    sort = params.get("sort") if isinstance(params.get("sort"), str) else ""
    columns = sort_columns(sort, SORTS, DEFAULT_SORT, strict)
    return rows.annotate(open_requests=Coalesce(open_requests(), Value(0))).order_by(
        *columns, "id")
