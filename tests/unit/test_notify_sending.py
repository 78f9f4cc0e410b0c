"""One delivery over real HTTP to a local sink: what counts as delivered, transient or final,
that redirects are not followed, that time-outs are short, and that no URL or secret leaks
into what is reported."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from operator_app.notify import sending
from operator_app.notify.routing import Destination
from operator_app.notify.settings import from_environ

from .test_notify_support import Answer, Sink

TOKEN = "s3cr3t-token"


@pytest.fixture
def sink():
    with Sink() as running:
        yield running


def post(sink, payload=None, **kwargs):
    return sending.send("slack", sink.url, payload or {"text": "hi"}, verify=True, **kwargs)


def test_a_2xx_is_delivered_with_json_and_our_user_agent(sink):
    sink.script(Answer(202, body=b""))
    outcome = post(sink, {"text": "héllo"})
    assert (outcome.ok, outcome.status, outcome.detail) == (True, 202, "answered 202")
    (request,) = sink.received
    assert request.header("Content-Type") == "application/json; charset=utf-8"
    assert request.header("User-Agent") == "headwind-notify/0.1"
    assert json.loads(request.body) == {"text": "héllo"}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_transient(sink, status):
    sink.script(Answer(status, body=b"upstream trouble"))
    outcome = post(sink)
    assert (outcome.ok, outcome.transient, outcome.status) == (False, True, status)
    assert outcome.detail == f"answered {status}: upstream trouble"


def test_429_is_transient_and_retry_after_is_read_and_capped(sink):
    sink.script(Answer(429, {"Retry-After": "7"}), Answer(429, {"Retry-After": "86400"}),
                Answer(429))
    assert post(sink).retry_after == 7
    assert post(sink).retry_after == sending.MAX_RETRY_AFTER
    outcome = post(sink)
    assert outcome.transient and outcome.retry_after is None
    soon = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= sending.parse_retry_after(format_datetime(soon, usegmt=True)) <= 30
    assert sending.parse_retry_after("soon") is None


def test_other_4xx_is_final_and_the_echoed_url_is_scrubbed(sink):
    echo = f"no_service: {sink.url} ({sink.path}) token {TOKEN}".encode()
    sink.script(Answer(404, body=echo))
    outcome = post(sink)
    assert (outcome.ok, outcome.transient, outcome.status) == (False, False, 404)
    assert TOKEN not in outcome.detail and "127.0.0.1" not in outcome.detail
    assert outcome.detail.startswith("answered 404: no_service: ")


def test_a_redirect_is_not_followed(sink):
    with Sink(path="/elsewhere") as other:
        sink.script(Answer(307, {"Location": other.url}))
        outcome = post(sink)
        assert (outcome.ok, outcome.transient, outcome.status) == (False, False, 307)
        assert outcome.detail == "answered 307 (redirects are not followed)"
        assert other.received == []


def test_refused_connections_are_transient():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    outcome = sending.send("webhook", f"http://127.0.0.1:{port}/hook/{TOKEN}", {}, verify=True)
    assert (outcome.ok, outcome.transient, outcome.detail) == (False, True, "connection refused")


def test_a_slow_receiver_times_out(sink, monkeypatch):
    monkeypatch.setattr(sending, "TIMEOUT", (5.0, 0.5))  # 10 s in production
    sink.script(Answer(200, delay=2))
    outcome = post(sink)
    assert (outcome.ok, outcome.transient, outcome.timed_out) == (False, True, True)
    assert outcome.detail == "timed out"


def test_production_timeouts_are_5_s_to_connect_and_10_s_to_read():
    assert sending.TIMEOUT == (5.0, 10.0)


def test_generic_webhook_headers(sink):
    outcome = sending.send("webhook", sink.url, {"id": "d1"}, verify=True, signing_secret="k",
                           event="update_applied", delivery_id="d1")
    assert outcome.ok
    (request,) = sink.received
    assert request.header("X-Headwind-Event") == "update_applied"
    assert request.header("X-Headwind-Delivery") == "d1"
    assert request.header("X-Headwind-Signature").startswith("t=")
    unsigned = sending.send("webhook", sink.url, {}, verify=True)
    assert unsigned.ok and sink.received[1].header("X-Headwind-Signature") is None


def test_resolve_a_global_channel():
    config = from_environ({"SLACK_WEBHOOK_URL": "https://s.example/x",
                           "WEBHOOK_URL": "https://w.example/y", "WEBHOOK_SECRET": "k"})
    assert sending.resolve(Destination("slack"), "ns", config) == ("https://s.example/x", "")
    assert sending.resolve(Destination("webhook"), "ns", config) == ("https://w.example/y", "k")
    with pytest.raises(sending.DestinationError, match="teams is not configured") as caught:
        sending.resolve(Destination("teams"), "ns", config)
    assert not caught.value.transient


def test_scrub():
    text = "failed https://hooks.example/services/T/B/xyz?sig=abc and /services/T/B/xyz\x00\n"
    assert sending.scrub(text, ("/services/T/B/xyz",)) == "failed <url> and ***"
    assert len(sending.scrub("x" * 1000)) == 160
