"""The UpdateRequest mirror and what people do with it.

``UpdateRequest`` rows are a cache of the custom resources (the cluster is the truth): the
operator's mirror watcher writes them, and every action writes the custom resource first.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from operator_app.proposals import Phase as RequestPhase

# The custom resource's phases, named once (operator_app.proposals.Phase), as model choices.
Phase = models.TextChoices("Phase", [(phase.name, phase.value) for phase in RequestPhase])


class UpdateRequest(models.Model):
    namespace = models.CharField(max_length=253)
    name = models.CharField(max_length=253)
    uid = models.CharField(max_length=64, unique=True)
    resource_version = models.CharField(max_length=64)

    target_api_version = models.CharField(max_length=64)
    target_kind = models.CharField(max_length=32)
    target_name = models.CharField(max_length=253)
    container = models.CharField(max_length=253)
    current_image = models.CharField(max_length=1024)
    new_image = models.CharField(max_length=1024)
    new_digest = models.CharField(max_length=128, blank=True)
    # A HelmRelease's chart (spec.chart of the custom resource); blank for images.
    chart_name = models.CharField(max_length=253, blank=True)
    chart_source = models.CharField(max_length=1024, blank=True)
    current_version = models.CharField(max_length=128, blank=True)
    new_version = models.CharField(max_length=128, blank=True)
    policy = models.CharField(max_length=16)
    reason = models.TextField(blank=True)
    source = models.CharField(max_length=16, blank=True)

    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.PENDING)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    approvals = models.JSONField(default=list, blank=True)
    approved_by = models.CharField(max_length=253, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    rejected_by = models.CharField(max_length=253, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.CharField(max_length=253, blank=True)
    message = models.TextField(blank=True)

    created_at = models.DateTimeField()  # the custom resource's creationTimestamp
    expires_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    #: Approved, waiting for the workload's maintenance window (status.scheduledFor).
    scheduled_for = models.DateTimeField(null=True, blank=True)
    status_updated_at = models.DateTimeField(null=True, blank=True)  # status.lastUpdated
    mirrored_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["namespace", "name"], name="ur_namespace_name"),
        ]
        indexes = [
            models.Index(fields=["phase", "-created_at"], name="ur_phase_created"),
            models.Index(fields=["namespace", "phase", "-created_at"], name="ur_ns_phase_created"),
            models.Index(fields=["target_kind", "-created_at"], name="ur_kind_created"),
            models.Index(fields=["policy", "-created_at"], name="ur_policy_created"),
            models.Index(fields=["-created_at"], name="ur_created"),
        ]
        ordering = ["-created_at"]
        permissions = [("approve_updaterequest", "Can approve or reject update requests")]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_open(self) -> bool:
        return self.phase in (Phase.PENDING, Phase.APPROVED)

    @property
    def approvers(self) -> list[str]:
        """Who approved so far, in order (``status.approvals[].user``)."""
        return [entry.get("user", "") for entry in self.approvals or []
                if isinstance(entry, dict)]


class NamespaceGrant(models.Model):
    """Which namespaces a group or user may approve in (shell-style patterns, ``*`` for all)."""

    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE)
    pattern = models.CharField(max_length=253, help_text="e.g. team-a, team-*, or *")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(group__isnull=False) | models.Q(user__isnull=False),
                name="grant_has_group_or_user",
            ),
        ]

    def __str__(self) -> str:
        who = self.group.name if self.group_id else self.user.get_username()
        return f"{who}: {self.pattern}"


class AuditEvent(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=253)
    action = models.CharField(max_length=32)  # approve, reject, rollback, login_failed, ...
    target = models.CharField(max_length=512, blank=True)
    result = models.CharField(max_length=16)  # success, refused, error
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["action", "-at"], name="audit_action_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"


class OidcIdentity(models.Model):
    """The identity provider's account (issuer, subject) behind a Django user.

    OIDC sign-ins are bound to ``(iss, sub)``, which the provider never reuses, not to a
    username or e-mail address, which can change hands."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="oidc_identities")
    issuer = models.CharField(max_length=512)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="oidc_issuer_subject"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class ApiToken(models.Model):
    """A personal API token; only its SHA-256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user.get_username()}: {self.name}"


class Workload(models.Model):
    """One managed container (or chart) of one opted-in workload: the inventory's row.

    A mirror, like :class:`UpdateRequest`: written by the leading ``run_operator`` from its
    informer caches and its radar pass (headwind_site/inventory.py), never by page views.
    """

    kind = models.CharField(max_length=32)
    namespace = models.CharField(max_length=253)
    name = models.CharField(max_length=253)
    container = models.CharField(max_length=253)  # a container's name, or "chart"
    uid = models.CharField(max_length=64, blank=True)
    current = models.CharField(max_length=1024)  # image or chart reference
    repository = models.CharField(max_length=512, blank=True)
    policy = models.CharField(max_length=16, blank=True)
    trigger = models.CharField(max_length=16, blank=True)  # headwind.sh/event-source
    require_approval = models.BooleanField(default=True)
    annotations = models.JSONField(default=dict, blank=True)  # headwind.sh/* only
    # The newest update-history entry for this container.
    last_update_at = models.DateTimeField(null=True, blank=True)
    last_from = models.CharField(max_length=1024, blank=True)
    last_to = models.CharField(max_length=1024, blank=True)
    last_by = models.CharField(max_length=253, blank=True)
    rollout_state = models.CharField(max_length=16, blank=True)
    held = models.BooleanField(default=False)
    # The radar (filled by the radar pass).
    newest_allowed = models.CharField(max_length=256, blank=True)
    newest_any = models.CharField(max_length=256, blank=True)
    behind_policy = models.IntegerField(null=True, blank=True)
    behind_any = models.IntegerField(null=True, blank=True)
    running_released = models.DateTimeField(null=True, blank=True)
    waiting_until = models.DateTimeField(null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    radar_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "namespace", "name", "container"],
                                               name="workload_slot")]
        indexes = [
            models.Index(fields=["namespace", "kind", "name"], name="workload_ns_kind_name"),
            models.Index(fields=["-behind_policy", "namespace"], name="workload_behind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} {self.container}"

    @property
    def version(self) -> str:
        """The running tag or chart version, for narrow columns."""
        text = self.current.partition("@")[0]
        tail = text.rsplit("/", 1)[-1]
        return tail.rpartition(":")[2] if ":" in tail else tail
