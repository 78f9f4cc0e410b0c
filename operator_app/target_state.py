"""Writing Headwind's state annotations on a target (rollout, bad versions, hold).

Several writers touch them (the apply task, the rollout watcher, the people who release a
hold), so every write is a JSON Patch that tests the resourceVersion it read and, when someone
else wrote in between, reads again and asks the caller again. No write ever replaces the whole
annotation map.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from .kube import KubeError, request

log = logging.getLogger(__name__)

ATTEMPTS = 8

#: ``{annotation: new text, or None to remove it}``
Changes = Mapping[str, "str | None"]


class StateContention(RuntimeError):
    """The target changed under every attempt; nothing was written."""


def escape(key: str) -> str:
    """A key as one JSON-pointer segment."""
    return key.replace("~", "~0").replace("/", "~1")


def annotation_ops(annotations: Mapping[str, str], changes: Changes) -> list[dict]:
    """JSON Patch operations that set (or remove) ``changes`` in ``annotations``."""
    if not annotations:
        values = {key: value for key, value in changes.items() if value is not None}
        return [{"op": "add", "path": "/metadata/annotations", "value": values}] if values else []
    ops = []
    for key, value in changes.items():
        pointer = f"/metadata/annotations/{escape(key)}"
        if value is None:
            if key in annotations:
                ops.append({"op": "remove", "path": pointer})
        elif annotations.get(key) != value:
            ops.append({"op": "add", "path": pointer, "value": value})
    return ops


def update_annotations(api, path: str, change: Callable[[dict], Changes | None]) -> dict | None:
    """Read the object at ``path``, let ``change(obj)`` say which annotations to write (None or
    empty: nothing to do) and write them guarded by the resourceVersion read. Returns the
    written object (None when nothing was written); KubeError(404) when it is gone."""
    for attempt in range(1, ATTEMPTS + 1):
        obj = request(api, "GET", path)
        changes = change(obj)
        meta = obj.get("metadata") or {}
        ops = annotation_ops(meta.get("annotations") or {}, changes or {})
        if not ops:
            return None
        try:
            return request(api, "PATCH", path, body=[
                {"op": "test", "path": "/metadata/resourceVersion",
                 "value": meta.get("resourceVersion", "")}, *ops],
                content_type="application/json-patch+json")
        except KubeError as exc:
            if exc.status not in (409, 422):
                raise
            log.debug("%s changed while its state was written (attempt %d)", path, attempt)
            time.sleep(0.02 * attempt)
    raise StateContention(f"{path} kept changing while Headwind wrote its state")
