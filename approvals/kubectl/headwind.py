"""Headwind's REST API, called with the user's own Kubernetes bearer token.

Headwind checks the token with a TokenReview and the user's right to ``patch`` the workload
with a SubjectAccessReview (``approvals/api.py``), so the API server, not this client, says who
is acting. The token goes only to the URL the user named (``--headwind-url`` or
``HEADWIND_URL``), never to one read from the cluster, and never over plain HTTP to another
machine.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import requests

from .errors import Failure

CLIENT_CERTIFICATE = (
    "the kubeconfig user of context {context!r} has no bearer token (it signs in with a client "
    "certificate, or basic auth), and Headwind's API can only check a bearer token (with a "
    "TokenReview). Use a context whose user has a token: an OIDC or exec credential plugin, or "
    "a ServiceAccount token (kubectl config set-credentials NAME --token=...); or use "
    "Headwind's dashboard or REST API with a Headwind API token (docs/kubectl.md)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url(given: str | None) -> str:
    """The Headwind URL the user named, checked; a Failure that says what to do otherwise."""
    if not given:
        raise Failure("this command goes through Headwind's API: pass --headwind-url "
                      "https://headwind.example (or set HEADWIND_URL)")
    url = given.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Failure(f"--headwind-url {given!r} is not an http(s) URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise Failure(f"refusing to send your Kubernetes token to {url} over plain HTTP; use "
                      "https:// (or a port-forward to localhost)")
    return url


class HeadwindApi:
    def __init__(self, url: str, token: str, *, timeout: float = 30) -> None:
        self.url = url
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {token}",
                                      "Accept": "application/json",
                                      "User-Agent": "kubectl-headwind"})

    def get(self, path: str) -> dict:
        return self._call("GET", path)

    def post(self, path: str, body: dict) -> dict:
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            response = self._session.request(method, self.url + path, json=body,
                                             timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise Failure(f"cannot reach Headwind at {self.url} ({exc.__class__.__name__})") \
                from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if 300 <= response.status_code < 400:
            raise Failure(f"Headwind at {self.url} answered {response.status_code}, a redirect "
                          f"to {response.headers.get('Location', '?')}; pass that URL as "
                          "--headwind-url")
        if response.status_code >= 400 or not isinstance(data, dict):
            reason = data.get("reason") if isinstance(data, dict) else None
            code = data.get("error") if isinstance(data, dict) else None
            raise Failure(f"Headwind refused ({response.status_code}"
                          f"{' ' + code if code else ''}): "
                          f"{reason or 'the answer is not Headwind API JSON'}")
        return data
