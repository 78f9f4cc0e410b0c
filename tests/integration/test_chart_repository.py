"""The HTTP(S) chart repository client (registry/charts.py) against small local servers.

Everything goes over real HTTP to servers in this module on 127.0.0.1 (TLS ones with
certificates made here); nothing in requests is mocked. The parsers are also checked on their
own: the line scanner against libyaml's event parser on hand-written oddities and on
Hypothesis-generated indexes dumped in many styles.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import os
import ssl
import stat
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.helm_index import generate_index
from registry.charts import (
    ChartIndexError,
    ChartRepositoryClient,
    ChartVersion,
    NotModified,
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RegistryRateLimited,
    RegistryServerError,
    parse_index,
)

PASSWORD = "s3cr3t-Pa55word"
TIMEOUT = (2.0, 10.0)


# --- a small HTTP server ----------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    length: int | None = None  # a Content-Length that lies (then the connection is closed)


Route = Callable[[BaseHTTPRequestHandler], Reply]


class Site:
    """A threaded HTTP(S) server on 127.0.0.1 answering from ``routes`` (path → callable)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []  # (path, lower-cased headers)
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                site.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = site.routes.get(path)
                reply = route(self) if route else Reply(404, b"no such page")
                self.send_response(reply.status, reply.reason)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(reply.length or len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                if reply.length:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def url(self, path: str = "", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [path for path, _ in self.seen]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site():
    server = Site()
    yield server
    server.close()


@pytest.fixture
def other_site():
    server = Site()
    yield server
    server.close()


def serve_index(body: bytes, *, etag: str | None = None, last_modified: str | None = None,
                gzip_ok: bool = True) -> Route:
    """An index.yaml route with conditional GET (ETag and/or Last-Modified) and gzip."""

    def route(request: BaseHTTPRequestHandler) -> Reply:
        headers: dict[str, str] = {"Content-Type": "application/x-yaml"}
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = last_modified
        if (etag and request.headers.get("If-None-Match") == etag) or (
                not etag and last_modified
                and request.headers.get("If-Modified-Since") == last_modified):
            return Reply(304, b"", headers)
        if gzip_ok and "gzip" in (request.headers.get("Accept-Encoding") or ""):
            headers["Content-Encoding"] = "gzip"
            return Reply(200, gzip.compress(body), headers)
        return Reply(200, body, headers)

    return route


def requires_basic(route: Route, username: str = "robot", password: str = PASSWORD) -> Route:
    import base64

    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def guarded(request: BaseHTTPRequestHandler) -> Reply:
        if request.headers.get("Authorization") != expected:
            return Reply(401, b"", {"WWW-Authenticate": 'Basic realm="charts"'})
        return route(request)

    return guarded


def redirect(location: str, status: int = 302) -> Route:
    return lambda request: Reply(status, b"", {"Location": location})


class Calls:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, kind: str, outcome: str) -> None:
        self.calls.append((kind, outcome))


INDEX = textwrap.dedent('''\
    apiVersion: v1
    entries:
      podinfo:
      - annotations:
          artifacthub.io/changes: |
            - kind: added
              description: bump
            version: 9.9.9
          category: Demo
        apiVersion: v2
        appVersion: 6.5.0
        created: "2024-01-02T03:04:05.123456789Z"
        dependencies:
        - name: redis
          repository: oci://registry.example.com/charts
          version: 18.x.x
        description: 'podinfo: a long single-quoted description that goes on
          and on
        version: 6.6.6'
        digest: 8f7a3c
        name: podinfo
        urls:
        - https://charts.example.com/podinfo-6.5.0.tgz
        version: "6.5.0"
      - created: 2023-12-01T10:00:00+02:00
        description: >-
          folded text
          version: 7.7.7
        digest: 1e2b
        version: 6.4.1
      - created: "2023-11-01T09:00:00Z"
        description: A plain description that continues on the next line
          "with a quote that never closes
        maintainers:
        - name: "Jane: Doe"
          email: jane@example.com
        version: 6.4.0
      - version: 6.3.0
        digest: 3c3c
        annotations:
          version: 9.9.9
          digest: nested
        dependencies:
        - name: x
          version: 9.9.8
          created: "2000-01-01T00:00:00Z"
        - version: 9.9.7
        created: "2023-10-01T00:00:00Z"
      unrelated:
      - version: 1.0.0
        created: "2024-01-01T00:00:00Z"
    generated: "2024-05-06T07:08:09.123456789Z"
    ''').encode()

PODINFO = [
    ChartVersion("6.5.0", dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC), "8f7a3c"),
    ChartVersion("6.4.1", dt.datetime(2023, 12, 1, 8, 0, tzinfo=dt.UTC), "1e2b"),
    ChartVersion("6.4.0", dt.datetime(2023, 11, 1, 9, 0, tzinfo=dt.UTC), None),
    ChartVersion("6.3.0", dt.datetime(2023, 10, 1, tzinfo=dt.UTC), "3c3c"),  # keys unsorted
]


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


# --- the parsers on their own -----------------------------------------------------------------


@pytest.mark.parametrize("parser", ["scan", "events"])
def test_index_fields_quoted_multiline_nested_and_unknown_charts(parser):
    result = parse_index(INDEX, ["podinfo", "missing"], parser=parser)
    assert result.api_version == "v1"
    assert list(result.versions) == ["podinfo"]  # unrequested skipped; missing is absent
    assert result.versions["podinfo"] == PODINFO
    assert result.parser == parser
    assert result.versions["podinfo"][1].created.utcoffset() == dt.timedelta(hours=2)
    everything = parse_index(INDEX, parser=parser)
    assert set(everything.versions) == {"podinfo", "unrelated"}


ODDITIES = {
    "indented sequences, comments, CRLF-free oddities": '''\
        # a comment before everything
        ---
        apiVersion: v1
        entries:
            app:
                -   version: 1.0.0   # trailing comment
                    digest: 'it''s'
                    description: |2
                          version: 3.0.0
                # a comment at the item column
                -   version: "2.0.0"
                    created: 2024-02-03 04:05:06
        ''',
    "a double-quoted scalar continued less indented than its key": '''\
        apiVersion: v1
        entries:
          app:
          - description: "a description that continues
          version: 6.6.6 on a line that looks like a key"
            version: 1.0.0
        ''',
    "a single-quoted scalar with escaped quotes over lines": '''\
        apiVersion: v1
        entries:
          app:
          - description: 'don''t
            version: 6.6.6 '' still quoted'
            version: 1.0.0
          - version: 0.9.0
        ''',
    "escapes in double quotes and quoted chart names": '''\
        apiVersion: v1
        entries:
          "true":
          - version: "1.0\\x2e0"
            digest: "sha\\u0032"
          'app''s':
          - version: '1.0'
        ''',
    "null and empty charts, versionless entries": '''\
        apiVersion: v1
        entries:
          none:
          empty: []
          app:
          - digest: orphan
          - version: ~
          - version: "null"
          - version: 1.0.0
        ''',
    "nested version keys in flow and block collections": '''\
        apiVersion: v1
        entries:
          app:
          - dependencies: [{name: x, version: 9.9.9}]
            annotations: {version: 8.8.8, other: "x"}
            keywords:
            - version: 7.7.7
            - "version: 6.6.6"
            version: 1.0.0
        ''',
    "anchors, aliases and merge keys (the event parser's job)": '''\
        apiVersion: v1
        entries:
          app:
          - &base
            version: 1.0.0
            digest: base-digest
            created: "2024-01-01T00:00:00Z"
          - <<: *base
            version: 2.0.0
          - version: &v 3.0.0
          other: &list
          - version: *v
          copy: *list
        ''',
    "a version continued on the next line (plain)": '''\
        apiVersion: v1
        entries:
          app:
          - version: 1.0.0
              continued
        ''',
    "a tab-indented line, several documents": '''\
        apiVersion: v1
        entries:
          app:
          - version: 1.0.0
        ---
        apiVersion: v1
        entries: {}
        ''',
}


@pytest.mark.parametrize("name", list(ODDITIES))
def test_scanner_agrees_with_libyaml_or_hands_over(name):
    data = textwrap.dedent(ODDITIES[name]).encode()
    exact = parse_index(data, parser="events")
    auto = parse_index(data)
    assert auto.versions == exact.versions and auto.skipped == exact.skipped
    try:
        scanned = parse_index(data, parser="scan")
    except ValueError:
        assert auto.parser == "events"
    else:
        assert scanned.versions == exact.versions and scanned.skipped == exact.skipped
        assert auto.parser == "scan"


def test_oddities_read_as_helm_would():
    def read(name):
        return parse_index(textwrap.dedent(ODDITIES[name]).encode()).versions

    first = read("indented sequences, comments, CRLF-free oddities")["app"]
    assert [(v.version, v.digest) for v in first] == [("1.0.0", "it's"), ("2.0.0", None)]
    assert first[1].created == dt.datetime(2024, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    for name in ("a double-quoted scalar continued less indented than its key",
                 "a single-quoted scalar with escaped quotes over lines",
                 "nested version keys in flow and block collections"):
        assert read(name)["app"][0].version == "1.0.0", name
    escaped = read("escapes in double quotes and quoted chart names")
    assert escaped["true"] == [ChartVersion("1.0.0", None, "sha2")]
    assert escaped["app's"][0].version == "1.0"  # written "1.0": a string, never the float 1.0
    nulls = parse_index(textwrap.dedent(
        ODDITIES["null and empty charts, versionless entries"]).encode())
    assert nulls.versions == {"none": [], "empty": [],
                              "app": [ChartVersion("null", None, None),
                                      ChartVersion("1.0.0", None, None)]}
    assert nulls.skipped == 2
    merged = read("anchors, aliases and merge keys (the event parser's job)")
    created = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert merged["app"] == [ChartVersion("1.0.0", created, "base-digest"),
                             ChartVersion("2.0.0", created, "base-digest"),
                             ChartVersion("3.0.0", None, None)]
    assert merged["other"] == merged["copy"] == [ChartVersion("3.0.0", None, None)]
    assert read("a version continued on the next line (plain)")["app"][0].version == (
        "1.0.0 continued")


def test_whitespace_lines_with_tabs_in_a_block_scalar():
    def index(blank: bytes) -> bytes:
        return (b"apiVersion: v1\nentries:\n  app:\n  - description: |\n      text\n" + blank +
                b'\n      "an unclosed quote\n    version: 1.0.0\n    digest: d\n')

    deep = index(b"        \t")  # content: libyaml keeps it, the scanner skips it
    assert parse_index(deep, parser="scan").versions == parse_index(
        deep, parser="events").versions == {"app": [ChartVersion("1.0.0", None, "d")]}
    shallow = index(b"  \t")  # a tab where indentation is expected: libyaml refuses
    with pytest.raises(ValueError, match="cannot read"):
        parse_index(shallow, parser="scan")
    with pytest.raises(ValueError, match="tab"):
        parse_index(shallow)


def test_crlf_bom_and_scanner_does_not_hand_over_needlessly():
    data = "\ufeffapiVersion: v1\r\nentries:\r\n  app:\r\n  - version: 1.0.0\r\n".encode()
    result = parse_index(data)
    assert result.parser == "scan"
    assert result.versions == {"app": [ChartVersion("1.0.0", None, None)]}


@pytest.mark.parametrize("body, problem", [
    (b"<!DOCTYPE html>\n<html><body>Sign in</body></html>\n", "scalar"),
    (b"- a\n- b\n", "not a mapping"),
    (b"entries:\n  app:\n  - version: 1.0.0\n", "no apiVersion"),
    (b"apiVersion: v1\nentries: [1, 2]\n", "entries is not a mapping"),
    (b"apiVersion: v1\nentries:\n  app: {version: 1}\n", "not a list"),
    (b"apiVersion: v1\nentries:\n  app:\n  - version: [1\n", "not valid YAML"),
    (b"", "empty"),
])
def test_malformed_indexes_are_refused_by_both_paths(body, problem):
    with pytest.raises(ValueError, match=problem):
        parse_index(body)


# Random indexes, dumped by PyYAML in many styles: wherever the scanner answers, it answers
# what libyaml reads; the event parser reads back what was written.
_TEXT = st.text(alphabet=st.sampled_from(list("ab1.:- #'\"\n|>&*!{}[],?%@`\\xyz\t")),
                max_size=30)
_ENTRY = st.fixed_dictionaries(
    {"version": st.one_of(_TEXT, st.sampled_from(["1.0.0", "1.0", "null", "~", "", "0x1f"]))},
    optional={
        "created": st.sampled_from(["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.5+01:00"]),
        "digest": _TEXT,
        "description": _TEXT,
        "annotations": st.dictionaries(st.sampled_from(["version", "digest", "a: b", "k"]),
                                       _TEXT, max_size=3),
        "dependencies": st.lists(st.fixed_dictionaries({"name": _TEXT, "version": _TEXT}),
                                 max_size=2),
        "keywords": st.lists(_TEXT, max_size=3),
    })
_INDEX = st.fixed_dictionaries({
    "apiVersion": st.just("v1"),
    "entries": st.dictionaries(st.sampled_from(["app", "version", "b: c", "x y", "-z", "'q'"]),
                               st.lists(_ENTRY, max_size=4), max_size=4),
    "generated": _TEXT,
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=_INDEX, width=st.sampled_from([12, 40, 80, 1000]),
       indent=st.sampled_from([2, 4]), style=st.sampled_from([None, None, "'", '"']),
       unicode=st.booleans(), sort=st.booleans(),
       wanted=st.sampled_from([None, ["app"], ["version", "x y"]]))
def test_scanner_matches_libyaml_on_generated_indexes(index, width, indent, style, unicode,
                                                      sort, wanted):
    data = yaml.dump(index, width=width, indent=indent, default_style=style,
                     allow_unicode=unicode, default_flow_style=False, sort_keys=sort).encode()
    exact = parse_index(data, wanted, parser="events")
    # What libyaml reads back, not ``index`` itself: PyYAML's emitter does not always round-trip
    # (a multi-line double-quoted scalar with an escaped space, dumped at width 12, comes back
    # with a backslash in it), and the parsers are judged on the text they are given.
    loaded = yaml.load(data, Loader=yaml.CSafeLoader)
    expected = {
        name: [ChartVersion(e["version"],
                            dt.datetime.fromisoformat(e["created"]) if "created" in e else None,
                            e.get("digest"))
               for e in entries if e["version"]]
        for name, entries in loaded["entries"].items() if wanted is None or name in wanted}
    assert exact.versions == expected
    try:
        scanned = parse_index(data, wanted, parser="scan")
    except ValueError:
        return  # outside the subset: the client would use the event parser
    assert scanned.versions == exact.versions


# --- over HTTP: conditional GET, gzip -----------------------------------------------------------


def test_conditional_get_304_parses_nothing(site):
    etag = etag_of(INDEX)
    site.routes["/charts/index.yaml"] = serve_index(INDEX, etag=etag)
    calls = Calls()
    with ChartRepositoryClient(site.url("/charts/"), timeout=TIMEOUT, observer=calls) as client:
        first = client.fetch(["podinfo"])
        assert first.versions["podinfo"] == PODINFO
        assert first.etag == etag and client.parses == 1 and first.parser == "scan"
        again = client.fetch(["podinfo"])
        assert again is NotModified and not again and repr(again) == "NotModified"
        assert client.parses == 1
        assert site.seen[-1][1]["if-none-match"] == etag
        assert calls.calls == [("index", "ok"), ("index", "not_modified")]
        # A chart the previous result does not hold: asked for unconditionally.
        wider = client.fetch(["podinfo", "unrelated"])
        assert "if-none-match" not in site.seen[-1][1]
        assert set(wider.versions) == {"podinfo", "unrelated"} and client.parses == 2
        assert client.fetch(["unrelated"]) is NotModified  # a subset of what it read
        assert client.fetch(["unrelated"], force=True).versions["unrelated"][0].version == "1.0.0"
        assert client.parses == 3


def test_last_modified_alone_and_changed_index(site):
    stamp = "Tue, 02 Jan 2024 03:04:05 GMT"
    site.routes["/index.yaml"] = serve_index(INDEX, last_modified=stamp)
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as client:
        assert client.fetch().last_modified == stamp
        assert client.fetch() is NotModified
        assert site.seen[-1][1]["if-modified-since"] == stamp
        changed = INDEX.replace(b'version: "6.5.0"', b'version: "6.6.0"')
        site.routes["/index.yaml"] = serve_index(changed, etag=etag_of(changed))
        result = client.fetch()
        assert result.versions["podinfo"][0].version == "6.6.0" and client.parses == 2


def test_gzip_on_the_wire_and_identity(site):
    body = b"".join(generate_index(20, 10))
    site.routes["/index.yaml"] = serve_index(body, etag=etag_of(body))
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as client:
        packed = client.fetch()
    assert site.seen[-1][1]["accept-encoding"] == "gzip"
    assert packed.bytes_decoded == len(body)
    assert packed.bytes_read == len(gzip.compress(body)) < len(body) / 4
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as client:
        client.accept_encoding = "identity"
        plain = client.fetch()
    assert plain.bytes_read == plain.bytes_decoded == len(body)
    assert plain.versions == packed.versions and sum(map(len, plain.versions.values())) == 200


def test_large_generated_index_within_the_time_goal(site):
    body = b"".join(generate_index(100, 30))  # 3,000 entries, about 4.5 MB
    site.routes["/index.yaml"] = serve_index(body, etag=etag_of(body))
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as client:
        started = time.perf_counter()
        result = client.fetch()
        seconds = time.perf_counter() - started
    assert sum(map(len, result.versions.values())) == 3000 and result.parser == "scan"
    assert seconds < 1.0, f"{len(body) / 1e6:.1f} MB took {seconds:.2f}s"
    assert result.versions == parse_index(body, parser="events").versions


# --- auth, errors -------------------------------------------------------------------------------


def test_basic_auth_required_works_and_never_leaks(site):
    site.routes["/index.yaml"] = requires_basic(serve_index(INDEX))
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as anonymous, \
            pytest.raises(RegistryAuthError) as refused:
        anonymous.fetch()
    assert refused.value.status == 401 and "no credentials" in str(refused.value)
    with ChartRepositoryClient(site.url(), username="robot", password=PASSWORD,
                               timeout=TIMEOUT) as client:
        assert client.fetch(["podinfo"]).versions["podinfo"] == PODINFO
    with ChartRepositoryClient(site.url(), username="robot", password="wrong-" + PASSWORD,
                               timeout=TIMEOUT) as client, \
            pytest.raises(RegistryAuthError) as wrong:
        client.fetch()
    assert "credentials refused" in str(wrong.value) and PASSWORD not in str(wrong.value)
    # A server echoing the password in its reason phrase: scrubbed.
    site.routes["/echo/index.yaml"] = lambda request: Reply(403, b"", reason=f"no {PASSWORD}")
    with ChartRepositoryClient(site.url("/echo"), username="robot", password=PASSWORD,
                               timeout=TIMEOUT) as client, \
            pytest.raises(RegistryAuthError) as echoed:
        client.fetch()
    assert PASSWORD not in str(echoed.value) and "<redacted>" in str(echoed.value)
    assert PASSWORD not in repr(client.__dict__.get("_auth"))


def test_non_latin1_password_is_sent_as_utf8(site):
    password = "pässwörd-✓"
    site.routes["/index.yaml"] = requires_basic(serve_index(INDEX), "robot", password)
    with ChartRepositoryClient(site.url(), username="robot", password=password,
                               timeout=TIMEOUT) as client:
        assert client.fetch().api_version == "v1"


@pytest.mark.parametrize("reply, error, status", [
    (Reply(404, b"not here"), RegistryNotFound, 404),
    (Reply(500, b"oops"), RegistryServerError, 500),
    (Reply(503, b"", {"Retry-After": "30"}), RegistryServerError, 503),
    (Reply(429, b"", {"Retry-After": "42"}), RegistryRateLimited, 429),
    (Reply(403, b""), RegistryAuthError, 403),
    (Reply(418, b""), RegistryError, 418),
    (Reply(304, b""), RegistryError, 304),  # not asked for
])
def test_http_errors_map_to_registry_errors(site, reply, error, status):
    site.routes["/index.yaml"] = lambda request: reply
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as client, \
            pytest.raises(error) as raised:
        client.fetch()
    assert type(raised.value) is error
    assert raised.value.status == status
    assert site.url("/index.yaml") in str(raised.value)
    if status == 429:
        assert raised.value.retry_after == 42.0


def test_connection_refused_is_transient():
    with ChartRepositoryClient("http://127.0.0.1:9/charts", timeout=TIMEOUT) as client, \
            pytest.raises(RegistryServerError) as raised:
        client.fetch()
    assert raised.value.status is None and "connection failed" in str(raised.value)


@pytest.mark.parametrize("route, problem", [
    (serve_index(b"<html><body>Sign in</body></html>\n"), "not a Helm repository index"),
    (serve_index(b"apiVersion: v1\nentries:\n  app:\n  - version: [1\n"), "not valid YAML"),
    (serve_index(b"apiVersion: v1\nentries:\n  app:\n  - version: \xff\xfe\n"), "not UTF-8"),
    (lambda request: Reply(200, gzip.compress(INDEX)[:-20], {"Content-Encoding": "gzip"}),
     "not valid gzip"),
    (lambda request: Reply(200, INDEX, {"Content-Encoding": "br"}), "Content-Encoding"),
])
def test_malformed_index_names_the_url_not_the_credentials(site, route, problem):
    site.routes["/charts/index.yaml"] = route
    url = site.url("/charts") + "?token=query-secret"
    with ChartRepositoryClient(url, username="robot", password=PASSWORD,
                               timeout=TIMEOUT) as client, \
            pytest.raises(ChartIndexError) as raised:
        client.fetch()
    message = str(raised.value)
    assert problem in message and site.url("/charts/index.yaml") in message
    assert PASSWORD not in message and "query-secret" not in message and "robot" not in message
    assert site.seen[-1][0] == "/charts/index.yaml?token=query-secret"  # query kept for GET


def test_a_body_cut_short_is_transient(site):
    site.routes["/index.yaml"] = lambda request: Reply(200, INDEX[:200], length=len(INDEX))
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as client, \
            pytest.raises(RegistryServerError, match="reading the body failed") as raised:
        client.fetch()
    assert raised.value.status == 200


def test_index_larger_than_the_limit_is_refused(site):
    body = b"".join(generate_index(10, 10))
    site.routes["/index.yaml"] = serve_index(body)
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT,
                               max_index_bytes=len(body) // 2) as client, \
            pytest.raises(ChartIndexError, match="larger than"):
        client.fetch()


def test_scanner_hands_over_to_the_event_parser_and_remembers(site):
    body = textwrap.dedent(ODDITIES["anchors, aliases and merge keys (the event parser's job)"])
    site.routes["/index.yaml"] = serve_index(body.encode(), etag='"v1"')
    calls = Calls()
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT, observer=calls) as client:
        result = client.fetch(["app"])
        assert result.parser == "events" and result.requests == 2
        assert [v.version for v in result.versions["app"]] == ["1.0.0", "2.0.0", "3.0.0"]
        assert client.parses == 2 and calls.calls == [("index", "ok")] * 2
        site.routes["/index.yaml"] = serve_index(body.encode(), etag='"v2"')
        assert client.needs_event_parser
        assert client.fetch(["app"]).requests == 1  # straight to the event parser now
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT, parser="scan") as client, \
            pytest.raises(ChartIndexError, match="parser='scan'"):
        client.fetch()


def test_a_page_that_is_no_index_does_not_make_the_event_parser_stick(site):
    site.routes["/index.yaml"] = serve_index(b"<html><body>maintenance</body></html>\n")
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as client:
        with pytest.raises(ChartIndexError, match="not a Helm repository index"):
            client.fetch()
        assert not client.needs_event_parser and len(site.seen) == 2
        with pytest.raises(TypeError):
            client.fetch("podinfo")


def test_url_credentials_and_bad_client_certificates_are_refused_up_front():
    with pytest.raises(ValueError, match="secretRef"):
        ChartRepositoryClient(f"https://robot:{PASSWORD}@charts.example.com")
    with pytest.raises(ValueError, match="http"):
        ChartRepositoryClient("oci://registry.example.com/charts")
    with pytest.raises(ValueError, match="both"):
        ChartRepositoryClient("https://charts.example.com", cert_pem=b"x")
    with pytest.raises(ValueError) as raised:
        ChartRepositoryClient("https://charts.example.com", cert_pem=b"not a cert",
                              key_pem=b"-----BEGIN PRIVATE KEY-----\nsecret-key\n")
    assert "secret-key" not in str(raised.value)


# --- redirects ------------------------------------------------------------------------------


def test_redirect_on_the_same_host_keeps_credentials(site):
    site.routes["/old/index.yaml"] = redirect("/new/index.yaml", 301)
    site.routes["/new/index.yaml"] = requires_basic(serve_index(INDEX))
    with ChartRepositoryClient(site.url("/old"), username="robot", password=PASSWORD,
                               timeout=TIMEOUT) as client:
        assert client.fetch().versions["podinfo"] == PODINFO
    assert site.paths() == ["/old/index.yaml", "/new/index.yaml"]
    assert all("authorization" in headers for _, headers in site.seen)


def test_redirect_to_another_host_drops_credentials(site, other_site):
    other_site.routes["/cdn/index.yaml"] = serve_index(INDEX)
    site.routes["/index.yaml"] = redirect(other_site.url("/cdn/index.yaml", host="localhost"))
    calls = Calls()
    with ChartRepositoryClient(site.url(), username="robot", password=PASSWORD,
                               timeout=TIMEOUT, observer=calls) as client:
        # A session that would send credentials everywhere: still not to the other host.
        client.session.auth = ("robot", PASSWORD)
        client.session.headers["Authorization"] = "Basic bGVha2VkOmxlYWtlZA=="
        result = client.fetch()
    assert result.versions["podinfo"] == PODINFO and result.requests == 2
    assert "authorization" in site.seen[0][1]
    assert other_site.seen and "authorization" not in other_site.seen[0][1]
    assert calls.calls == [("index", "redirect"), ("index", "ok")]
    # Another port on the same name is another origin too.
    other_site.seen.clear()
    site.routes["/index.yaml"] = redirect(other_site.url("/cdn/index.yaml"))
    with ChartRepositoryClient(site.url(), username="robot", password=PASSWORD,
                               timeout=TIMEOUT) as client:
        client.fetch()
    assert "authorization" not in other_site.seen[0][1]


def test_a_401_behind_a_cross_host_redirect_says_why(site, other_site):
    other_site.routes["/index.yaml"] = requires_basic(serve_index(INDEX))
    site.routes["/index.yaml"] = redirect(other_site.url("/index.yaml", host="localhost"))
    with ChartRepositoryClient(site.url(), username="robot", password=PASSWORD,
                               timeout=TIMEOUT) as client, \
            pytest.raises(RegistryAuthError, match="not sent there"):
        client.fetch()


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/latest/meta-data/",  # 169.254.169.254 spelled as one number
    "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0:8080/index.yaml",
])
def test_redirect_to_metadata_addresses_is_refused(site, target):
    site.routes["/index.yaml"] = redirect(target)
    calls = Calls()
    with ChartRepositoryClient(site.url(), username="robot", password=PASSWORD,
                               timeout=TIMEOUT, observer=calls) as client, \
            pytest.raises(RegistryError, match="redirect refused") as raised:
        client.fetch()
    assert type(raised.value) is RegistryError and raised.value.status == 302
    assert calls.calls == [("index", "redirect")]  # the target was never contacted
    assert PASSWORD not in str(raised.value)


def test_redirect_loops_and_odd_targets_stop(site):
    site.routes["/index.yaml"] = redirect("/index.yaml", 307)
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as client, \
            pytest.raises(RegistryError, match="more than 5 redirects"):
        client.fetch()
    assert len(site.seen) == 6
    site.routes["/index.yaml"] = redirect("file:///etc/passwd")
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as client, \
            pytest.raises(RegistryError, match="non-http"):
        client.fetch()
    site.routes["/index.yaml"] = lambda request: Reply(302, b"")
    with ChartRepositoryClient(site.url(), timeout=TIMEOUT) as client, \
            pytest.raises(RegistryError, match="without a Location"):
        client.fetch()


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM bytes."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def pem_key(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def issue(name, key, issuer_name, issuer_key, *, ca=False, san=None, usage=None):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "headwind test CA")])
    ca = issue("headwind test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = issue("127.0.0.1", server_key, ca_name, ca_key,
                   san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                   usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = issue("headwind", client_key, ca_name, ca_key,
                   usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    directory = tmp_path_factory.mktemp("pki")
    (directory / "server.pem").write_bytes(
        server.public_bytes(serialization.Encoding.PEM) + pem_key(server_key))
    return {"ca": ca.public_bytes(serialization.Encoding.PEM),
            "server": str(directory / "server.pem"),
            "client_cert": client.public_bytes(serialization.Encoding.PEM),
            "client_key": pem_key(client_key)}


def tls_site(pki, *, client_auth: bool) -> Site:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"])
    if client_auth:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=pki["ca"].decode())
    server = Site(tls=context)
    server.routes["/index.yaml"] = serve_index(INDEX)
    return server


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_with_the_repository_ca_and_insecure_skip_verify(pki):
    server = tls_site(pki, client_auth=False)
    try:
        with ChartRepositoryClient(server.url(), timeout=TIMEOUT) as client, \
                pytest.raises(RegistryServerError, match="TLS"):
            client.fetch()
        with ChartRepositoryClient(server.url(), ca_pem=pki["ca"], timeout=TIMEOUT) as client:
            assert client.fetch().versions["podinfo"] == PODINFO
        with ChartRepositoryClient(server.url(), insecure_skip_verify=True,
                                   timeout=TIMEOUT) as client:
            assert client.verify is False
            assert client.fetch().api_version == "v1"
    finally:
        server.close()


def test_mutual_tls_pem_files_are_private_and_removed_on_close(pki):
    server = tls_site(pki, client_auth=True)
    try:
        with ChartRepositoryClient(server.url(), ca_pem=pki["ca"], timeout=TIMEOUT) as client, \
                pytest.raises(RegistryServerError):
            client.fetch()  # no client certificate: the handshake fails
        client = ChartRepositoryClient(server.url(), ca_pem=pki["ca"], cert_pem=pki[
            "client_cert"], key_pem=pki["client_key"], timeout=TIMEOUT)
        files = [client.verify, *client.cert]
        directory = os.path.dirname(files[0])
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        for path in files:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(client.cert[1], "rb") as handle:
            assert handle.read() == pki["client_key"]
        assert client.fetch().versions["podinfo"] == PODINFO
        client.close()
        assert not os.path.exists(directory)
        client.close()  # twice is fine
    finally:
        server.close()


def test_the_module_needs_no_django():
    import subprocess
    import sys

    code = ("import sys, registry.charts; "
            "sys.exit(1 if any(m == 'django' or m.startswith('django.') for m in sys.modules)"
            " else 0)")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                          timeout=60).returncode == 0


def test_parse_index_leaves_the_callers_stream_open():
    stream = io.BytesIO(INDEX)
    parse_index(stream, ["podinfo"])
    assert not stream.closed
