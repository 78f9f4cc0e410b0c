"""``emit``: what it queues (no URL, no secret in a task message), that it never raises, and
that a dead or hanging broker never delays its caller. The broker tests run a real process
with the real settings and Celery app, pointed at a Redis that is not there (a closed port) or
that accepts connections and never answers."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from operator_app import notify
from operator_app.notify import emitting
from operator_app.notify.settings import from_environ

REPO = Path(__file__).parents[2]
TOKEN = "s3cr3t-token"
BOUND = 0.25  # seconds: a functional bound for up to 20 emits, far above their real cost


def notice(**annotations) -> notify.Notice:
    return notify.Notice(event=notify.Event.UPDATE_APPLIED, kind="Deployment",
                         namespace="team-a", name="web", slot="app", from_ref="r/app:1",
                         to_ref="r/app:2", request="web-app-2-abc", annotations=annotations)


@pytest.fixture
def configured(settings):
    settings.HEADWIND_NOTIFY = from_environ({
        "SLACK_WEBHOOK_URL": f"https://hooks.example/services/T/B/{TOKEN}",
        "HEADWIND_WEBHOOK_URL": f"https://receiver.example/hook?token={TOKEN}",
        "HEADWIND_WEBHOOK_SECRET": "signing-secret",
        "HEADWIND_DASHBOARD_URL": "https://headwind.example",
        "HEADWIND_NOTIFY_STORM_THRESHOLD": "7",
    })


def test_task_messages_carry_names_not_urls(configured):
    messages = emitting.messages_for(notice(**{"headwind.sh/notify":
                                               "all,webhook=secret:team-a-hook"}))
    assert [(m["channel"], m["secret"]) for m in messages] == [
        ("slack", None), ("webhook", None), ("webhook", "team-a-hook")]
    first = messages[0]
    assert first["link"] == "https://headwind.example/updates/team-a/web-app-2-abc"
    assert first["home"] == "https://headwind.example/"
    assert first["policy"] == {"threshold": 7, "window": 60, "max_attempts": 6}
    assert first["id"] == notice().key
    text = json.dumps(messages)
    assert TOKEN not in text and "hooks.example" not in text and "signing-secret" not in text


def test_emit_never_raises(configured, settings, monkeypatch, caplog):
    monkeypatch.setattr(emitting, "route", lambda *a: 1 / 0)
    with caplog.at_level(logging.ERROR, "operator_app.notify.emitting"):
        assert notify.emit(notice()) is None
    assert "notification not queued" in caplog.text
    del settings.HEADWIND_NOTIFY
    assert notify.emit(notice()) is None


def test_an_invalid_annotation_is_logged_once(configured, caplog):
    emitting._reported.clear()
    with caplog.at_level(logging.WARNING, "operator_app.notify.emitting"):
        for _ in range(3):
            emitting.messages_for(notice(**{"headwind.sh/notify": "pager"}))
    assert caplog.text.count("unknown channel 'pager'") == 1


def test_a_full_outbox_drops_at_once_and_says_so(configured, monkeypatch, caplog):
    release = threading.Event()
    box = emitting.Outbox(publish=lambda message: release.wait(10), size=3)
    monkeypatch.setattr(emitting, "OUTBOX", box)
    try:
        with caplog.at_level(logging.ERROR, "operator_app.notify.emitting"):
            started = time.monotonic()
            for _ in range(10):
                notify.emit(notice())
            elapsed = time.monotonic() - started
        assert elapsed < BOUND
        assert "not queued: the outbox is full" in caplog.text
    finally:
        release.set()
    assert box.flush(10)


def test_a_publish_error_is_logged_by_type_only(configured, monkeypatch, caplog):
    def publish(message):
        raise ConnectionError(f"redis://:{TOKEN}@broker:6379 refused")

    box = emitting.Outbox(publish=publish)
    monkeypatch.setattr(emitting, "OUTBOX", box)
    with caplog.at_level(logging.ERROR, "operator_app.notify.emitting"):
        notify.emit(notice())
        assert box.flush(5)
    assert "update_applied for Deployment team-a/web to slack not queued: ConnectionError" \
        in caplog.text
    assert TOKEN not in caplog.text


SCRIPT = textwrap.dedent("""
    import json, time, django
    django.setup()
    from operator_app import notify
    from operator_app.notify import emitting
    notices = [notify.Notice(event="update_detected", kind="Deployment", namespace="ns",
                             name=f"web-{i}", slot="app", to_ref=f"r/app:{i}")
               for i in range(int(__import__("os").environ["COUNT"]))]
    started = time.monotonic()
    for item in notices:
        notify.emit(item)
    elapsed = time.monotonic() - started
    flushed = emitting.OUTBOX.flush(float(__import__("os").environ["FLUSH"]))
    print(json.dumps({"elapsed": elapsed, "flushed": flushed}), flush=True)
""")


def run_with_broker(redis_url: str, flush: float, count: int) -> tuple[dict, str, float]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings", REDIS_URL=redis_url,
               SLACK_WEBHOOK_URL=f"https://hooks.example/services/T/B/{TOKEN}",
               FLUSH=str(flush), COUNT=str(count), PYTHONPATH=str(REPO), LOG_LEVEL="INFO")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr, took


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_emit_returns_at_once_with_the_broker_unreachable():
    # Each publish is given up after about a second (two quick retries): five are enough.
    result, log, _ = run_with_broker(f"redis://127.0.0.1:{free_port()}/0", flush=60, count=5)
    assert result["elapsed"] < BOUND
    assert result["flushed"]  # every message was tried, and given up
    assert log.count("not queued: OperationalError") == 5
    assert "not queued" in log and TOKEN not in log


def test_emit_returns_at_once_with_a_broker_that_never_answers():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts connections (the kernel does), never says a word
    try:
        port = silent.getsockname()[1]
        result, _, took = run_with_broker(f"redis://127.0.0.1:{port}/0", flush=1, count=20)
    finally:
        silent.close()
    assert result["elapsed"] < BOUND
    assert result["flushed"] is False  # still stuck talking to the broker
    assert took < 30  # and the process still exits (the outbox is a daemon, flushed ≤ 2 s)
