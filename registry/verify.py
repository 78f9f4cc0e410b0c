"""Webhook verification: before acting on a pushed tag, ask the registry (HEAD manifest)
whether the tag exists and has the claimed digest, so a forged or replayed delivery cannot
move a workload to an image that is not there.

On by default whenever credentials for the repository are available (from a matching
workload's pull secrets); ``HEADWIND_WEBHOOK_VERIFY=false`` turns it off, ``=always`` verifies
anonymously too. Unverifiable events are dropped and counted; polling will still find real tags.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from django.conf import settings
from prometheus_client import Counter

from operator_app.cache import WorkloadCache
from operator_app.core.events import EventSource, ImagePushEvent
from operator_app.eventqueue import RetryLater

from .client import (
    RegistryClient,
    RegistryError,
    RegistryNotFound,
    RegistryRateLimited,
    RegistryServerError,
)
from .credentials import CredentialStore

log = logging.getLogger(__name__)

VERIFICATIONS = Counter(
    "headwind_webhook_verifications_total",
    "Webhook events checked against their registry (verified, mismatch, missing, error, "
    "retry, skipped).",
    ["registry", "outcome"],
)


class WebhookVerifier:
    def __init__(self, cache: WorkloadCache, credentials: CredentialStore) -> None:
        self.cache = cache
        self.credentials = credentials

    def check(self, event: ImagePushEvent) -> ImagePushEvent | None:
        """The event to act on (with the registry's digest), or None to drop it."""
        setting = settings.HEADWIND.webhook_verify
        if event.source != EventSource.WEBHOOK or setting == "off":
            return event
        matches = self.cache.matches(event.repository)
        if not matches:
            return event  # nothing would move; no reason to call the registry
        host, _, path = event.repository.partition("/")
        found = []
        for workload, _container in matches:
            found = self.credentials.for_workload(workload, event.repository)
            if found:
                break
        if not found and setting != "always":
            VERIFICATIONS.labels(host, "skipped").inc()
            return event
        last_error: Exception | None = None
        candidates = found or [None]
        for index, credentials in enumerate(candidates):
            client = RegistryClient(host, credentials=credentials)
            try:
                digest = client.head_digest(path, event.tag)
            except RegistryNotFound:
                if index + 1 < len(candidates):
                    continue  # another credential may see a repository this one cannot
                VERIFICATIONS.labels(host, "missing").inc()
                log.warning("webhook claims %s:%s, which the registry does not have; ignored",
                            event.repository, event.tag)
                return None
            except (RegistryServerError, RegistryRateLimited) as exc:
                # Passing trouble: keep the event queued and try again later.
                VERIFICATIONS.labels(host, "retry").inc()
                raise RetryLater(f"verifying {event.repository}:{event.tag}: {exc}") from exc
            except RegistryError as exc:
                last_error = exc
                continue
            finally:
                client.close()
            if event.digest and digest != event.digest:
                VERIFICATIONS.labels(host, "mismatch").inc()
                log.warning("webhook claims %s:%s is %s, the registry says %s; ignored",
                            event.repository, event.tag, event.digest, digest)
                return None
            VERIFICATIONS.labels(host, "verified").inc()
            return replace(event, digest=digest)
        VERIFICATIONS.labels(host, "error").inc()
        log.warning("could not verify %s:%s with its registry (%s); ignored",
                    event.repository, event.tag, last_error)
        return None
