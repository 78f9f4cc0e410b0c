"""The operator's own settings, read from the environment once, in one place, and checked.

``headwind_site/settings.py`` builds ``settings.HEADWIND`` from :meth:`OperatorSettings.
from_environ` when Django starts, so a typo (``HEADWIND_POLLING_INTERVAL=5m``) stops every process
at start with the variable's name instead of crashing a watcher later. Code reads
``settings.HEADWIND.<field>``; tests replace it with ``dataclasses.replace``.

Pure module (stdlib and the pure ``operator_app.core.images``): nothing here needs Django.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from operator_app.core import images

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})



class ConfigError(ValueError):
    """An environment variable has a value Headwind cannot use; the message names it."""


def parse_bool(name: str, text: str | None, default: bool) -> bool:
    """The one true/false reader: ``1/true/yes/on`` and ``0/false/no/off``, any case; empty or
    unset is ``default``; anything else is an error rather than a silent ``false``."""
    if text is None or not text.strip():
        return default
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}={text!r}: expected true or false")


def number(environ: Mapping[str, str], name: str, default: float, *, minimum: float,
            maximum: float | None = None, whole: bool = False) -> float:
    text = (environ.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{name}={text!r}: expected {kind}") from None
    if value < minimum or (maximum is not None and value > maximum) or value != value:
        bound = f" and at most {maximum:g}" if maximum is not None else ""
        raise ConfigError(f"{name}={text!r}: must be at least {minimum:g}{bound}")
    return value


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    """A TCP port to listen on; 0 turns the listener off."""
    return int(number(environ, name, default, minimum=0, maximum=65535, whole=True))


def _hosts(text: str | None) -> frozenset[str]:
    return frozenset(item.strip().lower() for item in (text or "").split(",") if item.strip())


#: Webhook sources whose payloads name no registry host: HEADWIND_REGISTRY_HOST_MAP supplies it
#: (``jfrog=acme.jfrog.io``), per repository where that matters (``jfrog:docker-local=…``).
HOSTLESS_WEBHOOK_SOURCES = ("harbor", "jfrog", "nexus")
_PER_REPOSITORY_SOURCES = ("jfrog", "nexus")
_REPOSITORY_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _map_host(name: str, entry: str, text: str) -> str:
    """A registry host (``host[:port]``), normalised as images are (lower case, Docker Hub's
    aliases folded to ``docker.io``)."""
    if not text or "/" in text or "@" in text:
        raise ConfigError(f"{name}: {entry!r}: {text!r} is not a registry host[:port]")
    try:
        return images.join_repository(text, "x").partition("/")[0]
    except images.InvalidImageReference:
        raise ConfigError(f"{name}: {entry!r}: {text!r} is not a registry host[:port]") from None


def _map_prefix(name: str, entry: str, text: str) -> str:
    """``host[:port][/path]``: where a host-less source's images live."""
    host, _, path = text.partition("/")
    host = _map_host(name, entry, host)
    if not path:
        return host
    try:  # a neutral host, so Docker Hub's ``library/`` rule cannot touch the path
        path = images.join_repository("localhost", path.lower()).partition("/")[2]
    except images.InvalidImageReference:
        raise ConfigError(f"{name}: {entry!r}: {text!r} is not host[:port][/path]") from None
    return f"{host}/{path}"


def _host_map(environ: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """``from=to,...``: registry host rewrites (``registry.local:5000=registry.example.com``)
    and hosts for host-less webhook sources (``jfrog=acme.jfrog.io``,
    ``jfrog:<repo-key>=host[/path]``, ``nexus=…``, ``nexus:<repository>=…``, ``harbor=…``).
    Normalised ``(key, value)`` pairs, sorted; a malformed or repeated entry is an error."""
    entries: dict[str, str] = {}
    for raw in (environ.get(name) or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        key, equals, value = (part.strip() for part in entry.partition("="))
        if not equals or not key or not value:
            raise ConfigError(f"{name}: {entry!r} is not from=to")
        source, colon, repository = key.partition(":")
        if source.lower() in HOSTLESS_WEBHOOK_SOURCES:
            source = source.lower()
            if colon:
                if source not in _PER_REPOSITORY_SOURCES:
                    raise ConfigError(f"{name}: {entry!r}: {source} takes no repository part")
                if not _REPOSITORY_KEY_RE.fullmatch(repository):
                    raise ConfigError(f"{name}: {entry!r}: {repository!r} is not a repository "
                                      "key")
                key = f"{source}:{repository.lower()}"
            else:
                key = source
            value = _map_prefix(name, entry, value)
        else:
            key, value = _map_host(name, entry, key), _map_host(name, entry, value)
        if key in entries:
            raise ConfigError(f"{name}: {key!r} is mapped twice")
        entries[key] = value
    return tuple(sorted(entries.items()))


@dataclass(frozen=True)
class OperatorSettings:
    """Everything the operator, the worker and the poller read from the environment."""

    polling_enabled: bool = False
    polling_interval: float = 300.0
    polling_concurrency: int = 4
    webhook_verify: bool = True
    verify_not_found_seconds: float = 30.0
    verify_unreachable_seconds: float = 300.0
    insecure_registries: frozenset[str] = frozenset()
    registry_ca_file: str = ""
    operator_metrics_port: int = 9090
    worker_metrics_port: int = 9091
    poller_metrics_port: int = 9092
    expiry_interval: float = 60.0
    #: Seconds between the rollout watcher's passes over every followed rollout (it also
    #: checks a target at once when a watch event shows it changed).
    rollout_check_interval: float = 2.0
    #: Seconds between radar passes (headwind_site/inventory.py); each covers what changed.
    radar_interval: float = 10.0
    #: Most series per radar metric (headwind_versions_behind, ..._running_version_age_seconds).
    radar_series_limit: int = 5000
    token_review_cache_seconds: float = 60.0
    #: HEADWIND_REGISTRY_HOST_MAP, parsed: see :func:`_host_map` and docs/webhooks.md.
    registry_host_map: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> OperatorSettings:
        """Read and check every variable; raise ConfigError naming the first bad one."""
        verify = (environ.get("HEADWIND_WEBHOOK_VERIFY") or "").strip().lower()
        verify = "true" if verify == "always" else verify  # the 0.1 spelling of "on"
        return cls(
            polling_enabled=parse_bool("HEADWIND_POLLING_ENABLED",
                                       environ.get("HEADWIND_POLLING_ENABLED"), False),
            polling_interval=number(environ, "HEADWIND_POLLING_INTERVAL", 300.0, minimum=1),
            polling_concurrency=int(number(environ, "HEADWIND_POLLING_CONCURRENCY", 4,
                                            minimum=1, maximum=64, whole=True)),
            webhook_verify=parse_bool("HEADWIND_WEBHOOK_VERIFY", verify or None, True),
            verify_not_found_seconds=number(
                environ, "HEADWIND_WEBHOOK_VERIFY_NOT_FOUND_SECONDS", 30.0, minimum=0),
            verify_unreachable_seconds=number(
                environ, "HEADWIND_WEBHOOK_VERIFY_UNREACHABLE_SECONDS", 300.0, minimum=0),
            insecure_registries=_hosts(environ.get("HEADWIND_INSECURE_REGISTRIES")),
            registry_ca_file=(environ.get("HEADWIND_REGISTRY_CA_FILE") or "").strip(),
            operator_metrics_port=_port(environ, "HEADWIND_OPERATOR_METRICS_PORT", 9090),
            worker_metrics_port=_port(environ, "HEADWIND_WORKER_METRICS_PORT", 9091),
            poller_metrics_port=_port(environ, "HEADWIND_POLLER_METRICS_PORT", 9092),
            expiry_interval=number(environ, "HEADWIND_EXPIRY_INTERVAL", 60.0, minimum=1),
            rollout_check_interval=number(environ, "HEADWIND_ROLLOUT_CHECK_INTERVAL", 2.0,
                                          minimum=0.2),
            radar_interval=number(environ, "HEADWIND_RADAR_INTERVAL", 10.0, minimum=0.5),
            radar_series_limit=int(number(environ, "HEADWIND_RADAR_SERIES_LIMIT", 5000,
                                          minimum=0, whole=True)),
            token_review_cache_seconds=number(
                environ, "HEADWIND_TOKEN_REVIEW_CACHE_SECONDS", 60.0, minimum=0),
            registry_host_map=_host_map(environ, "HEADWIND_REGISTRY_HOST_MAP"),
        )
