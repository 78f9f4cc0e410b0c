"""Server-side filtering, search and sorting of the mirror, shared by dashboard, admin and API.

``filter_requests(params)`` takes a query-string-like mapping:

=============  ==================================================================================
``namespace``  exact namespace; several separated by commas
``kind``       target kind (Deployment, StatefulSet, DaemonSet, CronJob), case-blind
``phase``      Pending, Approved, Rejected, Completed, RolledOut, RolledBack, Failed, Expired,
               Superseded, case-blind
``policy``     the request's policy (patch, minor, major, ...)
``q``          case-insensitive substring of name, target name, current or new image
``sort``       one of :data:`SORTS`; a leading ``-`` reverses; default ``pending`` (pending first,
               then newest)
=============  ==================================================================================

Unknown or malformed values are ignored by default (a dashboard shows everything rather than an
error); with ``strict=True`` they raise :class:`InvalidFilter`, which the API turns into a 400.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db.models import Case, IntegerField, Q, QuerySet, Value, When

from operator_app.workloads import KINDS as WORKLOAD_KINDS

from .models import Phase, UpdateRequest

KINDS = tuple(WORKLOAD_KINDS)
PHASE_ORDER = (Phase.PENDING, Phase.APPROVED, Phase.FAILED, Phase.COMPLETED, Phase.ROLLED_BACK,
               Phase.ROLLED_OUT, Phase.REJECTED, Phase.EXPIRED, Phase.SUPERSEDED)
MAX_VALUE = 1024

#: sort key → ordering (ascending); ``-key`` reverses every column but the tie-breaker.
SORTS: dict[str, tuple[str, ...]] = {
    "pending": ("phase_rank_pending", "-created_at"),
    "created": ("created_at",),
    "namespace": ("namespace", "name"),
    "name": ("name",),
    "target": ("target_name", "container"),
    "kind": ("target_kind", "-created_at"),
    "phase": ("phase_rank", "-created_at"),
    "policy": ("policy", "-created_at"),
    "expires": ("expires_at",),
    "updated": ("mirrored_at",),
}
DEFAULT_SORT = "pending"


class InvalidFilter(ValueError):
    """A filter value that cannot be used; ``field`` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _values(params: Mapping[str, str], name: str, strict: bool) -> list[str]:
    raw = params.get(name)
    if raw is None:
        return []
    if not isinstance(raw, str):
        if strict:
            raise InvalidFilter(name, "must be a string")
        return []
    if len(raw) > MAX_VALUE:
        if strict:
            raise InvalidFilter(name, f"longer than {MAX_VALUE} characters")
        return []
    return [part.strip() for part in raw.split(",") if part.strip()]


def _canonical(name: str, values: list[str], allowed, strict: bool) -> list[str]:
    by_lower = {str(value).lower(): str(value) for value in allowed}
    found = []
    for value in values:
        canonical = by_lower.get(value.lower())
        if canonical is None:
            if strict:
                raise InvalidFilter(name, f"unknown value {value!r}; one of "
                                          f"{', '.join(by_lower.values())}")
            continue
        found.append(canonical)
    return found


def _rank(*phases: str) -> Case:
    return Case(*[When(phase=phase, then=Value(index)) for index, phase in enumerate(phases)],
                default=Value(len(phases)), output_field=IntegerField())


def search(queryset: QuerySet, text: str) -> QuerySet:
    """Rows whose name, target name or images contain ``text`` (case-insensitive)."""
    text = text.strip()
    if not text:
        return queryset
    return queryset.filter(Q(name__icontains=text) | Q(target_name__icontains=text)
                           | Q(current_image__icontains=text) | Q(new_image__icontains=text))


def sort_columns(sort: str | None, sorts: Mapping[str, tuple[str, ...]], default: str,
                 strict: bool = False) -> tuple[str, ...]:
    """The columns of the list page's ``sort`` parameter (a key of ``sorts``, ``-`` in front
    reverses it). Unknown keys fall back to ``default``, or raise InvalidFilter with
    ``strict`` (the API's 400; the HTML pages forgive a stale bookmark)."""
    key = (sort or "").strip() or default
    descending = key.startswith("-")
    base = key.lstrip("-")
    if base not in sorts:
        if strict:
            raise InvalidFilter("sort", f"unknown sort {key!r}; one of {', '.join(sorts)} "
                                        "(prefix - to reverse)")
        base, descending = default, False
    columns = sorts[base]
    if descending:
        columns = tuple(c[1:] if c.startswith("-") else f"-{c}" for c in columns)
    return columns


def ordering(sort: str | None, strict: bool = False) -> tuple[str, ...]:
    return (*sort_columns(sort, SORTS, DEFAULT_SORT, strict), "-id")


def filter_requests(params: Mapping[str, str] | None = None, *, strict: bool = False,
                    queryset: QuerySet | None = None) -> QuerySet:
    """The mirror rows matching ``params``, ordered (see the module docstring)."""
    params = params or {}
    rows = queryset if queryset is not None else UpdateRequest.objects.all()

    namespaces = _values(params, "namespace", strict)
    if namespaces:
        rows = rows.filter(namespace__in=namespaces)
    kinds = _values(params, "kind", strict)
    if kinds:  # unknown values match nothing (or raise when strict)
        rows = rows.filter(target_kind__in=_canonical("kind", kinds, KINDS, strict))
    phases = _values(params, "phase", strict)
    if phases:
        rows = rows.filter(phase__in=_canonical("phase", phases, Phase.values, strict))
    policies = _values(params, "policy", strict)
    if policies:
        rows = rows.filter(policy__in=[p.lower() for p in policies])
    text = params.get("q")
    if isinstance(text, str) and text.strip():
        if len(text) > MAX_VALUE:
            if strict:
                raise InvalidFilter("q", f"longer than {MAX_VALUE} characters")
        else:
            rows = search(rows, text)

    columns = ordering(params.get("sort") if isinstance(params.get("sort"), str) else None,
                       strict)
    if any("phase_rank_pending" in c for c in columns):
        rows = rows.annotate(phase_rank_pending=_rank(Phase.PENDING))
    if any(c.lstrip("-") == "phase_rank" for c in columns):
        rows = rows.annotate(phase_rank=_rank(*PHASE_ORDER))
    return rows.order_by(*columns)


def phase_counts(queryset: QuerySet | None = None) -> dict[str, int]:
    """Rows per phase (every phase present, zero when none)."""
    from django.db.models import Count

    rows = queryset if queryset is not None else UpdateRequest.objects.all()
    counts = dict.fromkeys(Phase.values, 0)
    for phase, count in rows.order_by().values_list("phase").annotate(n=Count("id")):
        counts[phase] = count
    return counts
