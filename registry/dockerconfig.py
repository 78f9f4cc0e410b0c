"""imagePullSecret parsing and credential lookup for an image, the way the kubelet does it.

Pure code (stdlib only). Two steps:

1. :func:`parse_docker_config` turns one Secret's data into :class:`CredentialEntry` objects.
   It takes the **decoded** Secret data: ``Secret.data`` values are base64 in the API (and in
   the ``kubernetes`` client's ``V1Secret.data``), so decode them first, for example with
   :func:`decode_secret_data`. ``stringData``-style plain text (``str``) is accepted as is.
2. :func:`match_credentials` picks the entries that apply to an image repository, most
   specific first, following the kubelet's rules ("Interpretation of config.json" in the
   Kubernetes image docs; ``pkg/credentialprovider/keyring.go``):

   * a key may carry a scheme and a ``/v1/`` or ``/v2/`` API prefix, which are dropped, as is
     a trailing ``/``;
   * Docker Hub keys (``https://index.docker.io/v1/``, ``index.docker.io``, ``docker.io``,
     ``registry-1.docker.io``) apply to ``docker.io/…`` images, including bare ``nginx``;
   * host labels may be globs, one label per label: ``*.example.com`` matches
     ``a.example.com`` but neither ``example.com`` nor ``a.b.example.com``;
   * the port must match exactly (``reg.io`` does not apply to ``reg.io:5000``);
   * a key with a path applies to repositories under that path, on whole components
     (``reg.io/team`` applies to ``reg.io/team/app``, not to ``reg.io/teamx``; the kubelet
     uses a plain string prefix here);
   * every matching entry is returned, most specific first, so callers can try each in turn.

Nothing here ever puts a password, identity token or ``auth`` value into a ``repr``, ``str``
or exception message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"
_DATA_KEYS = {DOCKERCONFIGJSON: ".dockerconfigjson", DOCKERCFG: ".dockercfg"}

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_PATTERN_HOST = re.compile(r"(?:[a-z0-9*?\[\]!^_.-]+|\[[0-9a-f:.]+\])(?::[0-9]+)?")
_GLOB_CHARS = frozenset("*?[")


class DockerConfigError(ValueError):
    """The Secret's docker config is unusable. The message never contains credentials."""


def _redacted(value: str) -> str:
    return "'<redacted>'" if value else "''"


@dataclass(frozen=True, slots=True, repr=False)
class CredentialEntry:
    """One ``auths`` entry. ``pattern`` is the normalised key (``reg.io:5000/team``,
    ``*.example.com``, ``docker.io``)."""

    pattern: str
    username: str
    password: str
    identity_token: str | None = None

    def __repr__(self) -> str:
        token = None if self.identity_token is None else "'<redacted>'"
        return (
            f"CredentialEntry(pattern={self.pattern!r}, username={self.username!r}, "
            f"password={_redacted(self.password)}, identity_token={token})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """Credentials to try for one image, with the config key (``pattern``) that matched."""

    username: str
    password: str
    identity_token: str | None
    pattern: str

    def __repr__(self) -> str:
        token = None if self.identity_token is None else "'<redacted>'"
        return (
            f"Credentials(pattern={self.pattern!r}, username={self.username!r}, "
            f"password={_redacted(self.password)}, identity_token={token})"
        )

    __str__ = __repr__


# --- parsing ----------------------------------------------------------------------------------


def decode_secret_data(data: Mapping[str, str]) -> dict[str, bytes]:
    """Base64-decode ``Secret.data`` values as the API returns them."""
    decoded = {}
    for key, value in data.items():
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise DockerConfigError(f"secret data {_key(key)} is not valid base64") from None
    return decoded


def _key(key: object) -> str:
    """A registry key for a message: userinfo dropped, truncated."""
    if not isinstance(key, str):
        return type(key).__name__
    text = key.rpartition("@")[2]
    return ascii(text if len(text) <= 80 else text[:80] + "…")


def _load(raw: bytes | str, name: str) -> Any:
    if isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
    if not isinstance(raw, bytes | str):
        raise DockerConfigError(f"{name} must be bytes or str")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:  # msg/position only: never the document itself
        raise DockerConfigError(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError):
        raise DockerConfigError(f"{name} is not valid JSON") from None


def _field(entry: Mapping[str, Any], name: str, key: str) -> str | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DockerConfigError(f"entry {_key(key)}: {name!r} must be a string")
    return value


def _decode_auth(auth: str, key: str) -> tuple[str, str]:
    text = auth.strip()
    text += "=" * (-len(text) % 4)
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise DockerConfigError(f"entry {_key(key)}: 'auth' is not base64 of UTF-8 text") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise DockerConfigError(f"entry {_key(key)}: 'auth' must encode username:password")
    return username, password


def normalise_pattern(key: str) -> str | None:
    """A config key in matching form (``https://Reg.io/v2/team/`` -> ``reg.io/team``), or None
    when the key cannot name a registry (such keys are skipped, as the kubelet skips them)."""
    value = key
    for scheme in ("https://", "http://"):
        if value.lower().startswith(scheme):
            value = value[len(scheme) :]
            break
    for stop in "?#":
        value = value.partition(stop)[0]
    host, slash, path = value.partition("/")
    path = "/" + path if slash else ""
    if path.startswith(("/v1/", "/v2/")) or path in ("/v1", "/v2"):
        path = path[3:]
    path = path.strip("/").lower()
    host = host.lower()
    if not host.isascii() or not path.isascii() or not _PATTERN_HOST.fullmatch(host):
        return None
    if host in _DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    if any(not component for component in path.split("/")) and path:
        return None
    return f"{host}/{path}" if path else host


def parse_docker_config(secret_type: str, data: Mapping[str, bytes | str]) -> list[CredentialEntry]:
    """Entries of a ``kubernetes.io/dockerconfigjson`` (``.dockerconfigjson``, entries under
    ``auths``) or ``kubernetes.io/dockercfg`` (``.dockercfg``, the bare map) Secret.

    ``data`` holds the decoded Secret data (see the module docstring). Per entry, ``auth``
    (base64 of ``username:password``) wins when present, as in kubelet; otherwise ``username``
    and ``password`` are used; ``identitytoken`` is kept as
    ``identity_token``; ``email`` is ignored. Keys that cannot name a registry are skipped.
    """
    data_key = _DATA_KEYS.get(secret_type)
    if data_key is None:
        raise DockerConfigError(f"unsupported secret type {_key(secret_type)}")
    if data_key not in data:
        raise DockerConfigError(f"{secret_type} secret has no {data_key} key")
    document = _load(data[data_key], data_key)
    if not isinstance(document, dict):
        raise DockerConfigError(f"{data_key} must be a JSON object")
    if secret_type == DOCKERCONFIGJSON:
        auths = document.get("auths")
        if not isinstance(auths, dict):
            raise DockerConfigError(
                f"{data_key} has no 'auths' object"
                + (" (is it a .dockercfg map?)" if auths is None else "")
            )
    else:
        auths = document

    entries = []
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise DockerConfigError(f"entry {_key(key)} must be a JSON object")
        username = _field(entry, "username", key) or ""
        password = _field(entry, "password", key) or ""
        auth = _field(entry, "auth", key)
        token = _field(entry, "identitytoken", key) or None
        if auth:  # kubelet decodes ``auth`` last, so it wins over username/password
            username, password = _decode_auth(auth, key)
        pattern = normalise_pattern(key)
        if pattern is not None:
            entries.append(CredentialEntry(pattern, username, password, token))
    return entries


# --- matching ---------------------------------------------------------------------------------


def _split_host_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    host, _, port = hostport.partition(":")
    return host, port


def _image_parts(image: str) -> tuple[str, str, list[str]]:
    """``(host, port, path components)`` of an image repository, docker-normalised."""
    name = image.partition("@")[0]
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name = name[:colon]
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first.lower() == "localhost"):
        hostport, path = first.lower(), rest
    else:
        hostport, path = DOCKER_HUB, name
    if hostport in _DOCKER_HUB_ALIASES:
        hostport = DOCKER_HUB
    components = path.lower().split("/")
    if hostport == DOCKER_HUB and len(components) == 1:
        components.insert(0, "library")
    host, port = _split_host_port(hostport)
    return host, port, components


def _label_matches(pattern: str, label: str) -> bool:
    if _GLOB_CHARS.isdisjoint(pattern):
        return pattern == label
    return fnmatchcase(label, pattern)


def _specificity(pattern: str, host: str, port: str, path: list[str]) -> tuple[int, bool] | None:
    """None if ``pattern`` does not apply, else a sort key (path depth, host is a glob)."""
    pattern_hostport, _, pattern_path = pattern.lower().partition("/")
    pattern_host, pattern_port = _split_host_port(pattern_hostport)
    if pattern_port != port:
        return None
    pattern_labels = pattern_host.split(".")
    labels = host.split(".")
    if len(pattern_labels) != len(labels):
        return None
    if not all(_label_matches(p, t) for p, t in zip(pattern_labels, labels, strict=True)):
        return None
    prefix = pattern_path.split("/") if pattern_path else []
    if path[: len(prefix)] != prefix:
        return None
    return len(prefix), not _GLOB_CHARS.isdisjoint(pattern_host)


def match_credentials(
    entries: Iterable[CredentialEntry], image_repository: str
) -> list[Credentials]:
    """Every entry that applies to ``image_repository`` (``reg.io:5000/team/app``, ``nginx``;
    a tag or digest is ignored), most specific first: deeper key paths before shallower ones,
    exact hosts before glob hosts, then in the order given (pass the workload's pull secrets
    in their spec order). Identical credentials are returned once."""
    host, port, path = _image_parts(image_repository)
    ranked = []
    for index, entry in enumerate(entries):
        specificity = _specificity(entry.pattern, host, port, path)
        if specificity is not None:
            depth, is_glob = specificity
            ranked.append(((-depth, is_glob, index), entry))
    ranked.sort(key=lambda pair: pair[0])
    seen: set[tuple[str, str, str | None]] = set()
    found = []
    for _, entry in ranked:
        identity = (entry.username, entry.password, entry.identity_token)
        if identity not in seen:
            seen.add(identity)
            found.append(
                Credentials(entry.username, entry.password, entry.identity_token, entry.pattern)
            )
    return found
