"""The generic webhook's signature, checked on what the sender really puts on the wire: the
verifier accepts it, and refuses a changed body, timestamp or signature, a wrong secret and a
stale or future timestamp. The copy of the verifier in docs/notifications.md is run too."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path

import pytest

from operator_app.notify import payloads, sending
from operator_app.notify.signature import sign, verify

from .test_notify_support import Sink

SECRET = "whsec-team-a-0123456789"
DOCS = Path(__file__).parents[2] / "docs" / "notifications.md"


@pytest.fixture(scope="module")
def delivered():
    """(body bytes, signature header, arrival time) of one real delivery."""
    notice = payloads.sample_notice()
    with Sink() as sink:
        outcome = sending.send("webhook", sink.url, payloads.webhook_body(notice, "", "id-1"),
                               verify=True, signing_secret=SECRET, event=str(notice.event),
                               delivery_id="id-1")
        assert outcome.ok
        (request,) = sink.received
    return request.body, request.header("X-Headwind-Signature"), time.time()


def test_the_header_is_a_real_hmac_of_timestamp_dot_body(delivered):
    body, header, _ = delivered
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", header)
    assert match, header
    stamp, mac = match.groups()
    assert abs(int(stamp) - time.time()) < 60
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    assert mac == expected.hexdigest()
    assert mac != hashlib.sha256(SECRET.encode() + body).hexdigest()  # the seed's mistake


def test_what_the_sender_sends_verifies(delivered):
    body, header, _ = delivered
    assert verify(body, header, SECRET)
    assert verify(body.decode(), header, SECRET.encode())


def test_tampering_is_refused(delivered):
    body, header, _ = delivered
    stamp = int(header.split(",")[0][2:])
    mac = header.split("v1=")[1]
    assert not verify(body.replace(b"nginx:1.26.0", b"nginx:6.66.6"), header, SECRET)
    assert not verify(body + b" ", header, SECRET)
    assert not verify(body, f"t={stamp + 1},v1={mac}", SECRET)
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    assert not verify(body, f"t={stamp},v1={flipped}", SECRET)
    assert not verify(body, header, "another-secret")
    assert not verify(body, header, "")


def test_stale_and_future_timestamps_are_refused(delivered):
    body, _, _ = delivered
    old = sign(body, SECRET, int(time.time()) - 301)
    assert not verify(body, old, SECRET)
    assert verify(body, old, SECRET, tolerance=600)
    assert not verify(body, sign(body, SECRET, int(time.time()) + 301), SECRET)
    header = sign(body, SECRET, 1_000_000)
    assert verify(body, header, SECRET, now=1_000_000 + 300)
    assert not verify(body, header, SECRET, now=1_000_000 + 301)


MALFORMED = [None, "", "garbage", "t=,v1=", "v1=abc", "t=123", "t=12a,v1=00", "t=1,t=2,v1=00",
             "t=1;v1=00", "t=99999999999999,v1=00", "t=1,v1=ünïcode", f"t={int(time.time())},v1=é"]


@pytest.mark.parametrize("header", MALFORMED)
def test_malformed_headers_are_refused_without_raising(header):
    assert not verify(b"{}", header, SECRET, now=1)


def test_several_signatures_during_a_secret_rotation():
    body, stamp = b'{"id":"x"}', int(time.time())
    old = sign(body, "old-secret", stamp).split("v1=")[1]
    new = sign(body, "new-secret", stamp).split("v1=")[1]
    header = f"t={stamp},v1={old},v1={new}"
    assert verify(body, header, "old-secret") and verify(body, header, "new-secret")
    assert not verify(body, header, "third-secret")


def test_the_verifier_in_the_docs_works_on_the_real_thing(delivered):
    """docs/notifications.md's snippet, executed as a receiver would paste it."""
    text = DOCS.read_text()
    snippet = re.search(r"```python\n(# Verify a Headwind webhook.*?)```", text, re.S)
    assert snippet, "docs/notifications.md has no verifier snippet"
    namespace: dict = {}
    exec(compile(snippet.group(1), "docs/notifications.md", "exec"), namespace)  # noqa: S102
    check = namespace["verify_headwind"]
    body, header, _ = delivered
    assert check(body, header, SECRET)
    assert not check(body + b"x", header, SECRET)
    assert not check(body, header.replace("t=", "t=1"), SECRET)
    assert not check(body, sign(body, SECRET, int(time.time()) - 400), SECRET)
    for header in MALFORMED:
        assert not check(b"{}", header, SECRET)
