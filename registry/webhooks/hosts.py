"""``HEADWIND_REGISTRY_HOST_MAP`` applied to webhook events: pure code, no settings.

The setting is parsed and checked once, by ``headwind_site.config`` (``registry_host_map``:
normalised ``(key, value)`` pairs); the receiving view builds a :class:`HostMap` from those
pairs and hands it to :func:`registry.webhooks.parse`. Two kinds of entry:

* ``from-host=to-host`` rewrites the registry host of every event before it is queued, so a
  workload naming ``registry.example.com/team/app`` matches a push the registry reported as
  ``registry.local:5000`` (the Host header behind a proxy). Hosts compare case-insensitively,
  ports included; Docker Hub's aliases count as ``docker.io``.
* ``<source>=host[/path]`` (and ``<source>:<repository>=host[/path]``) places the images of a
  source whose payloads name no registry host at all: JFrog Artifactory, Sonatype Nexus and
  Harbor 1.x. See each parser for how the repository is built from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from registry.webhooks.payloads import ParseResult
from registry.webhooks.references import join_repository

#: Sources placed by the host map (``headwind_site.config.HOSTLESS_WEBHOOK_SOURCES``).
HOSTLESS_SOURCES = frozenset({"harbor", "jfrog", "nexus"})


def no_host_reason(source: str) -> str:
    """The ignore reason for a host-less source's push when the map has no entry for it."""
    return f"no registry host for {source}: set HEADWIND_REGISTRY_HOST_MAP ({source}=<host>)"


class HostMap:
    """Host rewrites and host-less sources' registry prefixes, from normalised pairs."""

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        self._rewrites: dict[str, str] = {}
        self._prefixes: dict[tuple[str, str | None], str] = {}
        for key, value in entries:
            source, colon, repository = key.partition(":")
            if source in HOSTLESS_SOURCES:
                self._prefixes[(source, repository.lower() if colon else None)] = value
            else:
                self._rewrites[key.lower()] = value.lower()

    def __bool__(self) -> bool:
        return bool(self._rewrites or self._prefixes)

    def prefix(self, source: str, repository: str | None = None) -> tuple[str, bool] | None:
        """Where ``source``'s images live: ``(host[/path], per_repository)``, the entry for
        ``repository`` (``jfrog:<repo-key>``) first, then the source-wide one; None if
        neither is mapped."""
        if repository is not None:
            found = self._prefixes.get((source, repository.lower()))
            if found is not None:
                return found, True
        found = self._prefixes.get((source, None))
        return (found, False) if found is not None else None

    def rewrite(self, repository: str) -> str:
        """A normalised repository with its registry host mapped (unchanged if unmapped)."""
        host, _, path = repository.partition("/")
        target = self._rewrites.get(host)
        if target is None or not path:
            return repository
        return join_repository(target, path)

    def apply(self, result: ParseResult) -> ParseResult:
        """``result`` with every event's host rewritten (duplicates merged, order kept)."""
        if not self._rewrites:
            return result
        mapped = ParseResult(ignored=list(result.ignored), response=result.response)
        for event in result.events:
            repository = self.rewrite(event.repository)
            moved = replace(event, repository=repository)
            if moved not in mapped.events:
                mapped.events.append(moved)
        return mapped


NO_HOSTS = HostMap()


def place(prefix: str, path: str) -> str:
    """The normalised repository ``prefix/path`` for a mapped ``host[/path]`` prefix."""
    host, _, base = prefix.partition("/")
    return join_repository(host, f"{base}/{path}" if base else path)
