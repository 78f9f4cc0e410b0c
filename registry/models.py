"""What Headwind has seen in registries: every tag (or chart version) of the repositories its
workloads use, when it first saw it, when it was released, and when each repository was last
checked. The radar and ``headwind.sh/min-release-age`` read it (registry/tagbook.py)."""

from __future__ import annotations

from django.db import models


class SeenTag(models.Model):
    #: A normalised image repository (``docker.io/library/nginx``) or a chart repository
    #: (``https://charts.example/stable/web``, ``oci://ghcr.io/org/charts/web``).
    repository = models.CharField(max_length=512)
    tag = models.CharField(max_length=256)
    digest = models.CharField(max_length=100, blank=True)
    #: How Headwind first learned of it: ``webhook`` or ``polling``.
    source = models.CharField(max_length=16, blank=True)
    first_seen = models.DateTimeField()
    #: The image config's ``created`` (or a chart index's ``created``) when plausible.
    created = models.DateTimeField(null=True, blank=True)
    #: The registry was asked for ``created`` (once per digest): a missing one stays missing.
    created_checked = models.BooleanField(default=False)
    #: When a listing no longer showed it (withdrawn); cleared if it comes back.
    gone = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repository", "tag"],
                                               name="seentag_repository_tag")]

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def released(self):
        """When it was released, as far as Headwind can tell."""
        return self.created or self.first_seen


class RepositoryCheck(models.Model):
    repository = models.CharField(max_length=512, unique=True)
    checked_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.repository
