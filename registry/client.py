"""The one registry client Headwind polls with: API ping, tag lists and manifest HEADs.

Built on ``requests``. Authentication follows the distribution token spec: a request goes out
anonymously (or with a token/Basic credentials already known to work), a ``401`` names the scheme
in ``WWW-Authenticate``; for ``Bearer`` the realm is asked for a token for the challenged service
and scope (with Basic credentials when we have them, anonymously otherwise, or with the OAuth2
refresh-token grant for an identity token), the token is cached per (registry, scope, credential
identity) until ``expires_in`` (default 60 s) minus a margin, and the request is retried once.
Once a scope's challenge is known, later requests fetch or reuse its token up front and skip the
``401`` round trip.

The polling path only ever sends ``GET /v2/<name>/tags/list`` and ``HEAD
/v2/<name>/manifests/<ref>``; manifests are never fetched (Docker Hub counts manifest GETs as
pulls, HEADs and tag lists it does not).

Transport: ``https`` unless the host is listed in ``HEADWIND_INSECURE_REGISTRIES`` (comma
separated ``host[:port]``) or is a loopback name (``localhost``, ``127.x.x.x``, ``[::1]``), which
default to plain ``http``. ``verify`` takes ``True``/``False`` or a CA bundle path.

Errors are :class:`RegistryError` subclasses carrying ``host`` and ``status``; their messages never
contain credentials or tokens (known secrets are scrubbed from anything the registry echoes).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from operator_app.core.images import is_valid_digest

log = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_ACCEPT",
    "BasicCredentials",
    "Challenge",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryError",
    "RegistryNotFound",
    "RegistryRateLimited",
    "RegistryServerError",
    "TokenCache",
    "api_host",
    "api_repository",
    "credential_identity",
    "default_scheme",
    "insecure_registries",
    "next_link",
    "parse_retry_after",
    "parse_www_authenticate",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# distribution 2.8 answers 404 to an OCI manifest unless an OCI type is acceptable.
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
DEFAULT_TOKEN_SECONDS = 60  # distribution token spec: expires_in defaults to 60 s
TOKEN_MARGIN_SECONDS = 10
DEFAULT_PAGE_SIZE = 1000
FALLBACK_PAGE_SIZE = 100  # Quay refuses n > 100
MAX_PAGES = 1000
USER_AGENT = "headwind-poller/0.1"

Observer = Callable[[str, str], None]  # (kind: ping|tags|head|token, outcome)


# --- errors -----------------------------------------------------------------------------------


class RegistryError(Exception):
    """A registry call failed. ``status`` is the HTTP status, or None when nothing answered."""

    def __init__(self, host: str, status: int | None, message: str) -> None:
        super().__init__(f"{host}: {status if status is not None else 'no answer'}: {message}")
        self.host = host
        self.status = status
        self.message = message


class RegistryAuthError(RegistryError):
    """401/403: missing, wrong or insufficient credentials (or a token the realm refused)."""


class RegistryNotFound(RegistryError):
    """404: the repository or tag does not exist (or is hidden from these credentials)."""


class RegistryRateLimited(RegistryError):
    """429. ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    def __init__(self, host: str, status: int | None, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(host, status, message)
        self.retry_after = retry_after


class RegistryServerError(RegistryError):
    """5xx, or no usable answer at all (connection refused, timeout, TLS failure): transient."""


# --- small parsers (pure) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: lower-cased scheme and its parameters."""

    scheme: str
    params: dict[str, str]

    @property
    def scopes(self) -> list[str]:
        """The challenged scopes: space separated; a scope itself may contain commas."""
        return self.params.get("scope", "").split()


_TOKEN_CHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_AUTH_PARAM = re.compile(
    rf"\s*({_TOKEN_CHARS})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^,\s\"]+))"
)
_SCHEME = re.compile(rf"\s*({_TOKEN_CHARS})(?=\s|,|$)")


def parse_www_authenticate(header: str | None) -> list[Challenge]:
    """Parse RFC 7235 challenges; several may share one header (``Basic …, Bearer …``).

    Quoted values may contain commas, spaces and ``\\``-escapes
    (``scope="repository:a/b:pull,push repository:c:pull"``). Malformed tails are ignored.
    """
    challenges: list[Challenge] = []
    text = header or ""
    position = 0
    current: Challenge | None = None
    while position < len(text):
        if text[position] in ", \t":
            position += 1
            continue
        param = _AUTH_PARAM.match(text, position)
        if param is not None and current is not None:
            value = param.group(2)
            if value is not None:
                value = re.sub(r"\\(.)", r"\1", value)
            else:
                value = param.group(3) or ""
            current.params.setdefault(param.group(1).lower(), value)
            position = param.end()
            continue
        scheme = _SCHEME.match(text, position)
        if scheme is None:
            break
        current = Challenge(scheme.group(1).lower(), {})
        challenges.append(current)
        position = scheme.end()
    return challenges


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")


def next_link(header: str | None, base_url: str) -> str | None:
    """The absolute ``rel="next"`` target of a ``Link`` header (RFC 8288), or None."""
    for match in _LINK.finditer(header or ""):
        target, params = match.group(1), match.group(2)
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').split():
                return urljoin(base_url, target)
    return None


def _ratelimit_remaining(value: str | None) -> int | None:
    """Docker Hub's ``RateLimit-Remaining: 76;w=21600`` → 76."""
    if not value:
        return None
    head = value.split(";", 1)[0].strip()
    return int(head) if head.isdigit() else None


# --- hosts ------------------------------------------------------------------------------------


def insecure_registries() -> frozenset[str]:
    """``HEADWIND_INSECURE_REGISTRIES``: hosts (``host`` or ``host:port``) spoken to over http."""
    from django.conf import settings

    return settings.HEADWIND.insecure_registries


def _hostname(hostport: str) -> str:
    if hostport.startswith("["):
        return hostport[1:].partition("]")[0]
    return hostport.rpartition(":")[0] if hostport.count(":") == 1 else hostport


def _configured_ca() -> str:
    from django.conf import settings

    return settings.HEADWIND.registry_ca_file


def is_loopback(hostport: str) -> bool:
    name = _hostname(hostport.lower())
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_plain_http_allowed(hostport: str) -> bool:
    hostport = hostport.lower()
    insecure = insecure_registries()
    return is_loopback(hostport) or hostport in insecure or _hostname(hostport) in insecure


def default_scheme(host: str) -> str:
    """``http`` for loopback and explicitly insecure registries, ``https`` otherwise."""
    return "http" if _is_plain_http_allowed(host) else "https"


def realm_address_problem(hostname: str, port: int | None) -> str | None:
    """Why a token realm's host must not be contacted, or None.

    The name is resolved and every address checked, so no spelling of a cloud metadata
    address gets through: decimal (``2852039166``), hex (``0xa9fea9fe``), short (``169.254.
    43518``) and octal forms, and IPv4-mapped IPv6 (``[::ffff:169.254.169.254]``) all resolve
    to 169.254.169.254. Link-local (169.254/16, fe80::/10) and unspecified (0.0.0.0, ::)
    addresses are refused. A name could resolve differently a moment later (DNS rebinding):
    see docs/security.md for that limit.
    """
    if not hostname:
        return "token realm has no host"
    try:
        infos = socket.getaddrinfo(hostname, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        return f"token realm host {hostname!r} does not resolve"
    for info in infos:
        try:
            address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        except ValueError:
            return f"token realm host {hostname!r} resolves to an unusable address"
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_link_local or address.is_unspecified or address.is_multicast:
            return f"token realm {hostname!r} resolves to {address}, which is refused"
    return None


def api_host(host: str) -> str:
    """Where a registry's API lives: Docker Hub (``docker.io``) serves from registry-1."""
    return DOCKER_HUB_API if host.lower() in _DOCKER_HUB_ALIASES else host


def api_repository(host: str, repository: str) -> str:
    """Docker Hub official images live under ``library/``."""
    if host.lower() in _DOCKER_HUB_ALIASES and "/" not in repository:
        return f"library/{repository}"
    return repository


# --- credentials and tokens -------------------------------------------------------------------


class CredentialsLike(Protocol):
    username: str
    password: str
    identity_token: str | None


@dataclass(frozen=True, slots=True, repr=False)
class BasicCredentials:
    """Username/password and/or an identity (refresh) token; never shown in a repr."""

    username: str = ""
    password: str = ""
    identity_token: str | None = None

    def __repr__(self) -> str:
        return f"BasicCredentials(username={self.username!r}, password=<redacted>)"

    __str__ = __repr__


def credential_identity(credentials: CredentialsLike | None) -> str:
    """A short opaque id of a credential set (``anonymous`` for none): safe to log and key on."""
    if credentials is None:
        return "anonymous"
    material = "\0".join(
        [credentials.username or "", credentials.password or "", credentials.identity_token or ""]
    )
    if not material.strip("\0"):
        return "anonymous"
    return "cred-" + hashlib.sha256(material.encode()).hexdigest()[:16]


class TokenCache:
    """Bearer tokens by (registry, scope, credential identity), thread-safe, with expiry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str, str], tuple[str, float]] = {}

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if self._clock() >= item[1]:
                del self._items[key]
                return None
            return item[0]

    def put(self, key: tuple[str, str, str], token: str, expires_in: float) -> None:
        margin = min(TOKEN_MARGIN_SECONDS, expires_in / 2)
        with self._lock:
            self._items[key] = (token, self._clock() + expires_in - margin)

    def drop(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._items.pop(key, None)

    def values(self) -> list[str]:
        with self._lock:
            return [token for token, _ in self._items.values()]

    def __len__(self) -> int:
        return len(self._items)


# --- the client -------------------------------------------------------------------------------


def _outcome(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    return {401: "unauthorized", 403: "forbidden", 404: "not_found",
            429: "rate_limited"}.get(status, "server_error" if status >= 500 else "client_error")


class RegistryClient:
    """One registry host with one credential set. Safe to share between threads.

    ``credentials`` is anything with ``username``/``password``/``identity_token`` (for example
    :class:`registry.dockerconfig.Credentials` or :class:`BasicCredentials`) or None for
    anonymous access. ``scheme`` None picks :func:`default_scheme`. ``observer(kind, outcome)``
    is called once per HTTP request (``kind`` ping|tags|head|token), for metrics.
    """

    def __init__(self, host: str, *, credentials: CredentialsLike | None = None,
                 scheme: str | None = None, verify: bool | str = True,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None, token_cache: TokenCache | None = None,
                 observer: Observer | None = None, page_size: int = DEFAULT_PAGE_SIZE,
                 pool_size: int = 10) -> None:
        self.host = host
        self.api_host = api_host(host)
        self.scheme = scheme or default_scheme(self.api_host)
        if self.scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {self.scheme!r}")
        self.base_url = f"{self.scheme}://{self.api_host}"
        self.credentials = credentials
        self.identity = credential_identity(credentials)
        self.timeout = timeout
        self.page_size = page_size
        self.tokens = token_cache if token_cache is not None else TokenCache()
        self.observer = observer
        self.rate_limit_remaining: int | None = None
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(pool_size, 1))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        if verify is True:  # the configured CA bundle (HEADWIND_REGISTRY_CA_FILE), if any
            verify = _configured_ca() or True
        # Passed with every request: requests lets REQUESTS_CA_BUNDLE override session.verify.
        self.verify = verify
        session.headers.setdefault("User-Agent", USER_AGENT)
        self.session = session
        self._lock = threading.Lock()
        self._token_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._challenges: dict[str, Challenge] = {}  # our scope -> the registry's Bearer challenge
        self._basic = False  # the registry asked for Basic once: send it up front from now on

    def __repr__(self) -> str:
        return f"RegistryClient({self.host!r}, identity={self.identity!r})"

    def close(self) -> None:
        self.session.close()

    # -- public API ----------------------------------------------------------------------------

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of ``repository``, following ``Link: <…>; rel="next"`` pages (``n=`` sent).

        Order is the registry's; duplicates across pages are dropped.
        """
        path = api_repository(self.host, repository)
        scope = f"repository:{path}:pull"
        url: str | None = f"{self.base_url}/v2/{path}/tags/list"
        params: dict[str, Any] | None = {"n": self.page_size}
        tags: dict[str, None] = {}
        visited: set[str] = set()
        while url is not None:
            if len(visited) >= MAX_PAGES:
                raise RegistryError(self.host, None,
                                    f"tags/list {path}: more than {MAX_PAGES} pages")
            visited.add(url)
            try:
                response = self._request("GET", url, kind="tags", scope=scope, params=params)
            except RegistryError as exc:
                # Some registries (Quay) refuse large pages: fall back once, remember it.
                if (exc.status == 400 and len(visited) == 1 and params
                        and params["n"] > FALLBACK_PAGE_SIZE):
                    self.page_size = FALLBACK_PAGE_SIZE
                    params = {"n": FALLBACK_PAGE_SIZE}
                    visited.clear()
                    continue
                raise
            try:
                body = response.json()
            except ValueError:
                raise RegistryError(self.host, response.status_code,
                                    f"tags/list {path}: not JSON") from None
            page = body.get("tags") if isinstance(body, dict) else None
            for tag in page or []:
                if isinstance(tag, str):
                    tags.setdefault(tag, None)
            following = next_link(response.headers.get("Link"), response.url or url)
            if following is not None and not self._same_origin(following):
                raise RegistryError(self.host, response.status_code,
                                    f"tags/list {path}: next page on another host; not followed")
            url = following if following not in visited else None
            params = None  # the Link target carries n and last
        return list(tags)

    def head_digest(self, repository: str, reference: str) -> str:
        """The manifest digest of ``reference`` (tag or digest) via ``HEAD``, never a GET."""
        path = api_repository(self.host, repository)
        response = self._request(
            "HEAD", f"{self.base_url}/v2/{path}/manifests/{reference}", kind="head",
            scope=f"repository:{path}:pull", headers={"Accept": MANIFEST_ACCEPT},
        )
        digest = response.headers.get("Docker-Content-Digest", "")
        if not is_valid_digest(digest):
            raise RegistryError(
                self.host, response.status_code,
                f"HEAD {path}:{reference} gave no valid Docker-Content-Digest "
                "(a manifest GET would count as a pull; not attempted)",
            )
        return digest

    def image_created(self, repository: str, reference: str) -> dt.datetime | None:
        """The image config's ``created`` time of ``reference`` (None when it has none).

        Costs a manifest GET (counted as a pull by some registries), a second one for a
        multi-platform index (linux/amd64, else the first), and the config blob: callers ask
        once per digest (registry/release_age.py). A blob redirect is followed once, without
        credentials, only to an HTTPS address that is not private (cloud storage)."""
        path = api_repository(self.host, repository)
        scope = f"repository:{path}:pull"
        manifest = self._json("GET", f"{self.base_url}/v2/{path}/manifests/{reference}",
                              kind="manifest", scope=scope, accept=MANIFEST_ACCEPT)
        entries = manifest.get("manifests")
        if isinstance(entries, list) and entries:
            chosen = next((entry for entry in entries if isinstance(entry, dict) and
                           (entry.get("platform") or {}).get("os") == "linux" and
                           (entry.get("platform") or {}).get("architecture") == "amd64"),
                          entries[0])
            digest = chosen.get("digest") if isinstance(chosen, dict) else None
            if not is_valid_digest(str(digest or "")):
                return None
            manifest = self._json("GET", f"{self.base_url}/v2/{path}/manifests/{digest}",
                                  kind="manifest", scope=scope, accept=MANIFEST_ACCEPT)
        config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
        digest = str(config.get("digest") or "")
        if not is_valid_digest(digest):
            return None
        blob = self._blob_json(path, digest, scope)
        return parse_created(blob.get("created"))

    def _json(self, method: str, url: str, *, kind: str, scope: str, accept: str) -> dict:
        response = self._request(method, url, kind=kind, scope=scope,
                                 headers={"Accept": accept})
        return _small_json(response, self.host, kind)

    def _blob_json(self, path: str, digest: str, scope: str) -> dict:
        url = f"{self.base_url}/v2/{path}/blobs/{digest}"
        try:
            return self._json("GET", url, kind="blob", scope=scope, accept="*/*")
        except RegistryError as exc:
            if exc.status not in (301, 302, 303, 307, 308):
                raise
        # Blob storage elsewhere (S3, a CDN): one hop, public HTTPS only, no credentials.
        response = self._send("GET", url, kind="blob",
                              headers={"Authorization": self._authorization(scope) or ""})
        target = urlsplit(urljoin(url, response.headers.get("Location", "")))
        problem = realm_address_problem(target.hostname or "", target.port) \
            if target.scheme == "https" else "not HTTPS"
        if response.status_code not in (301, 302, 303, 307, 308) or problem:
            raise RegistryError(self.host, response.status_code,
                                f"blob: redirect not followed ({problem or 'no redirect'})")
        try:
            followed = self.session.get(target.geturl(), timeout=self.timeout,
                                        allow_redirects=False, verify=self.verify)
        except requests.RequestException as exc:
            raise RegistryServerError(self.host, None,
                                      f"blob: {_describe_exception(exc)}") from None
        self._raise_for(followed, "blob")
        return _small_json(followed, self.host, "blob")

    # -- requests and auth ---------------------------------------------------------------------

    def _same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}".lower() == self.base_url.lower()

    def _token_key(self, challenge: Challenge) -> tuple[str, str, str]:
        return (self.api_host, " ".join(sorted(challenge.scopes)), self.identity)

    def _authorization(self, scope: str) -> str | None:
        """The header to send up front, from what earlier challenges taught us."""
        challenge = self._challenges.get(scope)
        if challenge is not None:
            token = self.tokens.get(self._token_key(challenge))
            if token is None:
                token = self._fetch_token(challenge)
            return f"Bearer {token}"
        if self._basic and self._has_basic():
            pair = f"{self.credentials.username}:{self.credentials.password}"  # type: ignore
            return "Basic " + base64.b64encode(pair.encode()).decode()
        return None

    def _has_basic(self) -> bool:
        return bool(self.credentials is not None and (self.credentials.username
                                                      or self.credentials.password))

    def _request(self, method: str, url: str, *, kind: str, scope: str,
                 params: dict | None = None, headers: dict | None = None) -> requests.Response:
        response = None
        for attempt in range(2):
            request_headers = dict(headers or {})
            authorization = self._authorization(scope)
            if authorization:
                request_headers["Authorization"] = authorization
            response = self._send(method, url, kind=kind, params=params, headers=request_headers)
            if response.status_code != 401 or attempt == 1:
                break
            challenge = _preferred(parse_www_authenticate(response.headers.get("WWW-Authenticate")))
            if challenge is None:
                break
            if challenge.scheme == "bearer":
                if "realm" not in challenge.params:
                    break
                if authorization and authorization.startswith("Bearer "):
                    # The token we sent was refused (expired early, revoked, wrong scope).
                    stale = self._challenges.get(scope)
                    if stale is not None:
                        self.tokens.drop(self._token_key(stale))
                    self.tokens.drop(self._token_key(challenge))
                self._challenges[scope] = challenge
                self._fetch_token(challenge)
            elif challenge.scheme == "basic":
                if not self._has_basic() or (authorization or "").startswith("Basic "):
                    break  # no credentials, or they were just refused
                self._basic = True
            else:
                break
        assert response is not None
        self._raise_for(response, kind)
        return response

    def _send(self, method: str, url: str, *, kind: str, params=None, headers=None,
              data=None, auth=None) -> requests.Response:
        try:
            response = self.session.request(method, url, params=params, headers=headers,
                                            data=data, auth=auth, timeout=self.timeout,
                                            allow_redirects=False, verify=self.verify)
        except requests.RequestException as exc:
            self._observe(kind, "connection_error")
            raise RegistryServerError(self.host, None,
                                      f"{kind}: {_describe_exception(exc)}") from None
        self._observe(kind, _outcome(response.status_code))
        remaining = _ratelimit_remaining(response.headers.get("RateLimit-Remaining"))
        if remaining is not None:
            self.rate_limit_remaining = remaining
        return response

    def _observe(self, kind: str, outcome: str) -> None:
        if self.observer is not None:
            try:
                self.observer(kind, outcome)
            except Exception:  # noqa: BLE001 - metrics must never break a registry call
                log.exception("registry observer failed")

    def _fetch_token(self, challenge: Challenge) -> str:
        """One token request per key at a time; concurrent callers wait and share it."""
        key = self._token_key(challenge)
        with self._lock:
            key_lock = self._token_locks.setdefault(key, threading.Lock())
        with key_lock:
            cached = self.tokens.get(key)
            if cached is not None:
                return cached
            token, expires_in = self._request_token(challenge)
            self.tokens.put(key, token, expires_in)
            return token

    def _request_token(self, challenge: Challenge) -> tuple[str, float]:
        realm = challenge.params["realm"]
        realm_parts = urlsplit(realm)
        if realm_parts.scheme not in ("http", "https") or not realm_parts.netloc:
            raise RegistryAuthError(self.host, 401, "token realm is not an http(s) URL")
        try:
            realm_port = realm_parts.port
        except ValueError:
            raise RegistryAuthError(self.host, 401, "token realm has an invalid port") from None
        problem = realm_address_problem(realm_parts.hostname or "", realm_port)
        if problem:
            raise RegistryAuthError(self.host, 401, problem)
        has_secret = self.credentials is not None and self.identity != "anonymous"
        if has_secret and realm_parts.scheme == "http" and not (
                self._same_origin(realm) and _is_plain_http_allowed(realm_parts.netloc)):
            # Credentials go to another host (another port is another host) only over HTTPS;
            # plain http only to the registry itself, when it is loopback or listed insecure.
            raise RegistryAuthError(
                self.host, 401,
                f"refusing to send credentials over plain http to token realm "
                f"{realm_parts.netloc}",
            )
        service = challenge.params.get("service")
        scopes = challenge.scopes
        response = None
        token_secret = self.credentials.identity_token if self.credentials else None
        if token_secret:
            form = {"grant_type": "refresh_token", "refresh_token": token_secret,
                    "client_id": "headwind", "service": service or "", "scope": " ".join(scopes)}
            response = self._send("POST", realm, kind="token", data=form)
            if response.status_code in (404, 405) and self._has_basic():
                response = None  # realm without OAuth2 support: fall back to Basic
        if response is None:
            params: list[tuple[str, str]] = []
            if service:
                params.append(("service", service))
            params += [("scope", scope) for scope in scopes]
            auth = None
            if self._has_basic():
                auth = (self.credentials.username, self.credentials.password)  # type: ignore
            response = self._send("GET", realm, kind="token", params=params, auth=auth)
        if response.status_code in (401, 403):
            raise RegistryAuthError(self.host, response.status_code,
                                    "the token service refused these credentials")
        self._raise_for(response, "token")
        try:
            body = response.json()
        except ValueError:
            raise RegistryAuthError(self.host, response.status_code,
                                    "token service answered without JSON") from None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(self.host, response.status_code,
                                    "token service answered without a token")
        try:
            expires_in = float(body.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (TypeError, ValueError):
            expires_in = DEFAULT_TOKEN_SECONDS
        return token, max(expires_in, 1.0)

    def _raise_for(self, response: requests.Response, kind: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            # Never followed: a registry (or anyone who controls one a workload names) must not
            # steer Headwind to other hosts, such as a cloud metadata endpoint.
            target = urlsplit(response.headers.get("Location", ""))
            raise RegistryError(self.host, status,
                                f"{kind}: redirect to {target.netloc or 'elsewhere'} not followed")
        message = self._scrub(f"{kind}: {_error_text(response)}")
        if status in (401, 403):
            raise RegistryAuthError(self.host, status, message)
        if status == 404:
            raise RegistryNotFound(self.host, status, message)
        if status == 429:
            raise RegistryRateLimited(self.host, status, message,
                                      parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            raise RegistryServerError(self.host, status, message)
        raise RegistryError(self.host, status, message)

    def _scrub(self, text: str) -> str:
        """Defence in depth: nothing a registry echoes back may carry our secrets."""
        secrets = []
        if self.credentials is not None:
            secrets += [self.credentials.password, self.credentials.identity_token]
        secrets += self.tokens.values()
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "<redacted>")
        return text


#: A manifest or image config larger than this is not read (they are a few KiB).
MAX_JSON_BYTES = 4 * 1024 * 1024


def _small_json(response: requests.Response, host: str, kind: str) -> dict:
    if len(response.content) > MAX_JSON_BYTES:
        raise RegistryError(host, response.status_code, f"{kind}: larger than {MAX_JSON_BYTES}")
    try:
        body = response.json()
    except ValueError:
        raise RegistryError(host, response.status_code, f"{kind}: not JSON") from None
    if not isinstance(body, dict):
        raise RegistryError(host, response.status_code, f"{kind}: not a JSON object")
    return body


def parse_created(text: object) -> dt.datetime | None:
    """An image config's ``created`` (RFC 3339, often with nanoseconds) as an aware time."""
    if not isinstance(text, str) or not text:
        return None
    value = text.strip().replace("Z", "+00:00")
    match = re.match(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$", value)
    if match:  # Python reads at most six fraction digits
        fraction = (match.group(2) or "")[:7]
        value = f"{match.group(1)}{fraction}{match.group(3)}"
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _preferred(challenges: list[Challenge]) -> Challenge | None:
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return challenges[0] if challenges else None


def _error_text(response: requests.Response) -> str:
    """``CODE: message`` from a distribution error body, else the reason phrase; short."""
    text = f"{response.status_code} {response.reason or ''}".strip()
    if response.request is not None and response.request.method == "HEAD":
        return text
    try:
        body = response.json()
    except ValueError:
        return text
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = str(errors[0].get("code") or "")
        detail = str(errors[0].get("message") or "")
        text = f"{text} {code}: {detail}".strip()
    return text[:300]


def _describe_exception(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__
