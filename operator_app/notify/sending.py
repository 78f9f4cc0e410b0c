"""One HTTP delivery to one destination, and where its URL comes from.

- ``requests`` with ``verify=`` per request, timeouts of 5 s to connect and 10 s to read, and
  redirects never followed (a redirect is a final failure: a webhook URL that moved must be
  changed by a person, and following it could hand the body to another host).
- The answer is classified (:class:`Outcome`): 2xx delivered; 429 and 5xx, refused or
  failed connections and time-outs are transient (``Retry-After`` honoured); anything else
  is final.
- URLs and secrets never appear in what this module returns: errors are described by status,
  by the kind of failure, or by a short, scrubbed excerpt of the answer.

A global channel's URL is read from ``settings.HEADWIND_NOTIFY`` where the delivery runs; a
team's URL is read from its Secret (key ``url``, and optionally ``secret`` to sign a generic
webhook) through the API at delivery time, and is never logged or stored.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests

from . import payloads
from .notice import Notice
from .routing import Destination
from .settings import NotifySettings, url_problem
from .signature import HEADER, sign

TIMEOUT = (5.0, 10.0)  # (connect, read) seconds
USER_AGENT = "headwind-notify/0.1"
MAX_RETRY_AFTER = 600.0  # a longer Retry-After is capped to this many seconds
_SNIPPET = 160
_URLS = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to. ``detail`` is safe to log and to show (no URL, no secret)."""

    ok: bool
    status: int | None = None  # the HTTP status; None when nothing answered
    transient: bool = False
    retry_after: float | None = None
    timed_out: bool = False
    detail: str = ""


class DestinationError(Exception):
    """The destination's URL could not be had (a missing Secret, a channel no longer
    configured). ``transient``: worth asking again later."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every known secret and every URL-looking word replaced, cut short and
    reduced to printable characters."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URLS.sub("<url>", text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:_SNIPPET]


def _url_secrets(url: str) -> tuple[str, ...]:
    """The parts of a webhook URL that may be its credential: its path, query, and each path
    segment or query value long enough to be a token (Slack's is the last segment, a Teams
    Workflows URL's its ``sig`` parameter)."""
    parts = urlsplit(url)
    pieces = [parts.path if len(parts.path) > 1 else "", parts.query]
    pieces += [seg for seg in parts.path.split("/") if len(seg) >= 6]
    pieces += [value for _, _, value in (q.partition("=") for q in parts.query.split("&"))
               if len(value) >= 6]
    return tuple(pieces)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After``: delta-seconds or an HTTP date, as seconds from now (capped)."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return min(float(int(text)), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _connection_failure(exc: BaseException | None) -> str:
    """What went wrong with a connection, in words that carry no host or URL."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused"
        if isinstance(exc, socket.gaierror) or "NameResolution" in type(exc).__name__:
            return "connection failed (host name not resolved)"
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = exc.__cause__ or exc.__context__ or inner or getattr(exc, "reason", None)
    return "connection failed"


def post(url: str, body: bytes, headers: dict[str, str], *, verify: bool | str,
         secrets: tuple[str, ...] = ()) -> Outcome:
    """POST ``body`` once; never raises for network trouble (it is an Outcome)."""
    hidden = (url, *_url_secrets(url), *secrets)
    try:
        response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT,
                                 allow_redirects=False, verify=verify, stream=True)
    except requests.Timeout:
        return Outcome(False, transient=True, timed_out=True, detail="timed out")
    except requests.exceptions.SSLError:  # a certificate problem does not mend itself
        return Outcome(False, detail="TLS verification failed")
    except requests.ConnectionError as exc:
        return Outcome(False, transient=True, detail=_connection_failure(exc))
    except requests.RequestException as exc:
        return Outcome(False, detail=f"request failed ({type(exc).__name__})")
    try:
        try:
            raw = response.raw.read(2048, decode_content=True) or b""
        except Exception:  # noqa: BLE001 — the status is what matters; the body is a courtesy
            raw = b""
    finally:
        response.close()
    status = response.status_code
    excerpt = scrub(raw.decode("utf-8", "replace"), hidden)
    said = f": {excerpt}" if excerpt else ""
    if 200 <= status < 300:
        return Outcome(True, status, detail=f"answered {status}")
    if status == 429 or status >= 500:
        return Outcome(False, status, transient=True,
                       retry_after=parse_retry_after(response.headers.get("Retry-After")),
                       detail=f"answered {status}{said}")
    if 300 <= status < 400:
        return Outcome(False, status, detail=f"answered {status} (redirects are not followed)")
    return Outcome(False, status, detail=f"answered {status}{said}")


# --- destinations -----------------------------------------------------------------------------


def resolve(destination: Destination, namespace: str, config: NotifySettings) -> tuple[str, str]:
    """(url, signing secret) of ``destination``; raise DestinationError. The signing secret is
    the global ``HEADWIND_WEBHOOK_SECRET`` for the global webhook, and the Secret's own
    ``secret`` key (or none) for a team's webhook: one team never learns another's key."""
    if destination.secret is None:
        channel = config.channel(destination.channel)
        if channel is None:
            raise DestinationError(f"{destination.channel} is not configured")
        secret = config.webhook_secret if destination.channel == "webhook" else ""
        return channel.url, secret
    data = _read_secret(namespace, destination.secret)
    where = f"Secret {namespace}/{destination.secret}"
    url = _decode(data.get("url"), where, "url")
    if not url:
        raise DestinationError(f"{where} has no key 'url'")
    problem = url_problem(url)
    if problem:
        raise DestinationError(f"{where} key 'url': {problem}")
    signing = _decode(data.get("secret"), where, "secret") if destination.channel == "webhook" \
        else ""
    return url, signing


def _decode(value: str | None, where: str, key: str) -> str:
    if not value:
        return ""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise DestinationError(f"{where} key {key!r} is not base64 UTF-8 text") from None


def _read_secret(namespace: str, name: str) -> dict:
    from operator_app import kube  # the worker's door to the cluster, imported when needed

    try:
        api = kube.api_client()
    except kube.KubeError as exc:
        raise DestinationError(f"cannot reach the cluster: {exc.reason}", transient=True) \
            from None
    try:
        secret = kube.request(api, "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}",
                              timeout=(5, 10))
    except kube.KubeError as exc:
        what = f"{exc.status} {exc.reason}".strip() if exc.status else "no answer"
        raise DestinationError(f"Secret {namespace}/{name} could not be read ({what})",
                               transient=exc.transient) from None
    finally:
        api.close()
    return secret.get("data") or {}


# --- one attempt, whole -----------------------------------------------------------------------


def payload_for(channel: str, notice: Notice, link: str, delivery_id: str) -> dict:
    if channel == "slack":
        return payloads.slack_message(notice, link)
    if channel == "teams":
        return payloads.teams_message(notice, link)
    return payloads.webhook_body(notice, link, delivery_id)


def summary_payload_for(channel: str, summary: payloads.Summary, link: str,
                        delivery_id: str) -> dict:
    if channel == "slack":
        return payloads.slack_summary(summary, link)
    if channel == "teams":
        return payloads.teams_summary(summary, link)
    return payloads.webhook_summary(summary, link, delivery_id)


def send(channel: str, url: str, payload: dict, *, verify: bool | str, signing_secret: str = "",
         event: str = "", delivery_id: str = "") -> Outcome:
    """Serialise ``payload`` once, sign those exact bytes (generic webhook), POST them."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    if channel == "webhook":
        headers["X-Headwind-Event"] = event
        headers["X-Headwind-Delivery"] = delivery_id
        if signing_secret:
            headers[HEADER] = sign(body, signing_secret, int(time.time()))
    return post(url, body, headers, verify=verify, secrets=(signing_secret,))


def send_test(channel: str) -> Outcome:
    """Send the canned test notice to the global ``channel`` now, in this process (the admin's
    button), and count it (``event="test"``). Never raises; the Outcome says what happened."""
    import uuid

    from django.conf import settings

    from . import metrics

    config: NotifySettings = settings.HEADWIND_NOTIFY
    try:
        url, signing = resolve(Destination(channel), "", config)
    except DestinationError as exc:
        return Outcome(False, detail=str(exc))
    notice = payloads.sample_notice()
    delivery_id = uuid.uuid4().hex
    link = f"{config.dashboard_url}/" if config.dashboard_url else ""
    outcome = send(channel, url, payload_for(channel, notice, link, delivery_id),
                   verify=config.verify, signing_secret=signing, event="test",
                   delivery_id=delivery_id)
    counter = metrics.NOTIFICATIONS_SENT if outcome.ok else metrics.NOTIFICATIONS_FAILED
    counter.labels(channel, "test").inc()
    return outcome
