"""Who is acting, and may they approve here?

Two models, one per kind of identity:

* Django users (login, SSO, trusted proxy, API token): the ``approvals.approve_updaterequest``
  permission **and** a :class:`~approvals.models.NamespaceGrant` (for the user or one of their
  groups) whose shell-style pattern matches the namespace. Superusers hold every permission, so
  they need no grant.
* Kubernetes-token users (TokenReview): the API server decides with a SubjectAccessReview whether
  the caller may ``patch`` the target workload; Django permissions and grants do not apply.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field

from django.db.models import Q

from operator_app import kube
from operator_app.workloads import kind_of

from . import cluster
from .models import NamespaceGrant

log = logging.getLogger(__name__)

PERMISSION = "approvals.approve_updaterequest"

VIA_SESSION = "session"
VIA_PROXY = "proxy"
VIA_API_TOKEN = "api-token"
VIA_KUBERNETES = "kubernetes"


@dataclass
class Actor:
    """The person (or service account) behind a request.

    ``username`` is what approvals and the audit trail record. ``user`` is the Django user, or
    None for Kubernetes-token callers, who carry ``kube_user``/``kube_groups`` instead.
    """

    username: str
    user: object | None = None
    groups: frozenset[str] = frozenset()
    via: str = VIA_SESSION
    kube_user: str | None = None
    kube_groups: tuple[str, ...] = ()
    kube_uid: str = ""
    kube_extra: dict = field(default_factory=dict)
    _patterns: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def is_authenticated(self) -> bool:
        if self.kube_user:
            return True
        return bool(self.user is not None and getattr(self.user, "is_authenticated", False))

    @property
    def is_kubernetes(self) -> bool:
        return bool(self.kube_user)

    @classmethod
    def anonymous(cls) -> Actor:
        return cls(username="anonymous")

    @classmethod
    def from_user(cls, user, via: str = VIA_SESSION) -> Actor:
        if user is None or not getattr(user, "is_authenticated", False):
            return cls.anonymous()
        groups = frozenset(user.groups.values_list("name", flat=True))
        return cls(username=user.get_username(), user=user, groups=groups, via=via)

    @classmethod
    def kubernetes(cls, username: str, groups=(), uid: str = "", extra: dict | None = None
                   ) -> Actor:
        return cls(username=username, groups=frozenset(groups), via=VIA_KUBERNETES,
                   kube_user=username, kube_groups=tuple(groups), kube_uid=uid,
                   kube_extra=dict(extra or {}))

    @classmethod
    def from_request(cls, request) -> Actor:
        """The API's authenticated caller if it set one, else ``request.user``."""
        actor = getattr(request, "headwind_actor", None)
        if isinstance(actor, Actor):
            return actor
        user = getattr(request, "user", None)
        via = getattr(request, "headwind_auth_via", "") or VIA_SESSION
        return cls.from_user(user, via=via)


# --------------------------------------------------------------------------------------------
# Django users: permission and namespace grants
# --------------------------------------------------------------------------------------------


def granted_patterns(actor: Actor) -> list[str]:
    """The namespace patterns granted to the actor's user or groups (cached on the actor)."""
    if actor._patterns is None:
        user = actor.user
        if user is None or not getattr(user, "pk", None):
            actor._patterns = []
        else:
            actor._patterns = list(
                NamespaceGrant.objects.filter(Q(user=user) | Q(group__user=user))
                .values_list("pattern", flat=True).distinct()
            )
    return actor._patterns


def namespace_granted(actor: Actor, namespace: str) -> bool:
    if actor.user is not None and getattr(actor.user, "is_superuser", False):
        return True
    return any(fnmatch.fnmatchcase(namespace, pattern.strip())
               for pattern in granted_patterns(actor) if pattern.strip())


def can_approve(actor: Actor, namespace: str) -> tuple[bool, str]:
    """May this actor approve or reject requests in ``namespace``? ``(allowed, reason)``.

    For Kubernetes-token users the answer depends on the workload, so this says yes and the
    SubjectAccessReview in :func:`authorize` decides at action time.
    """
    if not actor.is_authenticated:
        return False, "sign in first"
    if actor.is_kubernetes:
        return True, "decided by Kubernetes RBAC for the target workload"
    user = actor.user
    if not getattr(user, "is_active", False):
        return False, "this account is disabled"
    if not user.has_perm(PERMISSION):
        return False, f"{actor.username} lacks the permission to approve update requests"
    if not namespace_granted(actor, namespace):
        return False, f"{actor.username} has no grant for namespace {namespace}"
    return True, ""


# --------------------------------------------------------------------------------------------
# Kubernetes users: SubjectAccessReview
# --------------------------------------------------------------------------------------------


def resource_of(kind: str) -> tuple[str, str]:
    """(API group, resource) of a workload kind, e.g. ("apps", "deployments")."""
    workload = kind_of(kind)
    group = workload.api_version.split("/")[0] if "/" in workload.api_version else ""
    return group, workload.plural


def subject_access_review(actor: Actor, *, verb: str, group: str, resource: str,
                          namespace: str = "", name: str = "") -> tuple[bool, str]:
    """Ask the API server whether the Kubernetes caller may ``verb`` the resource."""
    attributes = {"verb": verb, "group": group, "resource": resource}
    if namespace:
        attributes["namespace"] = namespace
    if name:
        attributes["name"] = name
    spec: dict = {"user": actor.kube_user, "groups": list(actor.kube_groups),
                  "resourceAttributes": attributes}
    if actor.kube_uid:
        spec["uid"] = actor.kube_uid
    if actor.kube_extra:
        spec["extra"] = actor.kube_extra
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": spec}
    review = kube.request(cluster.api(), "POST",
                          "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=body)
    status = review.get("status") or {}
    allowed = bool(status.get("allowed")) and not status.get("denied")
    return allowed, status.get("reason", "") or status.get("evaluationError", "")


def authorize(actor: Actor, namespace: str, target_kind: str, target_name: str
              ) -> tuple[bool, str]:
    """The full check for acting on one request; ``(allowed, reason)``.

    Raises ``operator_app.kube.KubeError`` (or a connection error) when the API server cannot
    answer a SubjectAccessReview.
    """
    if not actor.is_kubernetes:
        return can_approve(actor, namespace)
    try:
        group, resource = resource_of(target_kind)
    except ValueError:
        return False, f"{target_kind} is not a workload kind Headwind can check rights for"
    allowed, why = subject_access_review(actor, verb="patch", group=group, resource=resource,
                                         namespace=namespace, name=target_name)
    if allowed:
        return True, ""
    what = f"{resource}.{group}" if group else resource
    reason = f"Kubernetes RBAC does not allow {actor.kube_user} to patch {what} " \
             f"{namespace}/{target_name}"
    return False, reason + (f" ({why})" if why else "")
