"""Image-name rules for the webhook parsers: the core's normaliser, with payload errors.

There is one normaliser, :mod:`operator_app.core.images` (distribution/reference's rules); a
webhook's repository must come out exactly as a running container's does, or the push never
matches the workload. This module only adapts it to the parsers: its errors become
:class:`PayloadError`, and one leniency is added for payloads: a repository *path* is
lower-cased before validation, because GHCR payloads spell owners with capitals
(``Codertocat``) while the registry itself serves them in lower case. Hosts are told apart from
paths by the core's rule (a first component with ``.``, ``:``, ``localhost`` or an upper-case
letter is a host) and compared case-insensitively.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from operator_app.core import images
from registry.webhooks.payloads import PayloadError, shown

DOCKER_HUB = images.DEFAULT_REGISTRY


def validate_tag(tag: object) -> str:
    if not isinstance(tag, str) or not images.is_valid_tag(tag):
        raise PayloadError(f"invalid tag {shown(tag)}")
    return tag


def validate_digest(digest: object) -> str:
    """``sha256:``/``sha384:``/``sha512:`` + lowercase hex of the right length (go-digest)."""
    if not isinstance(digest, str) or not images.is_valid_digest(digest):
        raise PayloadError(f"invalid digest {shown(digest)}")
    return digest


def join_repository(host: str, path: str) -> str:
    """The normalised repository for a payload's ``host`` and ``path`` (path lower-cased)."""
    if not host.isascii() or not path.isascii():
        raise PayloadError(f"invalid repository {shown(host + '/' + path)}")
    try:
        return images.join_repository(host, path.lower())
    except images.InvalidImageReference as exc:
        raise PayloadError(f"invalid repository {shown(host + '/' + path)}: "
                           f"{exc.problem}") from None


def split_host(name: str) -> tuple[str | None, str]:
    """``(host, path)`` by the core's rule; host is None when the name has none."""
    return images.split_domain(name)


def normalise_repository(name: str) -> str:
    """A repository name (no tag or digest) in canonical form: ``nginx`` ->
    ``docker.io/library/nginx``, ``localhost:5000/App`` -> ``localhost:5000/app``."""
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
