"""Container image references, parsed and normalised the way the container runtime does it.

The runtime (containerd, CRI-O, Docker) resolves ``nginx`` to ``docker.io/library/nginx:latest``
with distribution/reference's ``ParseNormalizedNamed``. Events from registries arrive in other
spellings, so matching a pushed image to a running container only works when both sides are
normalised by the same rules. The user's own spelling is kept as well, because rewriting
``nginx:1.2`` as ``docker.io/library/nginx:1.3`` would be a surprising diff in their manifests.

Pure module: stdlib only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_REGISTRY",
    "DEFAULT_TAG",
    "ImageRef",
    "InvalidImageReference",
    "is_valid_digest",
    "is_valid_tag",
    "join_repository",
    "normalise_repository",
    "parse_image",
    "short_digest",
    "split_domain",
]

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_OFFICIAL_PREFIX = "library/"
_LOCALHOST = "localhost"
# index.docker.io is what distribution/reference folds; registry-1.docker.io is the host Docker Hub
# actually serves from and shows up in webhook payloads, so it is folded too.
_DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io"})
_PATH_MAX = 255  # distribution/reference RepositoryNameTotalLengthMax (applies to the path)

# Grammar from distribution/reference regexp.go, written with ASCII classes because Python's
# \w and \d are Unicode-aware and Go's are not.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN_RE = re.compile(rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?")
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_SHAPE_RE = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
)
# go-digest: only registered algorithms are accepted, with exact length lowercase hex.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")


class InvalidImageReference(ValueError):
    """An image string the container runtime would refuse; the message names the input."""

    def __init__(self, reference: str, problem: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {problem}")
        self.reference = reference
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One parsed image reference.

    ``registry``/``path`` are normalised (what the runtime pulls; the host in lower case, as DNS
    compares it); ``name`` is the repository part exactly as written (what we write back), so
    ``with_tag`` never changes the user's spelling.
    """

    registry: str
    path: str
    tag: str | None
    digest: str | None
    name: str

    @staticmethod
    def valid_tag(tag: str) -> bool:
        """A tag this kind of reference can carry (the registry API's tag grammar)."""
        return is_valid_tag(tag)

    @property
    def repository(self) -> str:
        """Normalised ``registry/path``: the key used to match containers with push events."""
        return f"{self.registry}/{self.path}"

    @property
    def effective_tag(self) -> str | None:
        """The tag the runtime resolves: ``latest`` when neither tag nor digest is given.

        None for a digest-only reference: it names no tag, so there is nothing to track.
        """
        if self.tag is not None:
            return self.tag
        return DEFAULT_TAG if self.digest is None else None

    def with_tag(self, tag: str, digest: str | None = None) -> str:
        """The image string to write into the pod spec for ``tag`` (pinned to ``digest`` if given).

        Any digest on the current reference is dropped unless passed again: the runtime pulls by
        digest when both are present, so keeping an old digest would silently ignore the new tag.
        """
        if not is_valid_tag(tag):
            raise InvalidImageReference(f"{self.name}:{tag}", f"invalid tag {tag!r}")
        if digest is not None:
            problem = _digest_problem(digest)
            if problem:
                raise InvalidImageReference(f"{self.name}:{tag}@{digest}", problem)
            return f"{self.name}:{tag}@{digest}"
        return f"{self.name}:{tag}"

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def is_valid_tag(tag: str) -> bool:
    """True for a tag the registry API accepts (``[\\w][\\w.-]{0,127}``, ASCII)."""
    return _TAG_RE.fullmatch(tag) is not None


def is_valid_digest(digest: str) -> bool:
    """True for ``sha256:<64 lowercase hex>`` (or sha384/sha512), as go-digest requires."""
    return _digest_problem(digest) is None


def short_digest(digest: str) -> str:
    """``sha256:0123456789ab``: enough to recognise a digest in a log line or a reason."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}" if encoded else digest


def parse_image(s: str) -> ImageRef:
    """Parse ``[registry[:port]/]path[:tag][@digest]`` with ``ParseNormalizedNamed`` rules."""
    if not isinstance(s, str) or s == "":
        raise InvalidImageReference(str(s), "empty reference")
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidImageReference(s, "cannot specify 64-byte hexadecimal strings as a name")

    rest, at, digest = s.partition("@")
    if at:
        problem = _digest_problem(digest)
        if problem:
            raise InvalidImageReference(s, problem)
    # The tag separator is the first ':' after the last '/'; earlier colons belong to the port.
    slash = rest.rfind("/")
    colon = rest.find(":", slash + 1)
    if colon == -1:
        name, tag = rest, None
    else:
        name, tag = rest[:colon], rest[colon + 1 :]
        if not is_valid_tag(tag):
            raise InvalidImageReference(s, f"invalid tag {tag!r}")

    registry, path = _split_name(s, name)
    return ImageRef(registry=registry, path=path, tag=tag, digest=digest or None, name=name)


def normalise_repository(s: str) -> str:
    """Normalise a bare repository (``library/nginx``, ``ghcr.io/org/app``) from a webhook.

    A tag or digest here means the caller passed an image, not a repository, so it is refused.
    """
    ref = parse_image(s)
    if ref.tag is not None or ref.digest is not None:
        raise InvalidImageReference(s, "expected a repository without tag or digest")
    return ref.repository


def split_domain(name: str) -> tuple[str | None, str]:
    """``(host, path)`` of a repository name by distribution/reference's splitDockerDomain rule:
    the first ``/``-separated component is a registry host when it contains ``.`` or ``:``, is
    ``localhost``, or has an upper-case letter (never valid in a path). ``host`` is None when
    the name has none (Docker Hub)."""
    first, slash, remainder = name.partition("/")
    if slash and (first == _LOCALHOST or ":" in first or "." in first
                  or first.lower() != first):
        return first, remainder
    return None, name


def join_repository(host: str | None, path: str, *, reference: str | None = None) -> str:
    """The normalised ``registry/path`` key for ``host`` (None: Docker Hub) and ``path``.

    Hosts are compared case-insensitively (DNS is), so the key spells them in lower case, and
    Docker Hub's aliases fold to ``docker.io``; a one-component Docker Hub path gets
    ``library/``. Raises InvalidImageReference (naming ``reference``) for anything the runtime
    would refuse.
    """
    registry, path = _split_checked(reference or (f"{host}/{path}" if host else path),
                                    host, path)
    return f"{registry}/{path}"


def _split_name(reference: str, name: str) -> tuple[str, str]:
    """Split ``name`` into normalised (registry, path) like ParseNormalizedNamed."""
    host, path = split_domain(name)
    return _split_checked(reference, host, path)


def _split_checked(reference: str, host: str | None, path: str) -> tuple[str, str]:
    registry = host.lower() if host is not None else DEFAULT_REGISTRY
    if registry in _DOCKER_HUB_ALIASES:
        registry = DEFAULT_REGISTRY
    if registry != DEFAULT_REGISTRY and not _DOMAIN_RE.fullmatch(registry):
        raise InvalidImageReference(reference, f"invalid registry host {host!r}")

    if path.lower() != path:
        raise InvalidImageReference(reference, f"repository name {path!r} must be lowercase")
    for component in path.split("/"):
        if not _PATH_COMPONENT_RE.fullmatch(component):
            raise InvalidImageReference(
                reference, f"invalid repository path component {component!r}"
            )
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    if len(path) > _PATH_MAX:
        raise InvalidImageReference(
            reference, f"repository path longer than {_PATH_MAX} characters"
        )
    return registry, path


def _digest_problem(digest: str) -> str | None:
    """Why ``digest`` is unusable, or None; mirrors go-digest's Validate."""
    if not _DIGEST_SHAPE_RE.fullmatch(digest):
        return f"invalid digest {digest!r}"
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        return f"unsupported digest algorithm {algorithm!r}"
    if len(encoded) != length or encoded.lower() != encoded:
        return f"digest {digest!r} must be {length} lowercase hex characters"
    return None
