"""Which destinations hear about a notice: the global channels, narrowed or widened by the
target's ``headwind.sh/notify`` annotation (and ``headwind.sh/notify-events``).

Grammar of ``headwind.sh/notify`` (items separated by commas, spaces around them ignored)::

    value   = "none" | item *("," item)
    item    = "all"                          every globally configured channel
            | channel                        that global channel
            | "-" channel                    not that global channel
            | channel "=secret:" name        that kind of channel, at the URL held in the Secret
                                             <name> (key "url") in the target's own namespace
    channel = "slack" | "teams" | "webhook"

- No annotation: every global channel.
- ``-channel`` items (or ``all``): every global channel but those, plus any Secret-held ones.
- Channel names without ``all`` or ``-``: exactly those global channels, plus any Secret-held
  ones; a Secret-held item alone therefore *replaces* the global channels for this target.
- ``none`` alone: nothing at all. Listing and excluding global channels at once
  (``slack,-teams``), an item twice, an unknown channel or a bad Secret name is an error.

``headwind.sh/notify-events`` narrows the events for every destination of the target, with the
syntax of ``HEADWIND_<CHANNEL>_EVENTS`` (``a,b`` only these, ``-a,-b`` all but these). A global
channel also keeps its own ``HEADWIND_<CHANNEL>_EVENTS`` filter.

An annotation that does not parse is reported (``Route.problem``) and the global channels are
used, as if it were absent. Pure module (stdlib only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .notice import Notice
from .settings import ALL_EVENTS, CHANNELS, EventFilterError, NotifySettings, parse_events

NOTIFY = "headwind.sh/notify"
NOTIFY_EVENTS = "headwind.sh/notify-events"
MAX_ITEMS = 10
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_SECRET_PREFIX = "secret:"


class AnnotationError(ValueError):
    """A ``headwind.sh/notify`` value that does not follow the grammar."""


@dataclass(frozen=True, order=True)
class Destination:
    """Where one notice goes: a channel kind and, for a team's own URL, its Secret's name
    (in the notice's namespace). Carries no URL, so it may travel in task messages."""

    channel: str
    secret: str | None = None

    def label(self, namespace: str) -> str:
        """For logs and the admin: ``slack`` or ``slack (Secret team-a/team-a-slack)``."""
        return self.channel if self.secret is None else \
            f"{self.channel} (Secret {namespace}/{self.secret})"

    def key(self, namespace: str) -> str:
        """Storm-window key: one summary per destination."""
        return self.channel if self.secret is None else f"{self.channel}@{namespace}/{self.secret}"


@dataclass(frozen=True)
class Plan:
    """A parsed ``headwind.sh/notify``: which global channels, and which Secret-held URLs."""

    all_globals: bool = True
    named: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    secrets: tuple[Destination, ...] = ()

    def global_channels(self, configured: list[str]) -> list[str]:
        chosen = configured if self.all_globals else [c for c in configured if c in self.named]
        return [c for c in chosen if c not in self.removed]


DEFAULT = Plan()
NOTHING = Plan(all_globals=False)


def _channel(word: str, value: str) -> str:
    if word not in CHANNELS:
        raise AnnotationError(f"unknown channel {word!r} in {value!r} "
                              f"(known: {', '.join(CHANNELS)})")
    return word


def parse_notify(value: str | None) -> Plan:
    """Parse ``headwind.sh/notify``; raise AnnotationError saying what is wrong."""
    text = (value or "").strip()
    if not text:
        return DEFAULT
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise AnnotationError(f"empty item in {text!r}")
    if len(items) > MAX_ITEMS:
        raise AnnotationError(f"more than {MAX_ITEMS} items")
    lowered = [item.lower() for item in items]
    if "none" in lowered:
        if len(items) > 1:
            raise AnnotationError("'none' cannot be combined with other items")
        return NOTHING
    all_globals, named, removed, secrets = False, set(), set(), []
    seen: set[str] = set()
    for item, word in zip(items, lowered, strict=True):
        if word in seen:
            raise AnnotationError(f"{item!r} is listed twice")
        seen.add(word)
        if word == "all":
            all_globals = True
        elif word.startswith("-"):
            removed.add(_channel(word[1:].strip(), text))
        elif "=" in item:
            channel, _, where = item.partition("=")
            channel = _channel(channel.strip().lower(), text)
            where = where.strip()
            if not where.startswith(_SECRET_PREFIX):
                raise AnnotationError(f"{item!r}: expected {channel}=secret:<name>")
            name = where[len(_SECRET_PREFIX):].strip()
            if not _SECRET_NAME.fullmatch(name):
                raise AnnotationError(f"{item!r}: {name!r} is not a Secret name")
            secrets.append(Destination(channel, name))
        else:
            named.add(_channel(word, text))
    contradictions = sorted(named & removed)
    if contradictions:
        raise AnnotationError(f"{', '.join(contradictions)} both listed and excluded")
    if named and removed:
        raise AnnotationError("either list global channels (slack,teams) or exclude them "
                              "(-teams), not both")
    return Plan(all_globals=all_globals or bool(removed) or not (named or secrets),
                named=frozenset(named), removed=frozenset(removed), secrets=tuple(secrets))


@dataclass(frozen=True)
class Route:
    """The outcome of routing one notice. ``problem`` explains an ignored annotation or a
    destination that cannot be served (for a log line); it never contains a URL."""

    destinations: tuple[Destination, ...]
    problem: str = ""


def route(notice: Notice, config: NotifySettings) -> Route:
    """Destinations for ``notice`` under ``config`` and the target's annotations."""
    problem = ""
    try:
        plan = parse_notify(notice.annotations.get(NOTIFY))
        try:
            events = parse_events(notice.annotations.get(NOTIFY_EVENTS))
        except EventFilterError as exc:
            raise AnnotationError(f"{NOTIFY_EVENTS}: {exc}") from None
    except AnnotationError as exc:
        plan, events = DEFAULT, ALL_EVENTS
        problem = f"{NOTIFY} on {notice.target} ignored ({exc}); using the global channels"
    configured = list(config.channels)
    if not problem:
        missing = sorted(plan.named - set(configured))
        if missing:
            problem = (f"{NOTIFY} on {notice.target} names {', '.join(missing)}, which "
                       f"{'is' if len(missing) == 1 else 'are'} not configured")
    if notice.event not in events:
        return Route((), problem)
    chosen = [Destination(name) for name in plan.global_channels(configured)
              if config.channels[name].wants(notice.event)]
    chosen.extend(plan.secrets)
    return Route(tuple(chosen), problem)
