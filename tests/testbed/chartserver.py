"""The testbed's Helm chart repository server: static files over HTTP, as a CDN serves them.

Run as ``python -m tests.testbed.chartserver --port P --root DIR --user U --password-file F``.
Every directory under ``DIR`` that holds an ``index.yaml`` is a Helm repository (the files are
written by ``helm repo index``; see :mod:`tests.testbed.charts`). The server behaves like a
real chart repository behind a CDN, so that a client's caching is tested for real:

- ``ETag`` (strong: a hash of the file's bytes; the gzip-encoded representation gets the same
  hash with ``-gzip`` appended, as Apache does, since a strong validator must differ between
  content codings) and ``Last-Modified`` (the file's mtime) on every file; ``If-None-Match``
  naming either tag, or failing that an ``If-Modified-Since`` not older than the mtime, is
  answered ``304 Not Modified`` with no body;
- ``Content-Encoding: gzip`` when the client accepts gzip, for text types only (``index.yaml``,
  JSON); chart archives are already gzip and go out as they are; ``Vary: Accept-Encoding``;
- ``/public/...`` is open to anyone, ``/private/...`` needs HTTP Basic credentials (``401``
  with a ``WWW-Authenticate: Basic`` challenge otherwise); no directory listings;
- ``GET /_stats`` returns JSON counts per path: ``{"paths": {"/public/x/index.yaml":
  {"requests": 2, "200": 1, "304": 1}}, "requests": 2}``; ``DELETE /_stats`` resets them.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import gzip
import hashlib
import hmac
import json
import os
import sys
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

REALM = "headwind-testbed-charts"
PUBLIC, PRIVATE = "public", "private"
CONTENT_TYPES = {
    ".yaml": "application/x-yaml", ".yml": "application/x-yaml", ".json": "application/json",
    ".tgz": "application/gzip", ".gz": "application/gzip", ".prov": "application/pgp-signature",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = {".yaml", ".yml", ".json", ".txt", ".prov"}


def accepts_gzip(header: str) -> bool:
    """``Accept-Encoding`` names gzip (or ``*``) with a non-zero quality."""
    for item in header.split(","):
        token, _, params = item.strip().partition(";")
        if token.strip().lower() not in {"gzip", "x-gzip", "*"}:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


def entity_tags(header: str) -> set[str]:
    """The opaque tags of an ``If-None-Match`` list (weak comparison: ``W/`` is dropped)."""
    tags = set()
    for item in header.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        if item:
            tags.add(item)
    return tags


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: dict[str, Counter] = defaultdict(Counter)

    def count(self, path: str, status: int) -> None:
        with self._lock:
            self._paths[path]["requests"] += 1
            self._paths[path][str(status)] += 1

    def snapshot(self) -> dict:
        with self._lock:
            paths = {path: dict(counts) for path, counts in sorted(self._paths.items())}
        return {"paths": paths, "requests": sum(c["requests"] for c in paths.values())}

    def reset(self) -> None:
        with self._lock:
            self._paths.clear()


def make_handler(root: Path, user: str, password: str, stats: Stats):
    root = root.resolve()
    expected = f"{user}:{password}".encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as helm's and Python's clients expect
        server_version = "headwind-testbed-charts/1"

        def log_message(self, fmt, *args):  # one line per request in the component's log
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")
            sys.stderr.flush()

        # -- helpers ---------------------------------------------------------------------

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
                  path: str | None = None) -> None:
            if path is not None:
                stats.count(path, status)
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, path: str, extra: dict | None = None) -> None:
            body = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
            self._send(status, body, {"Content-Type": "text/plain; charset=utf-8",
                                      **(extra or {})}, path)

        def _authorized(self) -> bool:
            header = self.headers.get("Authorization", "")
            scheme, _, encoded = header.partition(" ")
            if scheme.lower() != "basic":
                return False
            try:
                given = base64.b64decode(encoded.strip(), validate=True)
            except ValueError:
                return False
            return hmac.compare_digest(given, expected)

        # -- verbs -----------------------------------------------------------------------

        def do_GET(self):  # noqa: N802 - http.server's naming
            path = unquote(urlsplit(self.path).path)
            if path == "/_stats":
                body = json.dumps(stats.snapshot(), indent=1).encode()
                self._send(200, body, {"Content-Type": "application/json",
                                       "Cache-Control": "no-store"})
                return
            self._serve(path)

        def do_HEAD(self):  # noqa: N802
            self._serve(unquote(urlsplit(self.path).path))

        def do_DELETE(self):  # noqa: N802
            if urlsplit(self.path).path == "/_stats":
                stats.reset()
                self._send(204)
            else:
                self._send(405, b"", {"Allow": "GET, HEAD"})

        def _serve(self, path: str) -> None:
            parts = [part for part in path.split("/") if part]
            if not parts or parts[0] not in {PUBLIC, PRIVATE} or any(
                    part in {".", ".."} or part.startswith(".") for part in parts):
                self._error(404, path)
                return
            if parts[0] == PRIVATE and not self._authorized():
                self._error(401, path, {"WWW-Authenticate": f'Basic realm="{REALM}"'})
                return
            file = root.joinpath(*parts)
            try:
                with open(file, "rb") as handle:  # a directory raises IsADirectoryError
                    info = os.fstat(handle.fileno())
                    data = handle.read()
            except OSError:
                self._error(404, path)
                return
            suffix = file.suffix.lower()
            digest = hashlib.sha256(data).hexdigest()[:32]
            identity_tag, gzip_tag = f'"{digest}"', f'"{digest}-gzip"'
            encode = suffix in COMPRESSIBLE and accepts_gzip(
                self.headers.get("Accept-Encoding", ""))
            headers = {
                "ETag": gzip_tag if encode else identity_tag,
                "Last-Modified": email.utils.formatdate(info.st_mtime, usegmt=True),
                "Cache-Control": "no-cache",  # a cache may keep it but must revalidate
                "Vary": "Accept-Encoding",
            }
            if self._not_modified({identity_tag, gzip_tag}, int(info.st_mtime)):
                self._send(304, b"", headers, path)
                return
            headers["Content-Type"] = CONTENT_TYPES.get(suffix, "application/octet-stream")
            if encode:
                data = gzip.compress(data, mtime=0)
                headers["Content-Encoding"] = "gzip"
            self._send(200, data, headers, path)

        def _not_modified(self, tags: set[str], mtime: int) -> bool:
            """RFC 9110 13.2.2: If-None-Match decides when present; else If-Modified-Since."""
            if_none_match = self.headers.get("If-None-Match")
            if if_none_match is not None:
                wanted = entity_tags(if_none_match)
                return "*" in wanted or bool(wanted & tags)
            since = self.headers.get("If-Modified-Since")
            if since:
                try:
                    when = email.utils.parsedate_to_datetime(since)
                except (TypeError, ValueError):
                    return False
                return when is not None and mtime <= int(when.timestamp())
            return False

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    args = parser.parse_args()
    password = args.password_file.read_text().strip()
    for area in (PUBLIC, PRIVATE):
        (args.root / area).mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", args.port),
                                 make_handler(args.root, args.user, password, Stats()))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
