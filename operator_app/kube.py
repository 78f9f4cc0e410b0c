"""One place that knows how to reach the cluster: KUBECONFIG first, then in-cluster config."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import urllib3
from django.conf import settings
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

log = logging.getLogger(__name__)


class ClusterUnreachable(RuntimeError):
    """No usable credentials, or the API server did not answer."""


@dataclass(frozen=True)
class ClusterInfo:
    server: str
    version: str
    source: str


def _kubeconfig_path() -> str:
    return getattr(settings, "KUBECONFIG", "") or os.environ.get("KUBECONFIG", "")


def api_client() -> client.ApiClient:
    """A new ApiClient; callers keep it for their lifetime (it owns a connection pool)."""
    path = _kubeconfig_path()
    try:
        if path or os.path.exists(os.path.expanduser("~/.kube/config")):
            return config.new_client_from_config(
                config_file=path or None, context=settings.KUBE_CONTEXT or None
            )
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        where = path or "~/.kube/config or the in-cluster service account"
        raise ClusterUnreachable(f"no usable Kubernetes credentials in {where}: {exc}") from exc


def probe(api: client.ApiClient, timeout: float = 5.0) -> ClusterInfo:
    """Ask the API server for its version; raise ClusterUnreachable with a one-line reason."""
    server = api.configuration.host
    try:
        version = client.VersionApi(api).get_code(_request_timeout=timeout)
    except client.ApiException as exc:
        raise ClusterUnreachable(f"{server} answered {exc.status} {exc.reason}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ClusterUnreachable(f"{server} is not reachable: {exc.__class__.__name__}") from exc
    source = _kubeconfig_path() or "in-cluster"
    return ClusterInfo(server=server, version=version.git_version, source=source)
