"""The shipped web process (``python -m headwind_site.web``: uvicorn serving headwind_site.asgi)
with registry deliveries on their short ASGI path (registry/asgi.py).

Everything goes over real HTTP to the real server, on the testbed's Redis: deliveries are queued
(found in the stream), refused ones get the view's 4xx, what the short path does not take (other
methods, a refused ``Host``) gets Django's answer, nothing gets a 5xx, and the access log carries
no webhook token.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
import requests

from tests.testbed.fixtures import serve_web, stop_processes
from tests.waiting import eventually

pytestmark = [pytest.mark.testbed]

REPO_ROOT = Path(__file__).resolve().parents[2]
STREAM = "headwind:image-events"  # operator_app/eventqueue.py
TOKEN = "path-and-query-token-0123456789"
REDIS_DB = 9  # the server's own: no operator of another test reads this stream


def _body(tag: str) -> bytes:
    return json.dumps({"image": "reg.example/team/app", "tag": tag}).encode()


@pytest.fixture(scope="module")
def web(testbed, tmp_path_factory):
    """The web process as deploy/manifests/web.yaml runs it; yields (base URL, log, Redis, its
    process ID)."""
    log_path = tmp_path_factory.mktemp("web") / "web.log"
    redis_url = testbed.env()["REDIS_URL"].rsplit("/", 1)[0] + f"/{REDIS_DB}"
    server, base = serve_web(testbed, log_path, REDIS_URL=redis_url, LOG_LEVEL="INFO",
                             HEADWIND_WEBHOOK_GENERIC_TOKEN=TOKEN,
                             HEADWIND_WEBHOOK_QUAY_TOKEN=TOKEN,
                             HEADWIND_WEBHOOK_ALLOW_UNAUTHENTICATED="false")
    stream = redis.Redis.from_url(redis_url)
    stream.delete(STREAM)
    yield base, log_path, stream, server.pid
    stop_processes(server)
    stream.delete(STREAM)


def _queued_tags(stream: redis.Redis) -> list[str]:
    return [fields[b"tag"].decode() for _, fields in stream.xrange(STREAM)]


def test_deliveries_are_queued_and_their_tokens_never_logged(web):
    base, log_path, stream, _pid = web
    by_query = requests.post(f"{base}/webhook/generic?token={TOKEN}", data=_body("1.0.1"),
                             headers={"Content-Type": "application/json"}, timeout=10)
    by_header = requests.post(f"{base}/webhook/generic", data=_body("1.0.2"), timeout=10,
                              headers={"Content-Type": "application/json",
                                       "Authorization": f"Bearer {TOKEN}"})
    assert (by_query.status_code, by_header.status_code) == (202, 202), by_query.text
    assert by_query.json()["events"] == [{"repository": "reg.example/team/app", "tag": "1.0.1"}]
    assert by_query.headers["X-Content-Type-Options"] == "nosniff"
    assert {"1.0.1", "1.0.2"} <= set(_queued_tags(stream))
    # Quay's token is the last path segment; a broken body is refused after it was checked.
    quay = requests.post(f"{base}/webhook/quay/{TOKEN}", data=b"{broken", timeout=10,
                         headers={"Content-Type": "application/json"})
    assert quay.status_code == 400

    def logged() -> str:
        text = log_path.read_text()
        return text if "/webhook/quay/***" in text and "token=***" in text else ""

    text = eventually(logged, 10, "the access log lines of the deliveries")
    assert TOKEN not in text
    assert '"POST /webhook/generic?token=*** HTTP/1.1" 202' in text


@pytest.mark.parametrize("case", ["wrong token", "no token", "unknown source", "bad type",
                                  "too large", "too large, chunked", "not JSON",
                                  "bad length"])
def test_refused_deliveries_get_a_4xx_and_queue_nothing(web, case):
    base, _log, stream, _pid = web
    before = stream.xlen(STREAM)
    url, headers = f"{base}/webhook/generic", {"Content-Type": "application/json",
                                                "Authorization": f"Bearer {TOKEN}"}
    data: object = _body("9.9.9")
    expected = {"wrong token": 403, "no token": 401, "unknown source": 404, "bad type": 415,
                "too large": 413, "too large, chunked": 413, "not JSON": 400,
                "bad length": 400}[case]
    if case == "wrong token":
        headers["Authorization"] = "Bearer nope"
    elif case == "no token":
        del headers["Authorization"]
    elif case == "unknown source":
        url = f"{base}/webhook/nosuchregistry"
    elif case == "bad type":
        headers["Content-Type"] = "application/xml"
    elif case == "too large":
        data = b"x" * (2 * 1024 * 1024 + 10)
    elif case == "too large, chunked":
        data = (b"x" * 65536 for _ in range(40))  # no Content-Length: read up to the limit
    elif case == "not JSON":
        data = b"<xml/>"
    else:
        return _bad_content_length(base, stream, before)
    response = requests.post(url, data=data, headers=headers, timeout=30)
    assert response.status_code == expected, (case, response.status_code, response.text)
    assert "error" in response.json()
    assert stream.xlen(STREAM) == before
    return None


def _bad_content_length(base: str, stream: redis.Redis, before: int) -> None:
    """A Content-Length the server cannot believe: a 4xx from someone, never a 5xx."""
    status_line = _raw(base, b"POST /webhook/generic HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Length: -5\r\nAuthorization: Bearer " + TOKEN.encode()
                            + b"\r\n\r\n", timeout=10).split(b"\r\n", 1)[0]
    status = int(status_line.split()[1])
    assert 400 <= status < 500, status_line
    assert stream.xlen(STREAM) == before


def test_what_the_short_path_does_not_take_gets_djangos_answer(web):
    base, _log, stream, _pid = web
    before = stream.xlen(STREAM)
    get = requests.get(f"{base}/webhook/generic", timeout=10)
    assert get.status_code == 405 and "POST" in get.headers["Allow"]
    options = requests.options(f"{base}/webhook/acr", timeout=10,
                               headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert options.status_code == 200
    assert options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    refused_host = requests.post(f"{base}/webhook/generic", data=_body("8.8.8"), timeout=10,
                                 headers={"Host": "evil.example",
                                          "Content-Type": "application/json",
                                          "Authorization": f"Bearer {TOKEN}"})
    assert refused_host.status_code == 400  # Django's DisallowedHost
    assert stream.xlen(STREAM) == before
    # Pages still come through Django and its middleware.
    login = requests.get(f"{base}/admin/login/", timeout=10)
    assert login.status_code == 200 and "Content-Security-Policy" in login.headers


def _raw(base: str, head: bytes, chunks=(), *, timeout: float = 20) -> bytes:
    """Send ``head`` (and ``chunks``) on one connection; the server's answer, up to 64 KiB."""
    import socket

    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:  # the server refused and closed while we were still sending
            pass
        answer = b""
        try:
            while len(answer) < 65536:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    return answer


@pytest.mark.parametrize("shape", ["many headers", "one endless header", "endless URL"])
def test_an_oversized_request_head_is_refused_and_the_server_stays_small(web, shape):
    """httptools keeps every header byte it is sent; the web refuses a head over 64 KiB with
    431 and closes, instead of growing by whatever a client sends (tens of MB here)."""
    base, log_path, _stream, pid = web

    def rss() -> int:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) * 1024

    before = rss()
    filler = b"a" * 8192
    if shape == "many headers":
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        chunks = (b"X-Filler-%d: %s\r\n" % (i, filler) for i in range(4000))
    elif shape == "one endless header":
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: "
        chunks = (filler for _ in range(4000))
    else:
        head = b"GET /healthz?x="
        chunks = (filler for _ in range(4000))
    answer = _raw(base, head, chunks)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert rss() - before < 16 * 1024 * 1024
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
    assert "request head over 65536 bytes" in log_path.read_text()


@pytest.mark.parametrize("declared", [True, False], ids=["Content-Length", "chunked"])
def test_an_oversized_body_is_refused_before_it_is_stored(web, declared):
    """A 100 MiB form post: 413 at once when declared, and once 8 MiB have come when chunked;
    Django never spools it to disk."""
    base, _log, _stream, _pid = web
    chunk = b"a" * 65536
    if declared:
        head = (b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: %d\r\n\r\n" % (100 * 1024 * 1024))
        answer = _raw(base, head)  # nothing of the body sent: the answer comes anyway
    else:
        head = (b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        answer = _raw(base, head, (b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(1600)))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"request body too large" in answer
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200


def test_a_head_that_never_ends_is_closed_after_the_timeout(web):
    """Slowly trickled heads cannot hold connections for ever: 408 and close after
    HEAD_TIMEOUT_SECONDS, for a connection that sent part of a head and one that sent nothing;
    a complete request on a kept-alive connection is not affected."""
    import http.client
    import time

    from headwind_site.web import HEAD_TIMEOUT_SECONDS

    base, _log, _stream, _pid = web
    port = int(base.rsplit(":", 1)[1])
    started = time.monotonic()
    partial = _raw(base, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a",
                   timeout=HEAD_TIMEOUT_SECONDS + 20)
    assert partial.startswith(b"HTTP/1.1 408 "), partial[:200]
    assert time.monotonic() - started >= HEAD_TIMEOUT_SECONDS - 0.5
    silent = _raw(base, b"", timeout=HEAD_TIMEOUT_SECONDS + 20)
    assert silent.startswith(b"HTTP/1.1 408 "), silent[:200]

    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        sockets = []
        for _ in range(2):
            kept.request("GET", "/healthz")
            answer = kept.getresponse()
            answer.read()  # the whole response, so the next one starts clean
            assert answer.status == 200
            sockets.append(kept.sock)
        assert sockets[0] is sockets[1]  # the same kept-alive connection
    finally:
        kept.close()
