"""Target kinds: one small, data-driven adapter per kind of resource Headwind moves.

A *target* is a resource that holds artifacts: the container images of a pod template
(Deployment, StatefulSet, DaemonSet, CronJob), or the chart version of a Flux HelmRelease.
Each artifact sits in a named *slot* (a container's name, or ``chart``) and is spelled as one
reference string (an image, or a :class:`~operator_app.core.charts.ChartRef`), so the cache, the
engine, UpdateRequests and the apply task handle both the same way; only this module knows
where a kind keeps its artifacts and how one is written back.

A HelmRelease's chart reference depends on another object, its source (a ``HelmRepository``
named by ``spec.chart.spec.sourceRef``, or an ``OCIRepository`` named by ``spec.chartRef``).
Adapters take a ``sources`` lookup for it: the operator's source caches, or the API at apply
time.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .core.charts import ChartRef, InvalidChartReference, is_pinned_version, oci_tag_for
from .core.images import ImageRef, parse_image

ANNOTATION_PREFIX = "headwind.sh/"
#: Headwind's own records, which no decision reads: kept out of the cache.
NOT_PROJECTED = frozenset({"headwind.sh/update-history", "headwind.sh/rollout",
                           "headwind.sh/last-update"})
CHART_SLOT = "chart"

#: (kind, namespace, name) -> the source object, or None when it does not exist (yet).
SourceLookup = Callable[[str, str, str], "dict | None"]


def _no_sources(kind: str, namespace: str, name: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ContainerImage:
    """One artifact slot of a target: ``name`` (a container, or ``chart``) and its reference
    (an image, or a chart reference). ``init`` marks an init container."""

    name: str
    image: str
    init: bool = False


@dataclass(frozen=True)
class Location:
    """Where one slot's value lives, for a JSON Patch guarded by resourceVersion: the object to
    patch (``path``, ``obj``), the pointer to the value, the value to write for a reference, and
    extra ``test`` operations that pin what the pointer points at."""

    path: str
    obj: dict
    pointer: str
    value_for: Callable[[str], str]
    tests: tuple[dict, ...] = ()


@dataclass(frozen=True)
class TargetKind:
    kind: str
    api_version: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0] if "/" in self.api_version else ""

    @property
    def group_path(self) -> str:
        prefix = "/api" if "/" not in self.api_version else "/apis"
        return f"{prefix}/{self.api_version}"

    def collection_path(self, namespace: str | None = None) -> str:
        if namespace:
            return f"{self.group_path}/namespaces/{namespace}/{self.plural}"
        return f"{self.group_path}/{self.plural}"

    def object_path(self, namespace: str, name: str) -> str:
        return f"{self.collection_path(namespace)}/{name}"

    # -- what subclasses define --------------------------------------------------------------

    def containers(self, obj: dict, sources: SourceLookup = _no_sources) -> list[ContainerImage]:
        """The target's artifact slots with their current references."""
        raise NotImplementedError

    def parse_artifact(self, reference: str) -> ImageRef | ChartRef:
        raise NotImplementedError

    def locate(self, obj: dict, slot: str, sources: SourceLookup) -> Location | None:
        raise NotImplementedError

    def credentials(self, obj: dict, sources: SourceLookup) -> tuple[str, tuple[str, ...], str]:
        """(namespace, pull-secret names, ServiceAccount) for registry credentials."""
        raise NotImplementedError


@dataclass(frozen=True)
class PodTemplateKind(TargetKind):
    pod_spec_path: tuple[str, ...] = ()

    def pod_spec(self, obj: dict) -> dict:
        node: Any = obj
        for key in self.pod_spec_path:
            node = (node or {}).get(key) or {}
        return node

    def containers(self, obj: dict, sources: SourceLookup = _no_sources) -> list[ContainerImage]:
        spec = self.pod_spec(obj)
        found = [_shared(ContainerImage(_intern(c["name"]), c.get("image", ""), True))
                 for c in spec.get("initContainers") or []]
        found += [_shared(ContainerImage(_intern(c["name"]), c.get("image", "")))
                  for c in spec.get("containers") or []]
        return found

    def parse_artifact(self, reference: str) -> ImageRef:
        return parse_image(reference)

    def image_pointer(self, obj: dict, container: str) -> str | None:
        """JSON-pointer to a container's image."""
        spec = self.pod_spec(obj)
        base = "/" + "/".join(self.pod_spec_path)
        for field_name in ("containers", "initContainers"):
            for index, item in enumerate(spec.get(field_name) or []):
                if item.get("name") == container:
                    return f"{base}/{field_name}/{index}/image"
        return None

    def locate(self, obj: dict, slot: str, sources: SourceLookup = _no_sources,
               ) -> Location | None:
        pointer = self.image_pointer(obj, slot)
        if pointer is None:
            return None
        meta = obj.get("metadata") or {}
        return Location(self.object_path(meta.get("namespace", ""), meta.get("name", "")), obj,
                        pointer, lambda reference: reference,
                        ({"op": "test", "path": pointer.rsplit("/", 1)[0] + "/name",
                          "value": slot},))

    def credentials(self, obj: dict, sources: SourceLookup = _no_sources,
                    ) -> tuple[str, tuple[str, ...], str]:
        spec = self.pod_spec(obj)
        return ((obj.get("metadata") or {}).get("namespace", ""),
                tuple(ref.get("name", "") for ref in spec.get("imagePullSecrets") or []
                      if ref.get("name")),
                spec.get("serviceAccountName") or "default")


HELMREPOSITORY = TargetKind("HelmRepository", "source.toolkit.fluxcd.io/v1", "helmrepositories")
OCIREPOSITORY = TargetKind("OCIRepository", "source.toolkit.fluxcd.io/v1", "ocirepositories")
SOURCE_KINDS = {k.kind: k for k in (HELMREPOSITORY, OCIREPOSITORY)}


@dataclass(frozen=True)
class ChartSource:
    """Where a HelmRelease's chart comes from, and why it cannot be followed when it cannot."""

    kind: str  # HelmRepository or OCIRepository
    namespace: str
    name: str
    chart: ChartRef | None = None
    obj: dict = field(default_factory=dict, compare=False, repr=False)
    #: Why Headwind leaves this HelmRelease alone (a range version: Flux follows it).
    unfollowed: str = ""


@dataclass(frozen=True)
class HelmReleaseKind(TargetKind):
    """Flux's HelmRelease (helm.toolkit.fluxcd.io/v2): the chart version is the artifact.

    * ``spec.chart.spec`` with a ``HelmRepository`` source: the version is
      ``spec.chart.spec.version`` of the HelmRelease; the chart is ``spec.chart.spec.chart``
      in the repository at the source's ``spec.url`` (``oci://…`` when its type is ``oci``);
    * ``spec.chartRef`` to an ``OCIRepository``: the version is that source's ``spec.ref.tag``
      (Headwind moves the tag there); the chart is the last segment of its ``spec.url``.

    A version that is a range (``6.x``, ``>=6.0.0``; an OCIRepository's ``ref.semver``) or
    empty means Flux already follows the chart: Headwind leaves it alone and says why.
    """

    def source(self, obj: dict, sources: SourceLookup) -> ChartSource | None:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        namespace = meta.get("namespace", "")
        chart_spec = ((spec.get("chart") or {}).get("spec")) or {}
        if chart_spec:
            ref = chart_spec.get("sourceRef") or {}
            if ref.get("kind") != "HelmRepository" or not ref.get("name"):
                return None  # GitRepository and Bucket sources hold no versions to follow
            src_ns = ref.get("namespace") or namespace
            source = sources("HelmRepository", src_ns, ref["name"])
            if source is None:
                return ChartSource("HelmRepository", src_ns, ref["name"])
            version = str(chart_spec.get("version") or "")
            src_spec = source.get("spec") or {}
            url = str(src_spec.get("url") or "").rstrip("/")
            if src_spec.get("type") == "oci" and not url.startswith("oci://"):
                return ChartSource("HelmRepository", src_ns, ref["name"], obj=source)
            unfollowed = "" if is_pinned_version(version) else (
                f"spec.chart.spec.version {version or '(empty)'} is a range: Flux follows it")
            chart = ChartRef(url, str(chart_spec.get("chart") or ""), version.strip()) \
                if not unfollowed and url else None
            return ChartSource("HelmRepository", src_ns, ref["name"], chart, source, unfollowed)
        ref = spec.get("chartRef") or {}
        if ref.get("kind") != "OCIRepository" or not ref.get("name"):
            return None
        src_ns = ref.get("namespace") or namespace
        source = sources("OCIRepository", src_ns, ref["name"])
        if source is None:
            return ChartSource("OCIRepository", src_ns, ref["name"])
        src_spec = source.get("spec") or {}
        src_ref = src_spec.get("ref") or {}
        url = str(src_spec.get("url") or "").rstrip("/")
        base, _, chart_name = url.rpartition("/")
        if src_ref.get("semver") or src_ref.get("digest"):
            return ChartSource("OCIRepository", src_ns, ref["name"], obj=source,
                               unfollowed="the OCIRepository follows "
                               + ("a semver range" if src_ref.get("semver") else "a digest")
                               + ": Flux follows it")
        tag = str(src_ref.get("tag") or "")
        if not is_pinned_version(tag.replace("_", "+")):
            return ChartSource("OCIRepository", src_ns, ref["name"], obj=source,
                               unfollowed=f"the OCIRepository's tag {tag or '(latest)'} is not "
                                          "one version: Flux follows it")
        return ChartSource("OCIRepository", src_ns, ref["name"],
                           ChartRef(base, chart_name, tag.replace("_", "+")), source)

    def containers(self, obj: dict, sources: SourceLookup = _no_sources) -> list[ContainerImage]:
        found = self.source(obj, sources)
        if found is None or found.chart is None:
            return []
        try:
            return [ContainerImage(CHART_SLOT, str(self.parse_artifact(str(found.chart))))]
        except InvalidChartReference:
            return []

    def parse_artifact(self, reference: str) -> ChartRef:
        from .core.charts import parse_chart

        return parse_chart(reference)

    def locate(self, obj: dict, slot: str, sources: SourceLookup) -> Location | None:
        if slot != CHART_SLOT:
            return None
        found = self.source(obj, sources)
        if found is None or found.chart is None:
            return None
        if found.kind == "HelmRepository":
            meta = obj.get("metadata") or {}
            return Location(self.object_path(meta.get("namespace", ""), meta.get("name", "")),
                            obj, "/spec/chart/spec/version",
                            lambda reference: self.parse_artifact(reference).version,
                            ({"op": "test", "path": "/spec/chart/spec/chart",
                              "value": found.chart.chart},))
        return Location(OCIREPOSITORY.object_path(found.namespace, found.name), found.obj,
                        "/spec/ref/tag",
                        lambda reference: oci_tag_for(self.parse_artifact(reference).version),
                        ({"op": "test", "path": "/spec/url",
                          "value": (found.obj.get("spec") or {}).get("url")},))

    def credentials(self, obj: dict, sources: SourceLookup = _no_sources,
                    ) -> tuple[str, tuple[str, ...], str]:
        """The source's ``secretRef`` (a dockerconfigjson for OCI sources), in its namespace."""
        found = self.source(obj, sources)
        if found is None or not found.obj:
            return ((obj.get("metadata") or {}).get("namespace", ""), (), "")
        secret = ((found.obj.get("spec") or {}).get("secretRef") or {}).get("name")
        return (found.namespace, (secret,) if secret else (), "")


DEPLOYMENT = PodTemplateKind("Deployment", "apps/v1", "deployments", ("spec", "template", "spec"))
STATEFULSET = PodTemplateKind("StatefulSet", "apps/v1", "statefulsets",
                              ("spec", "template", "spec"))
DAEMONSET = PodTemplateKind("DaemonSet", "apps/v1", "daemonsets", ("spec", "template", "spec"))
# A CronJob's next Job picks the new image up.
CRONJOB = PodTemplateKind(
    "CronJob", "batch/v1", "cronjobs", ("spec", "jobTemplate", "spec", "template", "spec")
)
HELMRELEASE = HelmReleaseKind("HelmRelease", "helm.toolkit.fluxcd.io/v2", "helmreleases")

KINDS: dict[str, TargetKind] = {
    k.kind: k for k in (DEPLOYMENT, STATEFULSET, DAEMONSET, CRONJOB, HELMRELEASE)
}
#: Kept for readers of the pod-template kinds only.
WorkloadKind = TargetKind


def kind_of(name: str) -> TargetKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unsupported target kind {name!r}") from None


@dataclass(frozen=True, slots=True)
class WorkloadProjection:
    """The few fields of a target the engine reads; whole objects are never cached.

    ``pull_secrets``/``service_account`` live in ``credentials_namespace`` (a HelmRelease's
    source may be in another namespace than the release)."""

    kind: str
    namespace: str
    name: str
    uid: str
    resource_version: str
    annotations: tuple[tuple[str, str], ...]
    containers: tuple[ContainerImage, ...]
    pull_secrets: tuple[str, ...] = ()
    service_account: str = "default"
    credentials_namespace: str = ""
    #: A HelmRelease's chart source (kind, namespace, name): its URL, auth and TLS settings.
    source: tuple[str, str, str] | None = None
    #: Per slot, the newest update-history entry: (slot, at, from, to, by).
    last_changes: tuple[tuple[str, str, str, str, str], ...] = ()
    #: Per slot, the state of the rollout Headwind follows or followed: (slot, state).
    rollout_states: tuple[tuple[str, str], ...] = ()
    #: (kind, namespace, name), made once: the cache and the inventory keep it in their
    #: indexes, one tuple per workload instead of one per use.
    key: tuple[str, str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.kind, self.namespace, self.name))

    @property
    def annotation_map(self) -> dict[str, str]:
        return dict(self.annotations)

    @property
    def secrets_namespace(self) -> str:
        return self.credentials_namespace or self.namespace


def project(kind: TargetKind, obj: dict,
            sources: SourceLookup = _no_sources) -> WorkloadProjection | None:
    """A projection of an opted-in target (``headwind.sh/policy`` set), else None."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if "headwind.sh/policy" not in annotations:
        return None
    ours = _shared(tuple(sorted((k, v) for k, v in annotations.items()
                                if k.startswith(ANNOTATION_PREFIX) and k not in NOT_PROJECTED)))
    namespace, secrets, account = kind.credentials(obj, sources)
    chart_source = kind.source(obj, sources) if isinstance(kind, HelmReleaseKind) else None
    last_changes, rollout_states = _records(annotations)
    own_namespace = _intern(meta.get("namespace", ""))
    return WorkloadProjection(
        kind=kind.kind,
        namespace=own_namespace,
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        resource_version=meta.get("resourceVersion", ""),
        annotations=ours,
        containers=tuple(kind.containers(obj, sources)),
        pull_secrets=tuple(_intern(secret) for secret in secrets),
        service_account=_intern(account),
        credentials_namespace="" if namespace == own_namespace else _intern(namespace),
        source=(chart_source.kind, chart_source.namespace, chart_source.name)
        if chart_source is not None else None,
        last_changes=last_changes,
        rollout_states=rollout_states,
    )


def _intern(text):
    """Namespaces, container names, ServiceAccounts, pull secrets: a handful of values shared by
    thousands of workloads, one string each (a str from JSON is a new object every time)."""
    return sys.intern(text) if type(text) is str else text


#: Equal annotation sets and equal slots (a sidecar's name and image), one object each: 10,000
#: workloads often share a handful. Immutable values, so sharing them changes nothing but memory.
#: Bounded: a value seen once is only a reference here, and the table is let go when full.
_SHARED: dict = {}
_SHARED_MAX = 4096


def _shared(value):
    if not value:
        return value
    try:
        return _SHARED[value]
    except KeyError:
        pass
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    _SHARED[value] = value
    return value


def _records(annotations: dict) -> tuple[tuple, tuple]:
    """The newest history entry and the rollout state of each slot, for the inventory (a
    malformed annotation just shows nothing)."""
    changes: dict[str, tuple[str, str, str, str, str]] = {}
    try:
        history = json.loads(annotations.get("headwind.sh/update-history") or "[]")
    except ValueError:
        history = []
    for entry in history if isinstance(history, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("container"), str):
            changes.setdefault(entry["container"], (
                entry["container"], str(entry.get("at") or ""), str(entry.get("from") or ""),
                str(entry.get("to") or ""), str(entry.get("by") or "")))
    try:
        followed = json.loads(annotations.get("headwind.sh/rollout") or "{}")
    except ValueError:
        followed = {}
    states = tuple(sorted((slot, str(record.get("state") or ""))
                          for slot, record in (followed.items() if isinstance(followed, dict)
                                               else ()) if isinstance(record, dict)))
    return tuple(sorted(changes.values())), states


def parse_artifact(kind: str, reference: str) -> ImageRef | ChartRef:
    """A slot's reference read by its kind's rules; ValueError when it is not one."""
    return kind_of(kind).parse_artifact(reference)
