"""One place that knows how to reach the cluster: KUBECONFIG first, then in-cluster config."""

from __future__ import annotations

import json
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


class KubeError(RuntimeError):
    """A non-2xx answer from the API server, with the parts callers branch on."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def request(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    body: object | None = None,
    query: dict | None = None,
    content_type: str = "application/json",
    timeout: float | tuple[float, float] = 30,
) -> dict:
    """A raw JSON call: dicts in and out, no model (de)serialisation (it dominates at scale)."""
    try:
        response = api.call_api(
            path, method,
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=timeout,
        )
    except client.ApiException as exc:
        raise _kube_error(exc) from None
    raw = _http_response(response).data
    return json.loads(raw) if raw else {}


def stream(
    api: client.ApiClient, path: str, query: dict, *, read_timeout: float
):
    """Yield the JSON lines of a watch; the server ends it after ``timeoutSeconds``."""
    try:
        response = api.call_api(
            path, "GET",
            query_params=[(k, v) for k, v in query.items() if v is not None],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=(10, read_timeout),
        )
    except client.ApiException as exc:
        raise _kube_error(exc) from None
    response = _http_response(response)
    try:
        buffer = b""
        for chunk in response.stream(65536, decode_content=False):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
    finally:
        response.release_conn()


def _http_response(result):
    """call_api returns the urllib3 response, or a (response, status, headers) tuple."""
    return result[0] if isinstance(result, tuple) else result


def _kube_error(exc: client.ApiException) -> KubeError:
    message = exc.reason or ""
    try:
        status = json.loads(exc.body or "{}")
        message = status.get("message", message)
        reason = status.get("reason", exc.reason or "")
    except (TypeError, ValueError):
        reason = exc.reason or ""
    return KubeError(exc.status or 0, reason, message)
