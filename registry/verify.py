"""Webhook verification: before acting on a pushed tag, ask the registry (HEAD manifest)
whether the tag exists and has the claimed digest, so a forged or replayed delivery cannot
move a workload to an image that is not there.

On by default (``HEADWIND_WEBHOOK_VERIFY``, ``false`` turns it off), with or without a pull
secret: the pull secrets of the matching workloads are tried first, then anonymous access (the
bearer-token flow hands anonymous tokens for public repositories). The rules:

* **found** with the claimed digest (or none claimed): acted on, with the registry's digest;
* **a different digest**: a forgery or a stale replay; dropped;
* **not found**: registries notify before the tag can always be read, so a 404 is asked again
  with backoff for ``HEADWIND_WEBHOOK_VERIFY_NOT_FOUND_SECONDS`` (30) after the event was
  queued; only then is it dropped as forged;
* **unreachable** (no answer, 5xx, 429): kept and asked again with backoff for
  ``HEADWIND_WEBHOOK_VERIFY_UNREACHABLE_SECONDS`` (300), never applied unverified; polling
  still finds real tags after that;
* **refused** (the registry wants credentials Headwind does not have): cannot be verified, so
  dropped, with a warning that names the repository. Give the workload a pull secret (or turn
  verification off for such registries).

Retries go through the event stream (``RetryLater``): a crash meanwhile loses nothing.

Speed (bench/latency.py): registry clients are kept per host and credential set, so a HEAD
reuses a kept-alive connection and the auth scheme already learnt; and a re-delivery of a push
whose tag was confirmed at that very digest in the last ``CONFIRMED_SECONDS`` is not asked
again (only a tag's latest confirmed digest counts: a replayed older push is still asked about,
and refused). When the operator reads several events at once (a burst), the HEADs of the batch
are made in parallel first (:meth:`WebhookVerifier.prefetch`): each confirms only what
:meth:`~WebhookVerifier.check` would confirm itself, and ``check`` then finds the answer waiting
instead of asking the registry one event after another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from django.conf import settings

from operator_app.cache import WorkloadCache
from operator_app.core.events import EventSource, ImagePushEvent
from operator_app.eventqueue import RetryLater

from .client import (
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryNotFound,
    RegistryRateLimited,
    RegistryServerError,
    credential_identity,
)
from .credentials import CredentialStore
from .metrics import VERIFICATIONS

log = logging.getLogger(__name__)


def _retry_delay(age: float) -> float:
    """Exponential-ish backoff from the event's age: 0.5 s, 1, 2, 4 … at most 15 s apart."""
    return min(max(age, 0.5), 15.0)


#: How long a confirmed (repository, tag) → digest answers a re-delivery of the same push
#: without asking the registry again (registries deliver one push more than once).
CONFIRMED_SECONDS = 300.0
#: Registry clients kept between events (per host and credential set): their connections and
#: the auth scheme they learnt are reused, instead of a new connection and a 401 per HEAD.
MAX_CLIENTS = 64
MAX_CONFIRMED = 10_000
#: HEADs of one batch of queued events made at once (:meth:`WebhookVerifier.prefetch`).
PREFETCH_THREADS = 4


class _Clients:
    """Registry clients kept per host and credential set, the least recently used closed past
    ``MAX_CLIENTS``. One for :meth:`WebhookVerifier.check`, one per prefetch thread: a client
    (its HTTP session) is used by one thread only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, str], RegistryClient] = OrderedDict()

    def get(self, host: str, credentials) -> RegistryClient:
        key = (host, credential_identity(credentials))
        with self._lock:
            client = self._kept.get(key)
            if client is not None:
                self._kept.move_to_end(key)
                return client
            client = self._kept[key] = RegistryClient(host, credentials=credentials)
            while len(self._kept) > MAX_CLIENTS:
                _key, old = self._kept.popitem(last=False)
                old.close()
            return client

    def drop(self, host: str, credentials) -> None:
        """Close it (its connection may be what failed); the next ``get`` makes a new one."""
        with self._lock:
            client = self._kept.pop((host, credential_identity(credentials)), None)
        if client is not None:
            client.close()


class WebhookVerifier:
    def __init__(self, cache: WorkloadCache, credentials: CredentialStore) -> None:
        self.cache = cache
        self.credentials = credentials
        self._lock = threading.Lock()
        self._clients = _Clients()
        #: (repository, tag) -> (digest, monotonic time confirmed): only the last digest of a
        #: tag counts, so a replay of an older push is still asked about (and refused).
        self._confirmed: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()  # the prefetch threads' own registry clients

    def _already_confirmed(self, event: ImagePushEvent) -> bool:
        if not event.digest:
            return False
        with self._lock:
            found = self._confirmed.get((event.repository, event.tag))
        return (found is not None and found[0] == event.digest
                and time.monotonic() - found[1] < CONFIRMED_SECONDS)

    def _remember(self, event: ImagePushEvent, digest: str) -> None:
        with self._lock:
            self._confirmed[(event.repository, event.tag)] = (digest, time.monotonic())
            self._confirmed.move_to_end((event.repository, event.tag))
            while len(self._confirmed) > MAX_CONFIRMED:
                self._confirmed.popitem(last=False)

    def _candidates(self, event: ImagePushEvent) -> list:
        """Credentials to ask with: the matching workloads' pull secrets, then anonymous."""
        candidates: list = []
        for workload, _container in self.cache.matches(event.repository):
            for found in self.credentials.for_workload(workload, event.repository):
                if found not in candidates:
                    candidates.append(found)
        candidates.append(None)  # anonymous last: public repositories need no secret
        return candidates

    def prefetch(self, events: list[ImagePushEvent]) -> None:
        """Ask the registry about a batch's pushes in parallel, remembering each one confirmed
        at its claimed digest; :meth:`check` decides every event as before, and finds these
        answered. Anything unexpected (another digest, an error) is left for ``check``."""
        if not settings.HEADWIND.webhook_verify:
            return
        todo = {(e.repository, e.tag, e.digest): e for e in events
                if e.source == EventSource.WEBHOOK and e.digest
                and not self._already_confirmed(e) and self.cache.matches(e.repository)}
        if len(todo) < 2:
            return  # one HEAD is as quick from check() itself
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PREFETCH_THREADS, thread_name_prefix="verify")
        list(self._pool.map(self._confirm, todo.values()))

    def _confirm(self, event: ImagePushEvent) -> None:
        host, _, path = event.repository.partition("/")
        credentials = self._candidates(event)[0]
        clients = self._local.__dict__.setdefault("clients", _Clients())
        try:
            digest = clients.get(host, credentials).head_digest(path, event.tag)
        except (RegistryNotFound, RegistryAuthError):
            return
        except RegistryError:
            clients.drop(host, credentials)
            return
        if digest == event.digest:
            self._remember(event, digest)

    def check(self, event: ImagePushEvent) -> ImagePushEvent | None:
        """The event to act on (with the registry's digest), or None to drop it; raises
        RetryLater while the answer may still change."""
        if event.source != EventSource.WEBHOOK or not settings.HEADWIND.webhook_verify:
            return event
        matches = self.cache.matches(event.repository)
        if not matches:
            return event  # nothing would move; no reason to call the registry
        host, _, path = event.repository.partition("/")
        if self._already_confirmed(event):
            VERIFICATIONS.labels(host, "verified").inc()
            return event
        outcomes: list[str] = []
        for credentials in self._candidates(event):
            client = self._clients.get(host, credentials)
            try:
                digest = client.head_digest(path, event.tag)
            except RegistryNotFound:
                outcomes.append("missing")
                continue  # another credential may see a repository this one cannot
            except (RegistryServerError, RegistryRateLimited) as exc:
                self._clients.drop(host, credentials)
                return self._unreachable(event, host, exc)
            except RegistryAuthError:
                outcomes.append("refused")
                continue
            except RegistryError as exc:
                log.warning("verifying %s:%s: %s", event.repository, event.tag, exc)
                self._clients.drop(host, credentials)
                outcomes.append("error")
                continue
            if event.digest and digest != event.digest:
                VERIFICATIONS.labels(host, "mismatch").inc()
                log.warning("webhook claims %s:%s is %s, the registry says %s; ignored",
                            event.repository, event.tag, event.digest, digest)
                return None
            VERIFICATIONS.labels(host, "verified").inc()
            self._remember(event, digest)
            return replace(event, digest=digest)

        if "missing" in outcomes:
            return self._missing(event, host)
        if "refused" in outcomes:
            VERIFICATIONS.labels(host, "unverifiable").inc()
            log.warning("webhook for %s:%s cannot be verified: the registry refuses anonymous "
                        "access and no pull secret of a matching workload is accepted; ignored "
                        "(give the workload a pull secret, or set HEADWIND_WEBHOOK_VERIFY=false)",
                        event.repository, event.tag)
            return None
        VERIFICATIONS.labels(host, "error").inc()
        log.warning("could not verify %s:%s with its registry; ignored", event.repository,
                    event.tag)
        return None

    def _age(self, event: ImagePushEvent) -> float:
        return max(0.0, time.time() - event.received_at) if event.received_at else 0.0

    def _missing(self, event: ImagePushEvent, host: str) -> None:
        age = self._age(event)
        if event.received_at is not None and age < settings.HEADWIND.verify_not_found_seconds:
            VERIFICATIONS.labels(host, "not_yet_found").inc()
            raise RetryLater(f"{event.repository}:{event.tag} not readable yet",
                             delay=_retry_delay(age))
        VERIFICATIONS.labels(host, "missing").inc()
        log.warning("webhook claims %s:%s, which the registry does not have (asked for %.0fs); "
                    "ignored", event.repository, event.tag, age)
        return None

    def _unreachable(self, event: ImagePushEvent, host: str, exc: RegistryError) -> None:
        age = self._age(event)
        if event.received_at is None or age < settings.HEADWIND.verify_unreachable_seconds:
            VERIFICATIONS.labels(host, "unreachable").inc()
            raise RetryLater(f"verifying {event.repository}:{event.tag}: {exc}",
                             delay=_retry_delay(age) if event.received_at else None)
        VERIFICATIONS.labels(host, "error").inc()
        log.error("could not reach %s to verify %s:%s for %.0fs; the event is dropped (polling "
                  "will still find the tag)", host, event.repository, event.tag, age)
        return None
