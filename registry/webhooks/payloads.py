"""Shared plumbing for the webhook parsers: the result type, the one error type, and strict
accessors for decoded JSON.

Every accessor turns a surprise (missing key, wrong JSON type) into :class:`PayloadError`, so a
parser written with them can only fail with that one exception, whatever bytes arrive.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from operator_app.core.events import EventSource, ImagePushEvent

#: Bodies larger than this are refused before decoding. Real push payloads are a few KiB
#: (a GitHub ``package`` delivery, the largest here, is about 20 KiB).
MAX_BODY_BYTES = 2 * 1024 * 1024

#: Most items we look at in one array (distribution envelope, Event Grid batch, generic list,
#: Harbor resources, Quay tags). Larger arrays are refused rather than half-processed.
MAX_ITEMS = 1000

_MAX_REASON = 200
_MAX_SHOWN = 40


class PayloadError(ValueError):
    """The body is not a payload this parser accepts.

    ``str(err)`` (also ``err.reason``) is a short, single-line reason that is safe to return in a
    400 JSON body: it quotes at most a truncated field value, never the raw body.
    """

    def __init__(self, reason: str) -> None:
        reason = " ".join(reason.split())
        if len(reason) > _MAX_REASON:
            reason = reason[: _MAX_REASON - 1] + "…"
        super().__init__(reason)
        self.reason = reason


@dataclass
class ParseResult:
    """What one webhook delivery means for Headwind.

    ``events``: the tags that now exist (source WEBHOOK), de-duplicated, in payload order.
    ``ignored``: one short reason per event in the payload that must not start an update.
    ``response``: a JSON body the receiver must send back (Event Grid validation handshake), or
    None for the receiver's default reply.
    """

    events: list[ImagePushEvent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    response: dict[str, str] | None = None

    def add_event(self, repository: str, tag: str, digest: str | None) -> None:
        event = ImagePushEvent(
            repository=repository, tag=tag, digest=digest, source=EventSource.WEBHOOK
        )
        if event not in self.events:
            self.events.append(event)

    def ignore(self, reason: str) -> None:
        self.ignored.append(reason)


# --- decoding ---------------------------------------------------------------------------------


def load_json(body: bytes | bytearray | memoryview | str) -> Any:
    """Decode a request body as JSON (UTF-8/16/32, as ``json.loads`` detects it)."""
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadError("body is not valid UTF-8") from None
    elif isinstance(body, bytearray | memoryview):
        body = bytes(body)
    elif not isinstance(body, bytes):
        raise PayloadError("body must be bytes")
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(f"body too large (limit {MAX_BODY_BYTES} bytes)")
    if not body.strip():
        raise PayloadError("empty body")
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise PayloadError("malformed JSON: body is not valid Unicode text") from None
    except RecursionError:
        raise PayloadError("malformed JSON: nested too deeply") from None
    except ValueError:  # e.g. an integer with more digits than int() accepts
        raise PayloadError("malformed JSON: invalid value") from None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup; non-string values count as absent."""
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return value if isinstance(value, str) else None
    return None


# --- messages ---------------------------------------------------------------------------------


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def shown(value: object) -> str:
    """A short, escaped rendering of a value for an error message (strings are truncated)."""
    if not isinstance(value, str):
        return json_type(value)
    text = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "…"
    return ascii(text)


# --- strict accessors -------------------------------------------------------------------------


def as_object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object, got {json_type(value)}")
    return value


def as_array(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError(f"{where} must be an array, got {json_type(value)}")
    if len(value) > MAX_ITEMS:
        raise PayloadError(f"{where} has more than {MAX_ITEMS} items")
    return value


def _path(where: str, key: str) -> str:
    return key if where == "body" else f"{where}.{key}"


def require_object(mapping: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    if mapping.get(key) is None:
        raise PayloadError(f"missing {_path(where, key)}")
    return as_object(mapping[key], _path(where, key))


def require_array(mapping: Mapping[str, Any], key: str, where: str) -> list[Any]:
    if mapping.get(key) is None:
        raise PayloadError(f"missing {_path(where, key)}")
    return as_array(mapping[key], _path(where, key))


def optional_object(mapping: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    if mapping.get(key) is None:
        return None
    return as_object(mapping[key], _path(where, key))


def require_str(mapping: Mapping[str, Any], key: str, where: str) -> str:
    value = mapping.get(key)
    if value is None:
        raise PayloadError(f"missing {_path(where, key)}")
    if not isinstance(value, str):
        raise PayloadError(f"{_path(where, key)} must be a string, got {json_type(value)}")
    if not value:
        raise PayloadError(f"{_path(where, key)} is empty")
    return value


def optional_str(mapping: Mapping[str, Any], key: str, where: str) -> str | None:
    """The string at ``key``; None when missing, null or empty."""
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{_path(where, key)} must be a string, got {json_type(value)}")
    return value or None
