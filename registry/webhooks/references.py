"""Image-name rules the parsers share: repository normalisation, tag and digest validation.

Deliberately local and small (the full reference parser lives elsewhere). The rules are
docker's (``distribution/reference``):

* the first ``/``-separated component of a name is a registry host iff it contains ``.`` or
  ``:`` or is ``localhost``; otherwise the host is ``docker.io``;
* ``index.docker.io`` and ``registry-1.docker.io`` are spelled ``docker.io``;
* a single-component Docker Hub name lives under ``library/``;
* path components match ``[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`` and the whole name is at
  most 255 characters;
* tags match ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; digests are ``sha256:`` + 64 lowercase hex.

Unlike docker, names are lower-cased before validation (GHCR payloads spell owners with
capitals, ``Codertocat``), so every repository that comes out is lowercase. Docker's extra rule
"an upper-case first component is a host" is not applied, so lower-casing stays idempotent.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from registry.webhooks.payloads import PayloadError, shown

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
MAX_NAME_LENGTH = 255

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-f0-9:.]+\])(?::[0-9]{{1,5}})?")


def looks_like_host(component: str) -> bool:
    """Docker's test for "the first path component names a registry"."""
    return "." in component or ":" in component or component == "localhost"


def validate_tag(tag: object) -> str:
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise PayloadError(f"invalid tag {shown(tag)}")
    return tag


def validate_digest(digest: object) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise PayloadError(f"invalid digest {shown(digest)}")
    return digest


def join_repository(host: str, path: str) -> str:
    """``host`` + ``/`` + ``path``, normalised and validated; ``host`` is taken as given."""
    if not host.isascii() or not path.isascii():
        raise PayloadError(f"invalid repository {shown(host + '/' + path)}")
    host = host.lower()
    if len(host) > MAX_NAME_LENGTH or not _HOST.fullmatch(host):
        raise PayloadError(f"invalid registry host {shown(host)}")
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    if len(path) > MAX_NAME_LENGTH:
        raise PayloadError("repository name too long")
    components = path.lower().split("/")
    if not all(_COMPONENT.fullmatch(component) for component in components):
        raise PayloadError(f"invalid repository path {shown(path)}")
    if host == DOCKER_HUB and len(components) == 1:
        components.insert(0, "library")
    repository = host + "/" + "/".join(components)
    if len(repository) > MAX_NAME_LENGTH:
        raise PayloadError("repository name too long")
    return repository


def split_host(name: str) -> tuple[str | None, str]:
    """``(host, path)`` by docker's rule; host is None when the name has none."""
    first, slash, rest = name.partition("/")
    if slash and looks_like_host(first.lower()):
        return first, rest
    return None, name


def normalise_repository(name: str) -> str:
    """A repository name (no tag or digest) in canonical form: ``nginx`` ->
    ``docker.io/library/nginx``, ``Localhost:5000/App`` -> ``localhost:5000/app``."""
    if not name:
        raise PayloadError("empty repository name")
    host, path = split_host(name)
    return join_repository(host or DOCKER_HUB, path)


def split_reference(reference: str) -> tuple[str, str | None, str | None]:
    """``name[:tag][@digest]`` -> ``(name, tag, digest)``; absent parts are None, present but
    empty parts are ``""``. A ``:`` before the last ``/`` is a port, not a tag."""
    name, at, digest = reference.partition("@")
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, (digest if at else None)


def url_host(url: str) -> str | None:
    """The ``host[:port]`` of an absolute URL, without any userinfo; None if there is none."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None
    host = netloc.rpartition("@")[2]
    return host or None
