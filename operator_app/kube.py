"""One place that knows how to reach the cluster: KUBECONFIG first, then in-cluster config.

This is the only module that imports the ``kubernetes`` client (a layer contract in
``make test`` keeps it so). Every failure of a call comes out as one error family:
:class:`KubeError` for an answer that is not 2xx, and its subclass :class:`ClusterUnreachable`
for no answer at all (connection refused, timeout, TLS, a broken stream). Callers catch
``KubeError`` and ask :attr:`KubeError.transient` whether trying again later makes sense.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import urllib3

from operator_app import lazy_kubernetes

# Before the first import of the library: its 800 generated classes load only when used.
lazy_kubernetes.install()

from kubernetes import client, config  # noqa: E402
from kubernetes.config.config_exception import ConfigException  # noqa: E402

log = logging.getLogger(__name__)


class _Settings:
    """``django.conf.settings``, imported on first use: client programs that reach the cluster
    through this module (``kubectl-headwind``) never import Django."""

    def __getattr__(self, name: str):
        from django.conf import settings as django_settings

        return getattr(django_settings, name)


settings = _Settings()

#: Every write names this field manager, so ``managedFields`` says who changed what.
FIELD_MANAGER = "headwind"
_WRITES = frozenset({"POST", "PUT", "PATCH"})


class KubeError(RuntimeError):
    """A failed call to the API server, with the parts callers branch on.

    ``status`` is the HTTP status, or 0 when nothing usable came back (see
    :class:`ClusterUnreachable`).
    """

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        """Worth retrying later: no answer, throttled (429) or failing (5xx)."""
        return self.status in (0, 429) or self.status >= 500


class ClusterUnreachable(KubeError):
    """No usable credentials, or the API server did not answer (status 0)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "Unreachable", message)


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
    """A raw JSON call: dicts in and out, no model (de)serialisation (it dominates at scale).

    Writes carry ``fieldManager=headwind``. Raises :class:`KubeError` (or its subclass
    :class:`ClusterUnreachable`) for anything but a 2xx answer.
    """
    query = dict(query or {})
    if method in _WRITES:
        query.setdefault("fieldManager", FIELD_MANAGER)
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
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unreachable(api, exc) from None
    try:
        raw = _http_response(response).data
        return json.loads(raw) if raw else {}
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unreachable(api, exc) from None
    except ValueError:
        raise KubeError(0, "BadResponse", f"{method} {path}: the answer is not JSON") from None


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
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unreachable(api, exc) from None
    response = _http_response(response)
    try:
        buffer = b""
        for chunk in response.stream(65536, decode_content=False):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    try:
                        event = json.loads(line)
                    except ValueError:
                        raise KubeError(0, "BadResponse",
                                        f"watch {path}: a line is not JSON") from None
                    yield event
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unreachable(api, exc) from None
    finally:
        response.release_conn()


def _http_response(result):
    """call_api returns the urllib3 response, or a (response, status, headers) tuple."""
    return result[0] if isinstance(result, tuple) else result


def _unreachable(api: client.ApiClient, exc: BaseException) -> ClusterUnreachable:
    return ClusterUnreachable(f"{api.configuration.host} did not answer "
                              f"({exc.__class__.__name__})")


def _kube_error(exc: client.ApiException) -> KubeError:
    message = exc.reason or ""
    try:
        status = json.loads(exc.body or "{}")
        message = status.get("message", message)
        reason = status.get("reason", exc.reason or "")
    except (TypeError, ValueError):
        reason = exc.reason or ""
    return KubeError(exc.status or 0, reason, message)


# --------------------------------------------------------------------------------------------
# A person's own kubeconfig (the kubectl-headwind plugin): no Django settings, no in-cluster
# fallback, the user's credentials as kubectl would use them
# --------------------------------------------------------------------------------------------

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@dataclass(frozen=True)
class UserClient:
    """An ApiClient with the user's credentials, and where they came from."""

    api: client.ApiClient
    context: str
    namespace: str  # the context's namespace, or "default" as kubectl has it
    source: str  # the kubeconfig file(s)


def user_client(kubeconfig: str | None = None, context: str | None = None) -> UserClient:
    """An ApiClient as kubectl builds one: ``kubeconfig`` (``--kubeconfig``), else
    ``$KUBECONFIG`` (several files joined with ``:`` are merged), else ``~/.kube/config``; the
    context ``context`` (``--context``), else the file's current-context. Exec credential
    plugins, token files and client certificates are resolved by the kubernetes client.
    Raises :class:`ClusterUnreachable` with a one-line reason when there is nothing usable."""
    source = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        contexts, current = config.list_kube_config_contexts(config_file=source)
        chosen = context or (current or {}).get("name", "")
        entry = next((c for c in contexts or [] if c.get("name") == chosen), None)
        if entry is None:
            raise ConfigException(f"context {chosen!r} is not in it" if chosen
                                  else "it names no current-context; pass --context")
        api = config.new_client_from_config(config_file=source, context=chosen,
                                            persist_config=False)
    except (ConfigException, OSError, TypeError, ValueError, KeyError) as exc:
        raise ClusterUnreachable(f"no usable Kubernetes credentials in {source}: {exc}") \
            from None
    namespace = (entry.get("context") or {}).get("namespace") or "default"
    return UserClient(api, chosen, namespace, source)


def bearer_token(api: client.ApiClient) -> str | None:
    """The bearer token ``api`` sends (refreshed first when it comes from an exec plugin or
    has expired), or None: a client certificate, or basic auth, is no bearer token."""
    configuration = api.configuration
    if configuration.refresh_api_key_hook is not None:
        try:
            configuration.refresh_api_key_hook(configuration)
        except (ConfigException, OSError, TypeError, ValueError, KeyError) as exc:
            raise ClusterUnreachable(f"could not refresh the kubeconfig's token: {exc}") \
                from None
    value = configuration.api_key.get("BearerToken") or \
        configuration.api_key.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def request_table(api: client.ApiClient, path: str, *, query: dict | None = None,
                  timeout: float | tuple[float, float] = 30) -> dict:
    """``GET path`` as a ``meta.k8s.io/v1`` Table: the columns ``kubectl get`` prints (for a
    custom resource, its ``additionalPrinterColumns``), computed by the API server. Errors as
    :func:`request`."""
    try:
        response = api.call_api(
            path, "GET",
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params={"Accept": TABLE_ACCEPT}, auth_settings=["BearerToken"],
            _preload_content=False, _request_timeout=timeout,
        )
        raw = _http_response(response).data
    except client.ApiException as exc:
        raise _kube_error(exc) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unreachable(api, exc) from None
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise KubeError(0, "BadResponse", f"GET {path}: the answer is not JSON") from None
