"""The web side's Kubernetes client: one per process, created on first use.

Approvals, TokenReviews and SubjectAccessReviews from views, the admin and the API all go through
it. It uses Headwind's own credentials (``operator_app.kube.api_client``).
"""

from __future__ import annotations

import threading

from operator_app import kube

_lock = threading.Lock()
_api = None


def api():
    """The shared ApiClient (urllib3's pool is thread-safe)."""
    global _api
    if _api is None:
        with _lock:
            if _api is None:
                _api = kube.api_client()
    return _api


def use(client) -> None:
    """Replace the shared client (tests, or a process that already has one)."""
    global _api
    with _lock:
        old, _api = _api, client
    if old is not None and old is not client:
        old.close()


def reset() -> None:
    use(None)
