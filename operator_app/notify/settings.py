"""The notification settings, read from the environment once: :func:`from_environ`.

``headwind_site/settings.py`` calls it when Django starts and keeps the result as
``settings.HEADWIND_NOTIFY``; an unusable value stops the process with the variable's name
(:class:`NotifyConfigError` → ``ImproperlyConfigured``). Webhook URLs carry their credential
(Slack's and Teams' are bearer secrets), so no message and no ``repr`` here ever shows one.

Pure module (stdlib only).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .notice import Event

CHANNELS = ("slack", "teams", "webhook")
ALL_EVENTS = frozenset(Event)

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})

#: Variables per channel: (URL names, first wins; the seed's *_ENABLED names).
_URL_NAMES = {
    "slack": ("HEADWIND_SLACK_WEBHOOK_URL", "SLACK_WEBHOOK_URL"),
    "teams": ("HEADWIND_TEAMS_WEBHOOK_URL", "TEAMS_WEBHOOK_URL"),
    "webhook": ("HEADWIND_WEBHOOK_URL", "WEBHOOK_URL"),
}
_ENABLED_NAMES = {
    "slack": ("HEADWIND_SLACK_ENABLED", "SLACK_ENABLED"),
    "teams": ("HEADWIND_TEAMS_ENABLED", "TEAMS_ENABLED"),
    "webhook": ("HEADWIND_WEBHOOK_ENABLED", "WEBHOOK_ENABLED"),
}
_MAX_URL = 3000


class NotifyConfigError(ValueError):
    """A notification variable has a value Headwind cannot use; the message names it (and
    never repeats a URL)."""


class EventFilterError(ValueError):
    """An event list that does not parse (the message says why)."""


def parse_events(text: str | None) -> frozenset[Event]:
    """An event filter: empty or ``all`` → every event; ``a,b`` → only those; ``-a,-b`` →
    every event but those. Raise EventFilterError for unknown names or a mix of both forms."""
    items = [item.strip().lower() for item in (text or "").split(",") if item.strip()]
    if not items or items == ["all"]:
        return ALL_EVENTS
    removed = {item[1:].strip() for item in items if item.startswith("-")}
    kept = {item for item in items if not item.startswith("-")}
    if removed and kept:
        raise EventFilterError("either name events (a,b) or exclude them (-a,-b), not both")
    unknown = sorted((removed | kept) - {str(e) for e in Event})
    if unknown:
        raise EventFilterError(f"unknown event {', '.join(unknown)} (known: "
                               f"{', '.join(str(e) for e in Event)})")
    if removed:
        return frozenset(e for e in Event if str(e) not in removed)
    return frozenset(Event(item) for item in kept)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a notification destination, or None. Never includes the URL."""
    if len(url) > _MAX_URL:
        return f"longer than {_MAX_URL} characters"
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError for a bad port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "not an http(s) URL"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials before the host (user:password@)"
    return None


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ChannelSettings:
    """One globally configured channel. ``url`` is a secret: kept out of ``repr``."""

    name: str
    url: str = field(repr=False)
    events: frozenset[Event] = ALL_EVENTS
    source: str = ""  # the variable the URL came from (shown in the admin; not the URL)

    def wants(self, event: Event) -> bool:
        return event in self.events


@dataclass(frozen=True)
class NotifySettings:
    """Everything notifications read from the environment (``settings.HEADWIND_NOTIFY``)."""

    slack: ChannelSettings | None = None
    teams: ChannelSettings | None = None
    webhook: ChannelSettings | None = None
    webhook_secret: str = field(default="", repr=False)
    dashboard_url: str = ""
    ca_file: str = ""
    max_attempts: int = 6
    storm_threshold: int = 5
    storm_window: int = 60

    def channel(self, name: str) -> ChannelSettings | None:
        return getattr(self, name) if name in CHANNELS else None

    @property
    def channels(self) -> dict[str, ChannelSettings]:
        """The configured channels, in a stable order."""
        return {name: cfg for name in CHANNELS if (cfg := self.channel(name)) is not None}

    @property
    def verify(self) -> bool | str:
        """``verify=`` for requests: the CA bundle when one is configured, else the system's."""
        return self.ca_file or True


def _first(environ: Mapping[str, str], names: Iterable[str]) -> tuple[str, str]:
    """(value, name) of the first non-empty variable; the HEADWIND_ form is listed first."""
    for name in names:
        value = (environ.get(name) or "").strip()
        if value:
            return value, name
    return "", ""


def _bool(environ: Mapping[str, str], names: Iterable[str], default: bool) -> bool:
    text, name = _first(environ, names)
    if not text:
        return default
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise NotifyConfigError(f"{name}={text!r}: expected true or false")


def _whole(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = (environ.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise NotifyConfigError(f"{name}={text!r}: expected a whole number") from None
    if not low <= value <= high:
        raise NotifyConfigError(f"{name}={text!r}: must be between {low} and {high}")
    return value


def _channel(environ: Mapping[str, str], name: str) -> ChannelSettings | None:
    url, source = _first(environ, _URL_NAMES[name])
    if not url or not _bool(environ, _ENABLED_NAMES[name], True):
        return None
    problem = url_problem(url)
    if problem:
        raise NotifyConfigError(f"{source}: {problem}")
    events_name = f"HEADWIND_{name.upper()}_EVENTS"
    try:
        events = parse_events(environ.get(events_name))
    except EventFilterError as exc:
        raise NotifyConfigError(f"{events_name}: {exc}") from None
    return ChannelSettings(name=name, url=url, events=events, source=source)


def from_environ(environ: Mapping[str, str]) -> NotifySettings:
    """Read and check every notification variable; raise NotifyConfigError naming the first
    bad one. A channel is on when its URL is set (``*_ENABLED=false`` turns it off)."""
    secret, _ = _first(environ, ("HEADWIND_WEBHOOK_SECRET", "WEBHOOK_SECRET"))
    dashboard, dashboard_name = _first(environ, ("HEADWIND_DASHBOARD_URL", "HEADWIND_UI_URL"))
    if dashboard:
        problem = url_problem(dashboard)
        if problem:
            raise NotifyConfigError(f"{dashboard_name}: {problem}")
    ca_file = (environ.get("HEADWIND_NOTIFY_CA_FILE") or "").strip()
    if ca_file and not os.path.isfile(ca_file):
        raise NotifyConfigError(f"HEADWIND_NOTIFY_CA_FILE={ca_file!r}: no such file")
    return NotifySettings(
        slack=_channel(environ, "slack"),
        teams=_channel(environ, "teams"),
        webhook=_channel(environ, "webhook"),
        webhook_secret=secret,
        dashboard_url=dashboard.rstrip("/"),
        ca_file=ca_file,
        max_attempts=_whole(environ, "HEADWIND_NOTIFY_MAX_ATTEMPTS", 6, 1, 20),
        storm_threshold=_whole(environ, "HEADWIND_NOTIFY_STORM_THRESHOLD", 5, 1, 1000),
        storm_window=_whole(environ, "HEADWIND_NOTIFY_STORM_WINDOW", 60, 5, 3600),
    )
