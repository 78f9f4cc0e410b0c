"""Notifications end to end: ``emit`` in this process, the real Celery worker on the testbed's
Redis (the ``celery_worker`` fixture) delivering to local HTTP sinks that stand in for Slack,
Teams and a webhook receiver, with the URLs held in Secrets of the test's namespace (the
``headwind.sh/notify: <channel>=secret:<name>`` route, read by the worker through the API).

What is checked: each channel's payload arrives, signed where it should be; retries on 500 and
on 429 honouring ``Retry-After`` (the observed wait is measured); final 4xx, attempts running
out and a missing Secret are failures; no URL or secret reaches the worker's log or Redis; a
dead channel does not slow ``emit``; 200 notices become a handful of messages and one summary
per window; and the storm bookkeeping's atomic steps under concurrency and a "killed" claimer.
"""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from kubernetes import client

from operator_app import notify
from operator_app.notify import emitting, storm
from operator_app.notify.settings import from_environ
from operator_app.notify.signature import verify
from tests.unit.test_notify_payloads import check_teams, slack_violations
from tests.unit.test_notify_support import Answer, Sink
from tests.waiting import eventually

pytestmark = pytest.mark.testbed

TOKEN = "s3cr3t-token"  # in every sink's path: must never show up in logs or Redis
DASHBOARD = "https://headwind.example"


@pytest.fixture
def notify_settings(settings):
    """What ``emit`` in this process routes with: no global channel (the worker has none
    either), a dashboard link, and test-sized attempts and storm window."""
    def configure(**variables):
        env = {"HEADWIND_DASHBOARD_URL": DASHBOARD, "HEADWIND_NOTIFY_MAX_ATTEMPTS": "4",
               **variables}
        settings.HEADWIND_NOTIFY = from_environ(env)
        return settings.HEADWIND_NOTIFY

    configure()
    return configure


@pytest.fixture
def secret(kube_api, namespace):
    """``secret(name, url, signing=None)``: a team's channel Secret in the test's namespace."""
    core = client.CoreV1Api(kube_api)

    def make(name: str, url: str, signing: str | None = None) -> str:
        data = {"url": url, **({"secret": signing} if signing else {})}
        core.create_namespaced_secret(namespace, {
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})
        return name

    return make


@pytest.fixture
def sinks():
    with Sink() as slack, Sink() as teams, Sink() as hook:
        yield {"slack": slack, "teams": teams, "webhook": hook}


def emit(namespace: str, notify_value: str, *, name: str = "web",
         event=notify.Event.UPDATE_APPLIED, **extra) -> notify.Notice:
    notice = notify.Notice(event=event, kind="Deployment", namespace=namespace, name=name,
                           slot="app", from_ref="reg.example/team/app:1.2.0",
                           to_ref="reg.example/team/app:1.3.0", policy="minor",
                           actor="headwind", annotations={"headwind.sh/notify": notify_value},
                           **extra)
    notify.emit(notice)
    return notice


def worker_metric(worker, sample: str) -> float:
    total = 0.0
    text = requests.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(sample + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def no_token_in_redis(redis_url: str) -> None:
    """Scan the broker's database: queues, unacknowledged and scheduled messages, storm keys."""
    db = redis.Redis.from_url(redis_url)
    try:
        for key in db.scan_iter(count=500):
            kind = db.type(key)
            if kind == b"string":
                values = [db.get(key) or b""]
            elif kind == b"list":
                values = db.lrange(key, 0, -1)
            elif kind == b"hash":
                values = list(db.hgetall(key).values())
            elif kind == b"zset":
                values = [member for member, _ in db.zrange(key, 0, -1, withscores=True)]
            elif kind == b"set":
                values = list(db.smembers(key))
            else:
                continue
            for value in values:
                assert TOKEN.encode() not in value, f"{key!r} holds a webhook URL"
    finally:
        db.close()


def test_each_channel_is_delivered_by_the_worker(celery_worker, namespace, notify_settings,
                                                 secret, sinks, redis_url):
    secret("team-slack", sinks["slack"].url)
    secret("team-teams", sinks["teams"].url)
    secret("team-hook", sinks["webhook"].url, signing="team-a-signing-key")
    sent = 'headwind_notifications_sent_total{channel="slack",event="request_approved"}'
    sent_before = worker_metric(celery_worker, sent)
    notice = emit(namespace, "slack=secret:team-slack,teams=secret:team-teams,"
                             "webhook=secret:team-hook",
                  event=notify.Event.REQUEST_APPROVED, request="web-app-1-3-0-x", approvals=1,
                  required=2)
    link = f"{DASHBOARD}/updates/{namespace}/web-app-1-3-0-x"

    (slack,) = sinks["slack"].wait_for(1)
    message = slack.json()
    assert slack_violations(message) == []
    assert message["blocks"][0]["text"]["text"] == \
        f"👍 Update approved: Deployment {namespace}/web (app)"
    assert message["blocks"][-1]["elements"][0]["url"] == link

    (teams,) = sinks["teams"].wait_for(1)
    card = check_teams(teams.json())
    assert card["actions"][0]["url"] == link

    (hook,) = sinks["webhook"].wait_for(1)
    assert verify(hook.body, hook.header("X-Headwind-Signature"), "team-a-signing-key")
    body = hook.json()
    assert (body["event"], body["approvals"], body["required"]) == ("request_approved", 1, 2)
    assert body["id"] == notice.key == hook.header("X-Headwind-Delivery")

    eventually(lambda: worker_metric(celery_worker, sent) >= sent_before + 1, 10,
               "the worker counting the Slack delivery")
    assert TOKEN not in celery_worker.log_path.read_text(errors="replace")
    no_token_in_redis(redis_url)

    # Emitting the same notice again (a redelivered caller) delivers nothing new.
    notify.emit(notice)
    time.sleep(2)
    assert len(sinks["slack"].received) == 1 and len(sinks["webhook"].received) == 1


def test_500_is_retried_with_backoff(celery_worker, namespace, notify_settings, secret, sinks):
    hook = sinks["webhook"]
    hook.script(Answer(500), Answer(503), Answer(200))
    secret("hook", hook.url)
    emit(namespace, "webhook=secret:hook")
    first, second, third = hook.wait_for(3, timeout=30)
    assert third.body == first.body or third.json()["id"] == first.json()["id"]
    assert second.at - first.at >= 0.9  # backoff 1 s, then 2 s
    assert third.at - second.at >= 1.9
    time.sleep(1.5)
    assert len(hook.received) == 3


def test_429_waits_as_long_as_retry_after_says(celery_worker, namespace, notify_settings,
                                               secret, sinks, redis_url):
    hook = sinks["webhook"]
    hook.script(Answer(429, {"Retry-After": "4"}), Answer(200))
    secret("hook", hook.url)
    emit(namespace, "webhook=secret:hook")
    (first,) = hook.wait_for(1)
    no_token_in_redis(redis_url)  # while the retry waits in the broker
    _, second = hook.wait_for(2, timeout=30)
    waited = second.at - first.at
    assert 4.0 <= waited < 4.0 + 6, waited  # honoured (backoff alone would be 1 s)


def test_final_refusals_and_exhausted_attempts_fail(celery_worker, namespace, notify_settings,
                                                     secret, sinks):
    failed = 'headwind_notifications_failed_total{channel="webhook",event="update_applied"}'
    before = worker_metric(celery_worker, failed)
    gone, down = sinks["webhook"], sinks["slack"]
    gone.default = Answer(404, body=b"no_service")
    down.default = Answer(502)
    secret("gone", gone.url)
    secret("down", down.url)
    notify_settings(HEADWIND_NOTIFY_MAX_ATTEMPTS="3")
    emit(namespace, "webhook=secret:gone", name="a")
    emit(namespace, "slack=secret:down", name="b")
    emit(namespace, "webhook=secret:missing", name="c")
    down.wait_for(3, timeout=30)  # 502, 502, 502: three attempts in all
    eventually(lambda: worker_metric(celery_worker, failed) >= before + 2, 20,
               "the 404 and the missing Secret counted as failed")
    time.sleep(2)
    assert len(gone.received) == 1  # a 404 is not retried
    assert len(down.received) == 3
    log = celery_worker.log_path.read_text(errors="replace")
    assert f"Secret {namespace}/missing could not be read (404 NotFound)" in log
    assert "answered 404: no_service" in log and TOKEN not in log


def test_a_dead_channel_does_not_slow_emit(celery_worker, namespace, notify_settings, secret):
    failed = 'headwind_notifications_failed_total{channel="slack",event="update_applied"}'
    before = worker_metric(celery_worker, failed)
    silent = Sink(default=Answer(200, delay=11))  # the worker stops reading after 10 s
    with silent:
        secret("hangs", silent.url)
        secret("refuses", "http://127.0.0.1:9/nothing-listens-here")
        notify_settings(HEADWIND_NOTIFY_MAX_ATTEMPTS="1")
        started = time.monotonic()
        emit(namespace, "webhook=secret:hangs", name="hanging")
        for index in range(20):
            emit(namespace, "slack=secret:refuses", name=f"w{index}")
        elapsed = time.monotonic() - started
        assert elapsed < 0.25, elapsed  # a functional bound: emit only queues in memory
        assert emitting.OUTBOX.flush(10)
        silent.wait_for(1, timeout=20)
        eventually(lambda: worker_metric(celery_worker, failed) >= before + 5, 20,
                   "the refused deliveries given up (the rest wait for the storm summary)")


def test_200_notices_become_a_few_messages_and_one_summary_per_window(
        celery_worker, namespace, notify_settings, secret, sinks):
    hook = sinks["webhook"]
    secret("hook", hook.url, signing="k")
    window, threshold = 10, 5
    notify_settings(HEADWIND_NOTIFY_STORM_WINDOW=str(window),
                    HEADWIND_NOTIFY_STORM_THRESHOLD=str(threshold))
    while time.time() % window > 2:  # start early in a window: most likely all 200 in one
        time.sleep(0.1)
    for index in range(200):
        emit(namespace, "webhook=secret:hook", name=f"web-{index:03d}",
             event=notify.Event.UPDATE_DETECTED)

    def settled():
        summaries = [r.json() for r in hook.received if r.json()["event"] == "summary"]
        single = [r.json() for r in hook.received if r.json()["event"] != "summary"]
        return (summaries, single) if len(single) + sum(s["count"] for s in summaries) >= 200 \
            else None

    summaries, single = eventually(settled, 60, lambda: f"{len(hook.received)} messages",
                                   interval=0.5)
    time.sleep(window / 2 + 3)  # nothing more may come (a second summary would, by now)
    assert all(verify(r.body, r.header("X-Headwind-Signature"), "k") for r in hook.received)
    windows = [s["window"]["start"] for s in summaries]
    assert len(windows) == len(set(windows)), "a window summarised twice"
    assert 1 <= len(summaries) <= 2 and threshold <= len(single) <= threshold * 2
    assert len(single) + sum(s["count"] for s in summaries) == 200
    assert len({m["target"]["name"] for m in single}) == len(single)
    assert len(hook.received) == len(single) + len(summaries)
    for summary in summaries:
        assert len(summary["items"]) == min(20, summary["count"])
        assert summary["omitted"] == summary["count"] - len(summary["items"])
        assert summary["title"].startswith(f"{summary['count']} more notifications")
    held = worker_metric(celery_worker, 'headwind_notifications_held_total{channel="webhook"}')
    assert held >= 200 - len(single)


# --- the storm bookkeeping's atomic steps, on the testbed's Redis ------------------------------


@pytest.fixture
def store(testbed):
    yield storm.Store.shared()


def test_concurrent_gates_send_exactly_the_threshold(store, namespace):
    dest = f"webhook@{namespace}/race"
    keys = [f"n{i}" for i in range(100)]

    def gate(key):
        return store.gate(dest, key, {"name": key}, threshold=5, window=3600)

    with ThreadPoolExecutor(8) as pool:
        decisions = dict(zip(keys, [d for d, _ in pool.map(gate, keys)], strict=True))
    assert sorted(decisions.values()).count("send") == 5
    assert list(decisions.values()).count("first") == 1
    assert list(decisions.values()).count("held") == 94
    with ThreadPoolExecutor(8) as pool:  # redelivered tasks get their decisions back
        again = dict(zip(keys, [d for d, _ in pool.map(gate, keys)], strict=True))
    assert again == decisions
    start = gate("n0")[1]
    state, held, items = store.claim(dest, start, "token-a")
    assert (state, held, len(items)) == ("go", 95, storm.MAX_ITEMS)
    assert gate("late-comer")[0] == "late"  # the window is closed: sent on its own


def test_summary_claims_survive_a_killed_worker_and_never_send_twice(store, namespace):
    dest, start = f"slack@{namespace}/claims", 1_000_000
    assert store.claim(dest, start, "A", claim_seconds=1)[0] == "go"
    assert store.claim(dest, start, "A", claim_seconds=1)[0] == "go"  # A redelivered
    state, left_ms, _ = store.claim(dest, start, "B", claim_seconds=1)
    assert state == "busy" and 0 < left_ms <= 1000  # B waits for A
    time.sleep(1.2)  # A's worker was killed mid-send: its claim lapses
    assert store.claim(dest, start, "B", claim_seconds=5)[0] == "go"  # B takes over
    assert store.claim(dest, start, "A", claim_seconds=5)[0] == "busy"
    store.finish(dest, start, "B", "sent")
    assert store.claim(dest, start, "A")[0] == "done"  # nothing is sent a second time
    assert store.claim(dest, start, "C")[0] == "done"


def test_parallel_claimers_get_one_owner(store, namespace):
    dest, start = f"teams@{namespace}/parallel", 2_000_000
    barrier = threading.Barrier(8)

    def claim(token):
        barrier.wait()
        return store.claim(dest, start, token)[0]

    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(claim, [f"t{i}" for i in range(8)]))
    assert states.count("go") == 1 and states.count("busy") == 7


def test_a_delivery_is_made_once_per_notice_and_destination(store, namespace):
    dest = f"webhook@{namespace}/once"
    assert store.begin(dest, "n1", "task-1") == "go"
    assert store.begin(dest, "n1", "task-1") == "go"  # the same task, redelivered
    assert store.begin(dest, "n1", "task-2") == "sending:task-1"  # a duplicate waits out
    store.release(dest, "n1", "task-1")  # a transient failure: the retry may go again
    assert store.begin(dest, "n1", "task-2") == "go"
    store.done(dest, "n1", "sent")
    assert store.begin(dest, "n1", "task-3") == "sent"
    assert store.begin(dest, "n2", "task-3") == "go"  # another notice is another delivery
