"""One workload-adapter interface, one small implementation per kind.

Everything kind-specific (where the pod template lives, its API path) is here;
the cache, the engine and the apply task only talk to :class:`WorkloadKind`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ANNOTATION_PREFIX = "headwind.sh/"


@dataclass(frozen=True, slots=True)
class ContainerImage:
    name: str
    image: str
    init: bool = False


@dataclass(frozen=True)
class WorkloadKind:
    kind: str
    api_version: str
    plural: str
    pod_spec_path: tuple[str, ...]

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

    def pod_spec(self, obj: dict) -> dict:
        node: Any = obj
        for key in self.pod_spec_path:
            node = (node or {}).get(key) or {}
        return node

    def containers(self, obj: dict) -> list[ContainerImage]:
        spec = self.pod_spec(obj)
        found = [ContainerImage(c["name"], c.get("image", ""), True)
                 for c in spec.get("initContainers") or []]
        found += [
            ContainerImage(c["name"], c.get("image", "")) for c in spec.get("containers") or []
        ]
        return found

    def image_pointer(self, obj: dict, container: str) -> str | None:
        """JSON-pointer to a container's image, for a patch guarded by resourceVersion."""
        spec = self.pod_spec(obj)
        base = "/" + "/".join(self.pod_spec_path)
        for field in ("containers", "initContainers"):
            for index, item in enumerate(spec.get(field) or []):
                if item.get("name") == container:
                    return f"{base}/{field}/{index}/image"
        return None


DEPLOYMENT = WorkloadKind("Deployment", "apps/v1", "deployments", ("spec", "template", "spec"))
STATEFULSET = WorkloadKind("StatefulSet", "apps/v1", "statefulsets", ("spec", "template", "spec"))
DAEMONSET = WorkloadKind("DaemonSet", "apps/v1", "daemonsets", ("spec", "template", "spec"))
# A CronJob's next Job picks the new image up.
CRONJOB = WorkloadKind(
    "CronJob", "batch/v1", "cronjobs", ("spec", "jobTemplate", "spec", "template", "spec")
)

KINDS: dict[str, WorkloadKind] = {k.kind: k for k in (DEPLOYMENT, STATEFULSET, DAEMONSET, CRONJOB)}


def kind_of(name: str) -> WorkloadKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unsupported workload kind {name!r}") from None


@dataclass(frozen=True, slots=True)
class WorkloadProjection:
    """The few fields of a workload the engine reads; whole objects are never cached."""

    kind: str
    namespace: str
    name: str
    uid: str
    resource_version: str
    annotations: tuple[tuple[str, str], ...]
    containers: tuple[ContainerImage, ...]
    pull_secrets: tuple[str, ...] = ()
    service_account: str = "default"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def annotation_map(self) -> dict[str, str]:
        return dict(self.annotations)


def project(kind: WorkloadKind, obj: dict) -> WorkloadProjection | None:
    """A projection of an opted-in workload (``headwind.sh/policy`` set), else None."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if "headwind.sh/policy" not in annotations:
        return None
    pod_spec = kind.pod_spec(obj)
    ours = tuple(sorted((k, v) for k, v in annotations.items() if k.startswith(ANNOTATION_PREFIX)
                        and k != "headwind.sh/update-history"))
    return WorkloadProjection(
        kind=kind.kind,
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        resource_version=meta.get("resourceVersion", ""),
        annotations=ours,
        containers=tuple(kind.containers(obj)),
        pull_secrets=tuple(ref.get("name", "") for ref in pod_spec.get("imagePullSecrets") or []
                           if ref.get("name")),
        service_account=pod_spec.get("serviceAccountName") or "default",
    )
