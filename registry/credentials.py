"""Registry credentials for a workload: its pull secrets plus its ServiceAccount's.

The Secrets named in the pod template's ``imagePullSecrets`` come first (spec order), then the
ServiceAccount's ``imagePullSecrets`` (the ServiceAccount admission plugin copies those into pods
that list none, so the union covers what the kubelet would use). Secrets of type
``kubernetes.io/dockerconfigjson`` and ``kubernetes.io/dockercfg`` are read through the API in the
workload's namespace and matched to the image with :mod:`registry.dockerconfig` (kubelet rules,
most specific first).

Everything is read through a TTL cache (default 5 minutes) keyed by namespace + Secret name and
namespace + ServiceAccount name, so a poll cycle costs no API calls once warm. A missing Secret
or ServiceAccount means "no credentials from it" (logged once at INFO), never an error. Secret
contents are never logged; :class:`~registry.dockerconfig.DockerConfigError` messages carry none.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from operator_app import kube
from operator_app.workloads import WorkloadProjection

from .dockerconfig import (
    DOCKERCFG,
    DOCKERCONFIGJSON,
    CredentialEntry,
    Credentials,
    DockerConfigError,
    decode_secret_data,
    match_credentials,
    parse_docker_config,
)

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 300.0
ERROR_TTL_SECONDS = 30.0  # API trouble (not 404): ask again sooner

_Entry = tuple[float, object]  # (expires_at, value)


class CredentialStore:
    """``for_workload(workload, repository) -> [Credentials]``, most specific first."""

    def __init__(self, api, *, ttl: float = DEFAULT_TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str], _Entry] = {}
        self._accounts: dict[tuple[str, str], _Entry] = {}
        self._reported: set[tuple[str, str, str]] = set()
        self.api_reads = 0  # Secret/ServiceAccount GETs made, for tests and benchmarks

    def secret_names(self, workload: WorkloadProjection) -> list[str]:
        names = list(workload.pull_secrets)
        if not workload.service_account:  # a HelmRelease: only its source's secretRef counts
            return names
        for name in self._service_account_secrets(workload.secrets_namespace,
                                                  workload.service_account):
            if name not in names:
                names.append(name)
        return names

    def entries(self, workload: WorkloadProjection) -> list[CredentialEntry]:
        found: list[CredentialEntry] = []
        for name in self.secret_names(workload):
            found.extend(self._secret_entries(workload.secrets_namespace, name))
        return found

    def for_workload(self, workload: WorkloadProjection, repository: str) -> list[Credentials]:
        """Credentials to try for ``repository`` (``registry/path``), most specific first."""
        entries = self.entries(workload)
        return match_credentials(entries, repository) if entries else []

    # -- cached reads ----------------------------------------------------------------------------

    def _cached(self, table: dict, key: tuple[str, str]) -> tuple[bool, object]:
        with self._lock:
            item = table.get(key)
        if item is not None and self.clock() < item[0]:
            return True, item[1]
        return False, item[1] if item is not None else None

    def _store(self, table: dict, key: tuple[str, str], value: object, ttl: float) -> None:
        with self._lock:
            table[key] = (self.clock() + ttl, value)

    def _get(self, path: str) -> dict:
        self.api_reads += 1
        return kube.request(self.api, "GET", path, timeout=15)

    def _service_account_secrets(self, namespace: str, account: str) -> list[str]:
        key = (namespace, account or "default")
        fresh, value = self._cached(self._accounts, key)
        if fresh:
            return value  # type: ignore[return-value]
        try:
            obj = self._get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{key[1]}")
        except kube.ClusterUnreachable as exc:
            log.warning("ServiceAccount %s/%s: API unreachable (%s); using what we had",
                        namespace, key[1], exc)
            return value if isinstance(value, list) else []
        except kube.KubeError as exc:
            self._report(key, "serviceaccount", exc)
            names: list[str] = []
            self._store(self._accounts, key, names,
                        self.ttl if exc.status == 404 else ERROR_TTL_SECONDS)
            return names
        names = [ref.get("name") for ref in obj.get("imagePullSecrets") or []
                 if isinstance(ref, dict) and ref.get("name")]
        self._reported.discard((*key, "serviceaccount"))
        self._store(self._accounts, key, names, self.ttl)
        return names

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """A Secret's decoded data (``{}`` when missing or unreadable), through the cache; for
        a HelmRepository's basic-auth ``secretRef`` and TLS ``certSecretRef``."""
        found = self._secret(namespace, name)
        return dict(found[1]) if found is not None else {}

    def _secret_entries(self, namespace: str, name: str) -> list[CredentialEntry]:
        found = self._secret(namespace, name)
        if found is None:
            return []
        secret_type, data = found
        if secret_type not in (DOCKERCONFIGJSON, DOCKERCFG):
            return []
        try:
            return parse_docker_config(secret_type, data)
        except DockerConfigError as exc:  # its message never holds secret material
            log.warning("Secret %s/%s: %s; ignored", namespace, name, exc)
            return []

    def _secret(self, namespace: str, name: str) -> tuple[str, dict[str, bytes]] | None:
        key = (namespace, name)
        fresh, value = self._cached(self._secrets, key)
        if fresh:
            return value  # type: ignore[return-value]
        try:
            secret = self._get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except kube.ClusterUnreachable as exc:
            log.warning("Secret %s/%s: API unreachable (%s); using what we had",
                        namespace, name, exc)
            return value  # type: ignore[return-value]
        except kube.KubeError as exc:
            self._report(key, "secret", exc)
            self._store(self._secrets, key, None,
                        self.ttl if exc.status == 404 else ERROR_TTL_SECONDS)
            return None
        try:
            decoded = decode_secret_data(secret.get("data") or {})
        except DockerConfigError as exc:
            log.warning("Secret %s/%s: %s; ignored", namespace, name, exc)
            decoded = {}
        found = (str(secret.get("type", "")), decoded)
        self._reported.discard((*key, "secret"))
        self._store(self._secrets, key, found, self.ttl)
        return found

    def _report(self, key: tuple[str, str], what: str, exc: kube.KubeError) -> None:
        marker = (*key, what)
        if marker in self._reported:
            return
        self._reported.add(marker)
        if exc.status == 404:
            log.info("%s %s/%s not found; polling without its credentials", what, *key)
        else:
            log.warning("%s %s/%s unreadable (%s %s); polling without its credentials",
                        what, key[0], key[1], exc.status, exc.reason)
