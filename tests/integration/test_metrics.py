"""Every metric in docs/metrics.md, scraped from the processes that export it, after a realistic
run of a whole installation on the testbed (its own web, operator, worker and ``run_poller``
processes, Redis database and webhook token; tests/testbed/installation.py):

* registry pushes relayed to the web process's ``/webhook/registry`` and verified by the
  operator against the registry, with a pull secret;
* an update applied directly that fails its rollout and is rolled back automatically;
* an approval through the REST API, then a manual rollback through the REST API;
* a proposal superseded by a newer one, a rejection, a request left pending, one that expires;
* an approval written with kubectl (carried out by the leader) and a forged ``Approved`` that
  the leader refuses;
* an update deferred by ``min-update-interval`` whose target is deleted meanwhile (failed);
* polling: a new tag, a chart version in an HTTP repository, a repository that does not
  exist, a host that refuses connections, a registry that reports ``RateLimit-Remaining``;
* notifications to a receiver that accepts, one that refuses, and a storm threshold;
* a malformed stream entry that the operator cannot handle;
* the update radar limited to one exported slot (``HEADWIND_RADAR_SERIES_LIMIT=1``).

Then, for every documented metric: its family is on the page of each process its row names,
the samples carry exactly the documented labels, and the path moved it where it must
(``expectations``). Renaming a metric, dropping it from a process or from the docs fails here.

The session's own operators and worker (``operators``, ``celery_worker``) watch the same
cluster: their leader may be the one that follows a rollout, expires a request or carries out
an approval (each of those is done once, by whichever leader gets there first), and queue the
rollback to its own worker. Counters are therefore summed over every process of a kind.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from operator_app import eventqueue, kube, proposals
from tests.testbed import cluster
from tests.testbed.installation import Process
from tests.waiting import eventually

from .test_admission import UR_RULES, write_status
from .test_engine_e2e import create, image_of, push_and_deliver, workload
from .test_helm import charts, helm_release, helm_repository, release_version
from .test_rollouts import wait_rollout

pytestmark = [pytest.mark.testbed, pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs" / "metrics.md"
PROCESSES = ("web", "operator", "worker", "poller")
_ROW = re.compile(r"^\| `(headwind_\w+)` \| (counter|gauge|histogram) \| ([^|]*) \| ([a-z, ]+) \|")

#: Documented metrics that no value assertion covers, and why. Their families must still be on
#: every process their row names.
PRESENCE_ONLY = {
    "headwind_watch_restarts_total": "moves only when the API server expires or breaks a watch",
    "headwind_rollouts_watched": "a gauge of the moment: back to 0 once the rollouts end",
    "headwind_rollbacks_failed_total": "needs the target to change between queueing a rollback "
                                       "and applying it (a race, not a path)",
    # The radar's series limit is 1 here (so that the drop counter moves), which leaves which
    # slot gets the one series to chance; their values are asserted on a running operator in
    # tests/integration/test_inventory.py::test_radar_shows_a_major_the_policy_blocks.
    "headwind_versions_behind": "values asserted in test_inventory.py (series limit 1 here)",
    "headwind_running_version_age_seconds": "values asserted in test_inventory.py",
}


# --------------------------------------------------------------------------------------------
# docs/metrics.md
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Documented:
    name: str  # as exposed: counters with _total
    type: str
    labels: frozenset[str]
    processes: frozenset[str]

    @property
    def family(self) -> str:
        """The name of the family on a scraped page (a counter's without ``_total``)."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name


def documented() -> dict[str, Documented]:
    """The metric tables of docs/metrics.md."""
    found: dict[str, Documented] = {}
    for line in DOCS.read_text().splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        name, kind, labels, processes = match.groups()
        assert name not in found, f"{name} is documented twice"
        where = frozenset(p.strip() for p in processes.split(","))
        assert where <= set(PROCESSES), f"{name}: unknown process in {processes!r}"
        found[name] = Documented(name, kind, frozenset(re.findall(r"`(\w+)`", labels)), where)
    return found


def family_of(sample: str, docs: dict[str, Documented]) -> str:
    families = {d.family: d for d in docs.values()}
    for suffix in ("", "_total", "_count", "_sum", "_bucket"):
        if sample.endswith(suffix) and sample.removesuffix(suffix) in families:
            return sample.removesuffix(suffix) if suffix else sample
    raise AssertionError(f"{sample} is not a sample of a documented metric")


# --------------------------------------------------------------------------------------------
# Scraping
# --------------------------------------------------------------------------------------------


@dataclass
class Page:
    """One process's /metrics: families by name, and their types."""

    url: str
    families: dict = field(default_factory=dict)

    @classmethod
    def read(cls, url: str) -> Page:
        text = requests.get(url, timeout=10).text
        return cls(url, {family.name: family for family in text_string_to_metric_families(text)})

    def samples(self, name: str, **labels: str) -> list[float]:
        values = []
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    values.append(sample.value)
        return values


@dataclass(frozen=True)
class Expect:
    process: str
    sample: str
    labels: dict
    at_least: float = 1.0
    exactly: float | None = None
    how: str = "sum"  # sum over every process of the kind; "max" for gauges; "mine" only ours

    def measure(self, pages: dict[str, list[tuple[bool, Page]]]) -> float | None:
        found = [value for mine, page in pages[self.process] if mine or self.how != "mine"
                 for value in page.samples(self.sample, **self.labels)]
        if not found:
            return None
        return max(found) if self.how == "max" else sum(found)

    def holds(self, value: float | None) -> bool:
        if self.exactly is not None:
            return value == self.exactly
        return value is not None and value >= self.at_least

    def describe(self, value: float | None) -> str:
        wanted = f"== {self.exactly}" if self.exactly is not None else f">= {self.at_least}"
        labels = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.process}: {self.sample}{{{labels}}} is {value}, expected {wanted}"


def expectations(ns: str, hosts: dict[str, str]) -> list[Expect]:
    """What the driven path must have moved, and where."""
    registry, charts_host = hosts["registry"], hosts["charts"]
    deploy, cron, helm = ({"kind": k, "namespace": ns} for k in
                          ("Deployment", "CronJob", "HelmRelease"))
    return [
        # web: webhooks, approvals and rejections through the REST API
        Expect("web", "headwind_webhook_events_total",
               {"source": "registry", "outcome": "accepted"}),
        Expect("web", "headwind_webhook_events_total",
               {"source": "registry", "outcome": "rejected_auth"}),
        Expect("web", "headwind_updates_approved_total", deploy, exactly=1),
        Expect("web", "headwind_updates_rejected_total", cron, exactly=1),
        Expect("web", "headwind_approval_wait_seconds_count", {"outcome": "approved"}),
        Expect("web", "headwind_approval_wait_seconds_count", {"outcome": "rejected"}),
        Expect("web", "headwind_notifications_sent_total",
               {"channel": "webhook", "event": "test"}, exactly=1),
        Expect("web", "headwind_notifications_failed_total",
               {"channel": "slack", "event": "test"}, exactly=1),
        Expect("web", "django_http_requests_total_by_view_transport_method_total", {}),
        # operator: verification, decisions, proposals, the leader's passes, rollouts
        Expect("operator", "headwind_webhook_verifications_total",
               {"registry": registry, "outcome": "verified"}),
        Expect("operator", "headwind_events_processed_total", {"source": "webhook"}),
        Expect("operator", "headwind_event_errors_total", {"outcome": "retried"}, how="mine"),
        Expect("operator", "headwind_event_decision_seconds_count", {}),
        Expect("operator", "headwind_decisions_total", {**deploy, "outcome": "update"}),
        Expect("operator", "headwind_decisions_total", {**deploy, "outcome": "approval"}),
        Expect("operator", "headwind_decisions_total", {**cron, "outcome": "approval"},
               at_least=6),
        Expect("operator", "headwind_decisions_total", {**cron, "outcome": "source_ignored"}),
        Expect("operator", "headwind_decisions_total", {**cron, "outcome": "unchanged"}),
        Expect("operator", "headwind_update_requests_created_total", deploy),
        Expect("operator", "headwind_update_requests_created_total", cron, at_least=6),
        Expect("operator", "headwind_update_requests_superseded_total", cron),
        Expect("operator", "headwind_update_requests_expired_total", cron),
        Expect("operator", "headwind_updates_pending", cron, exactly=1, how="max"),
        Expect("operator", "headwind_updates_pending_oldest_seconds", cron, at_least=0.001,
               how="max"),
        Expect("operator", "headwind_updates_approved_total", cron),  # kubectl
        Expect("operator", "headwind_approval_wait_seconds_count", {"outcome": "approved"}),
        Expect("operator", "headwind_approvals_unattributed_total", {"namespace": ns}),
        Expect("operator", "headwind_workloads_watched", {"kind": "Deployment"}, at_least=3,
               how="max"),
        Expect("operator", "headwind_helm_releases_watched", {}, at_least=2, how="max"),
        Expect("operator", "headwind_leader", {}, exactly=1, how="mine"),
        Expect("operator", "headwind_rollouts_total", {**deploy, "outcome": "failed"}),
        Expect("operator", "headwind_rollouts_total", {**deploy, "outcome": "succeeded"}),
        Expect("operator", "headwind_deployment_health_checks_total", {"kind": "Deployment"}),
        Expect("operator", "headwind_deployment_health_failures_total", {"kind": "Deployment"}),
        Expect("operator", "headwind_radar_series_dropped_total", {}, how="mine"),
        # worker: updates, rollbacks, notifications
        Expect("worker", "headwind_updates_applied_total", deploy, at_least=2),
        Expect("worker", "headwind_updates_applied_total", cron, at_least=2),
        Expect("worker", "headwind_updates_applied_total", helm),
        Expect("worker", "headwind_helm_updates_applied_total", {"namespace": ns}),
        Expect("worker", "headwind_updates_skipped_interval_total", cron),
        Expect("worker", "headwind_updates_failed_total", cron),
        Expect("worker", "headwind_rollbacks_total", deploy, at_least=2),
        Expect("worker", "headwind_rollbacks_automatic_total", {"namespace": ns}),
        Expect("worker", "headwind_rollbacks_manual_total", {"namespace": ns}),
        Expect("worker", "headwind_rollback_seconds_count", {}),
        # app's update came from a relayed push: its hops were timed, delivery to patch
        *(Expect("worker", "headwind_update_hop_seconds_count", {"hop": hop}, how="mine")
          for hop in ("queued", "read", "verified", "decided", "started", "patched", "total")),
        Expect("worker", "headwind_notifications_sent_total", {"channel": "webhook"}),
        Expect("worker", "headwind_notifications_failed_total", {"channel": "slack"}),
        Expect("worker", "headwind_notifications_held_total", {}),
        # poller: cycles, requests, errors, charts, and the decisions they lead to
        Expect("poller", "headwind_leader", {}, exactly=1, how="mine"),
        Expect("poller", "headwind_polling_cycles_total", {}, at_least=2),
        Expect("poller", "headwind_polling_cycle_seconds_count", {}, at_least=2),
        Expect("poller", "headwind_polling_requests_total",
               {"registry": registry, "kind": "tags", "outcome": "ok"}),
        Expect("poller", "headwind_polling_requests_total",
               {"registry": hosts["dead"], "outcome": "connection_error"}),
        Expect("poller", "headwind_polling_images_checked_total", {"registry": registry}),
        Expect("poller", "headwind_polling_new_tags_found_total", {"registry": registry}),
        Expect("poller", "headwind_polling_errors_total", {"registry": registry}),
        Expect("poller", "headwind_polling_errors_total", {"registry": hosts["dead"]}),
        Expect("poller", "headwind_polling_backoffs_total", {"registry": hosts["dead"]}),
        Expect("poller", "headwind_registry_ratelimit_remaining", {"registry": hosts["limited"]},
               exactly=97, how="max"),
        Expect("poller", "headwind_polling_helm_charts_checked_total", {"registry": charts_host}),
        Expect("poller", "headwind_polling_helm_new_versions_found_total",
               {"registry": charts_host}),
        Expect("poller", "headwind_helm_repository_queries_total",
               {"type": "http", "outcome": "ok"}),
        Expect("poller", "headwind_helm_repository_errors_total", {"type": "http"}),
        Expect("poller", "headwind_helm_repository_query_duration_seconds_count",
               {"type": "http"}, at_least=2),
        Expect("poller", "headwind_events_processed_total", {"source": "polling"}),
        Expect("poller", "headwind_decisions_total", {**cron, "outcome": "update"}),
        Expect("poller", "headwind_decisions_total", {**helm, "outcome": "update"}),
        Expect("poller", "headwind_helm_chart_versions_checked_total", {"namespace": ns},
               at_least=2),
        Expect("poller", "headwind_helm_updates_found_total", {"namespace": ns}),
    ]


def test_every_documented_metric_is_asserted_or_excused():
    """A metric added to docs/metrics.md needs a path here that moves it, or a reason."""
    docs = documented()
    assert len(docs) >= 50, "docs/metrics.md: the metric tables were not found"
    covered = {family_of(e.sample, docs) for e in expectations("ns", {
        "registry": "r", "charts": "c", "dead": "d", "limited": "l"})
        if e.sample.startswith("headwind_")}
    by_family = {d.family: name for name, d in docs.items()}
    uncovered = {by_family[f] for f in by_family} - {by_family[f] for f in covered}
    assert uncovered - set(PRESENCE_ONLY) == set()
    assert set(PRESENCE_ONLY) <= set(docs)
    for expect in expectations("ns", {"registry": "r", "charts": "c", "dead": "d",
                                      "limited": "l"}):
        if expect.sample.startswith("headwind_"):
            doc = docs[by_family[family_of(expect.sample, docs)]]
            assert expect.process in doc.processes, (expect.sample, doc.processes)
            assert set(expect.labels) <= doc.labels, (expect.sample, doc.labels)


# --------------------------------------------------------------------------------------------
# Stand-ins: a notification receiver, a registry that reports its rate limit
# --------------------------------------------------------------------------------------------


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Receiver(BaseHTTPRequestHandler):
    """``/hook`` accepts notifications (200), ``/slack`` refuses them for good (404)."""

    received: list[str] = []

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append(self.path)
        self.send_response(200 if self.path == "/hook" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _RateLimitedRegistry(BaseHTTPRequestHandler):
    """A registry with one tag per repository that sends Docker Hub's rate-limit header."""

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("RateLimit-Limit", "100;w=21600")
        self.send_header("RateLimit-Remaining", "97;w=21600")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/v2/":
            self._answer(200, {})
        elif path.startswith("/v2/") and path.endswith("/tags/list"):
            self._answer(200, {"name": path[4:-10], "tags": ["1.0.0"]})
        else:
            self._answer(404, {"errors": [{"code": "MANIFEST_UNKNOWN"}]})

    do_HEAD = do_GET  # noqa: N815


# --------------------------------------------------------------------------------------------
# The installation under test
# --------------------------------------------------------------------------------------------


@dataclass
class Scene:
    bed: object
    ns: str
    hosts: dict[str, str]
    pages: dict[str, list[tuple[str, bool]]]  # process kind -> [(metrics URL, ours?)]

    def page(self, process: str) -> Page:
        """Our own process of that kind."""
        return Page.read(next(url for url, mine in self.pages[process] if mine))

    def read_all(self) -> dict[str, list[tuple[bool, Page]]]:
        return {process: [(mine, Page.read(url)) for url, mine in urls]
                for process, urls in self.pages.items()}


@pytest.fixture
def scene(installation, testbed, operators, celery_worker, notification_sink, namespace,
          registry_pull_access) -> Iterator[Scene]:
    receiver, limited = _serve(_Receiver), _serve(_RateLimitedRegistry)
    dead = cluster.free_port()
    token = testbed.notify_token  # what the registry's notifications carry, so they can be relayed
    bed = installation(operators=1, workers=1, verify=True, token=token, extra_env={
        "HEADWIND_WEBHOOK_URL": f"http://127.0.0.1:{receiver.server_address[1]}/hook",
        "HEADWIND_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{receiver.server_address[1]}/slack",
        "HEADWIND_NOTIFY_STORM_THRESHOLD": "3",
        "HEADWIND_NOTIFY_MAX_ATTEMPTS": "1",
        "HEADWIND_POLLING_INTERVAL": "2",
        "HEADWIND_EXPIRY_INTERVAL": "2",
        "HEADWIND_RADAR_SERIES_LIMIT": "1",
    })
    port = cluster.free_port()
    poller = Process("poller", [sys.executable, "manage.py", "run_poller", "--identity=poller-0",
                                f"--lease-namespace={bed.lease_namespace}"],
                     bed.env(HEADWIND_POLLER_METRICS_PORT=str(port)),
                     bed.directory / "poller.log", port)
    bed.processes["poller"] = poller
    bed.launch("poller")
    relayed, notification_sink.forward_to = (notification_sink.forward_to,
                                             f"{bed.web_url}/webhook/registry")

    def local(process) -> str:
        return f"http://127.0.0.1:{process.metrics_port}/metrics"

    pages = {
        "web": [(f"{bed.web_url}/metrics", True)],
        "operator": [(local(bed.processes["operator-0"]), True)]
        + [(local(p), False) for p in operators["processes"]],
        "worker": [(local(bed.processes["worker-0"]), True), (local(celery_worker), False)],
        "poller": [(local(poller), True)],
    }
    hosts = {"registry": testbed.registry, "dead": f"127.0.0.1:{dead}",
             "limited": f"127.0.0.1:{limited.server_address[1]}",
             "charts": testbed.chart_repo_url.split("://", 1)[1].rstrip("/")}
    try:
        eventually(lambda: Page.read(local(poller)).samples("headwind_leader") == [1.0], 60,
                   lambda: f"run_poller leading:\n{poller.log()[-3000:]}", interval=0.3,
                   retry_on=(requests.ConnectionError,))
        yield Scene(bed, namespace, hosts, pages)
    finally:
        notification_sink.forward_to = relayed
        receiver.shutdown()
        limited.shutdown()


# --------------------------------------------------------------------------------------------
# Driving it
# --------------------------------------------------------------------------------------------

WEBHOOK = {"headwind.sh/policy": "minor", "headwind.sh/event-source": "webhook"}
DIRECT = {**WEBHOOK, "headwind.sh/require-approval": "false",
          "headwind.sh/min-update-interval": "0"}
POLLED = {"headwind.sh/policy": "minor", "headwind.sh/event-source": "polling",
          "headwind.sh/polling-interval": "2", "headwind.sh/require-approval": "false",
          "headwind.sh/min-update-interval": "0"}


def notification(host: str, repository: str, tag: str, digest: str) -> bytes:
    return json.dumps({"events": [{
        "id": f"probe-{repository}-{tag}-{time.monotonic_ns()}", "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "repository": repository, "tag": tag, "digest": digest},
        "request": {"host": host}}]}).encode()


def requests_for(kube_api, ns: str, target: str) -> list[dict]:
    items = kube.request(kube_api, "GET", f"/apis/{proposals.API_VERSION}/namespaces/{ns}/"
                                          f"{proposals.PLURAL}")["items"]
    return sorted((i for i in items if i["spec"]["targetRef"]["name"] == target),
                  key=lambda i: i["metadata"]["creationTimestamp"])


def request_for(kube_api, ns: str, target: str, new_tag: str, phase: str | None = None) -> dict:
    def found():
        for item in requests_for(kube_api, ns, target):
            if item["spec"]["newImage"].endswith(f":{new_tag}") and (
                    phase is None or proposals.phase_of(item).value == phase):
                return item
        return None

    return eventually(found, 60, lambda: f"an UpdateRequest for {target} → {new_tag} "
                      f"({phase or 'any phase'}): {requests_for(kube_api, ns, target)}",
                      interval=0.3)


def _csrf(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def decisions(page: Page, ns: str) -> float:
    return sum(page.samples("headwind_decisions_total", namespace=ns))


def test_every_documented_metric_is_exported_where_documented(
        scene, kube_api, testbed, push_image, notification_sink, kube_user, helm, chart_repo,
        tmp_path):
    from django.contrib.auth.models import User

    from approvals.auth import create_api_token
    from approvals.models import NamespaceGrant

    bed, ns, hosts = scene.bed, scene.ns, scene.hosts
    registry = hosts["registry"]
    image = {name: f"{registry}/{ns}/{name}" for name in
             ("app", "gated", "queue", "expiring", "slow", "forged", "signed", "polled")}
    first = {name: push_image(f"{ns}/{name}", "1.0.0") for name in image}

    # -- the workloads ---------------------------------------------------------------------
    auto = workload("Deployment", "app", f"{image['app']}:1.0.0", {
        **DIRECT, "headwind.sh/include-prerelease": "true", "headwind.sh/auto-rollback": "true"})
    # Two replicas, as in test_rollouts: with one, the Deployment controller keeps the broken
    # rollout's ProgressDeadlineExceeded through the rollback's first sync (nothing "progresses"
    # when the old ReplicaSet is already available), and the rollback reads as failed at once.
    auto["spec"].update(replicas=2, progressDeadlineSeconds=6)
    create(kube_api, ns, auto)
    create(kube_api, ns, workload("Deployment", "gated", f"{image['gated']}:1.0.0", WEBHOOK))
    for name in ("queue", "forged", "signed"):
        create(kube_api, ns, workload("CronJob", name, f"{image[name]}:1.0.0", WEBHOOK))
    create(kube_api, ns, workload("CronJob", "expiring", f"{image['expiring']}:1.0.0",
                                  {**WEBHOOK, "headwind.sh/approval-timeout": "1"}))
    stamp = proposals.rfc3339(datetime.now(UTC))
    create(kube_api, ns, workload("CronJob", "slow", f"{image['slow']}:1.0.0", {
        **DIRECT, "headwind.sh/min-update-interval": "45", "headwind.sh/last-update": stamp}))
    create(kube_api, ns, workload("CronJob", "polled", f"{image['polled']}:1.0.0", POLLED))
    create(kube_api, ns, workload("CronJob", "missing", f"{registry}/{ns}/missing:1.0.0",
                                  POLLED))
    create(kube_api, ns, workload("CronJob", "dead", f"{hosts['dead']}/x/app:1.0.0", POLLED))
    limited = workload("Deployment", "limited", f"{hosts['limited']}/lib/app:1.0.0", POLLED)
    limited["spec"]["replicas"] = 0
    create(kube_api, ns, limited)
    url = chart_repo.publish_http(f"public/{ns}", *charts(helm, tmp_path, "podinfo", "1.0.0"))
    helm_repository(kube_api, ns, "charts", url)
    helm_release(kube_api, ns, "podinfo", "podinfo", "1.0.0", "charts", POLLED)
    helm_repository(kube_api, ns, "gone", f"http://127.0.0.1:{cluster.free_port()}/charts")
    helm_release(kube_api, ns, "orphan", "podinfo", "1.0.0", "gone", POLLED)

    # -- wait until the operator knows them (a probe per repository is decided) and the poller
    # has read the polled ones once (so what comes next is new to it) --------------------------
    probes = [(name, first[name]) for name in image]

    def every_probe_decided() -> bool:
        before = decisions(scene.page("operator"), ns)
        for name, digest in probes:
            assert bed.deliver(notification(registry, f"{ns}/{name}", "1.0.0",
                                            digest)).status_code == 202
        bed.stream_drained()
        return decisions(scene.page("operator"), ns) - before >= len(probes)

    eventually(every_probe_decided, 90, lambda: "the operator deciding on every workload:\n"
               + bed.processes["operator-0"].log()[-3000:], interval=0.5)

    def polled_once() -> bool:
        page = scene.page("poller")
        return all(page.samples("headwind_decisions_total", kind=kind, namespace=ns,
                                outcome="unchanged") for kind in ("CronJob", "HelmRelease"))

    eventually(polled_once, 60, lambda: "the poller deciding on polled and podinfo:\n"
               + bed.processes["poller"].log()[-3000:], interval=0.5)

    # -- pushes, relayed by the registry's notifications to the web process ------------------
    push_and_deliver(push_image, notification_sink, f"{ns}/app", "1.1.0-broken")
    for name in ("gated", "queue", "expiring", "forged", "signed", "slow", "polled"):
        push_and_deliver(push_image, notification_sink, f"{ns}/{name}", "1.1.0")
    chart_repo.publish_http(f"public/{ns}", *charts(helm, tmp_path, "podinfo", "1.1.0"))
    wrong = requests.post(f"{bed.web_url}/webhook/registry", data=b"{}", timeout=10,
                          headers={"Authorization": "Bearer not-the-token",
                                   "Content-Type": "application/json"})
    assert wrong.status_code in (401, 403)

    # -- approvals: the REST API, kubectl, a forgery ---------------------------------------
    gated = request_for(kube_api, ns, "gated", "1.1.0", "Pending")
    eventually(lambda: Expect("operator", "headwind_updates_pending",
                              {"kind": "Deployment", "namespace": ns}, exactly=1,
                              how="max").measure(scene.read_all()) == 1, 30,
               "headwind_updates_pending counting gated's request", interval=0.3)
    password = secrets.token_urlsafe(16)
    admin = User.objects.create_superuser("metrics-admin", password=password)
    NamespaceGrant.objects.create(user=admin, pattern="*")
    _, key = create_api_token(admin, "metrics")
    api = requests.Session()
    api.headers.update({"Authorization": f"Token {key}", "Content-Type": "application/json"})
    response = api.post(f"{bed.web_url}/api/v1/updates/{ns}/{gated['metadata']['name']}/approve",
                        data=json.dumps({"comment": "ok"}), timeout=30)
    assert response.status_code == 200, response.text

    forged = request_for(kube_api, ns, "forged", "1.1.0", "Pending")
    write_status(kube_api, ns, forged["metadata"]["name"], lambda status: {
        **status, "phase": "Approved", "approvedBy": "nobody",
        "approvedAt": proposals.rfc3339(datetime.now(UTC))})
    approver = kube_user("approver", [*UR_RULES, {"apiGroups": ["batch"],
                                                  "resources": ["cronjobs"],
                                                  "verbs": ["get", "patch"]}])
    signed = request_for(kube_api, ns, "signed", "1.1.0", "Pending")
    write_status(approver.api, ns, signed["metadata"]["name"], lambda status: {
        **status, "approvals": [{"user": approver.username,
                                 "at": proposals.rfc3339(datetime.now(UTC))}]})

    # -- a proposal superseded, a rejection, one left pending ------------------------------
    request_for(kube_api, ns, "queue", "1.1.0")
    push_and_deliver(push_image, notification_sink, f"{ns}/queue", "1.2.0")
    request_for(kube_api, ns, "queue", "1.1.0", "Superseded")
    newer = request_for(kube_api, ns, "queue", "1.2.0", "Pending")
    response = api.post(f"{bed.web_url}/api/v1/updates/{ns}/{newer['metadata']['name']}/reject",
                        data=json.dumps({"reason": "not this one"}), timeout=30)
    assert response.status_code == 200, response.text
    push_and_deliver(push_image, notification_sink, f"{ns}/queue", "1.3.0")
    request_for(kube_api, ns, "queue", "1.3.0", "Pending")

    # -- the approved update is applied, then rolled back by hand --------------------------
    eventually(lambda: image_of(kube_api, ns, "Deployment", "gated") == f"{image['gated']}:1.1.0",
               60, "gated updated to 1.1.0", interval=0.3)
    response = api.post(f"{bed.web_url}/api/v1/workloads/{ns}/Deployment/gated/rollback",
                        data=json.dumps({"container": "app", "to": "1.0.0"}), timeout=30)
    assert response.status_code == 202, response.text

    # -- the deferred update loses its target ------------------------------------------------
    eventually(lambda: Expect("worker", "headwind_updates_skipped_interval_total",
                              {"kind": "CronJob", "namespace": ns}).measure(scene.read_all()),
               40, "the update of slow deferred", interval=0.3)
    kube.request(kube_api, "DELETE", f"/apis/batch/v1/namespaces/{ns}/cronjobs/slow")

    # -- everything reaches its end ------------------------------------------------------------
    wait_rollout(kube_api, ns, "Deployment", "app", "succeeded", to=f"{image['app']}:1.0.0",
                 timeout=120)
    eventually(lambda: image_of(kube_api, ns, "Deployment", "gated") == f"{image['gated']}:1.0.0",
               60, "gated rolled back to 1.0.0", interval=0.3)
    eventually(lambda: image_of(kube_api, ns, "CronJob", "polled") == f"{image['polled']}:1.1.0",
               60, lambda: "polled updated by the poller:\n"
               + bed.processes["poller"].log()[-3000:], interval=0.3)
    eventually(lambda: release_version(kube_api, ns, "podinfo") == "1.1.0", 60,
               "podinfo's chart version written", interval=0.3)
    eventually(lambda: image_of(kube_api, ns, "CronJob", "signed") == f"{image['signed']}:1.1.0",
               60, "signed applied after its kubectl approval", interval=0.3)
    request_for(kube_api, ns, "expiring", "1.1.0", "Expired")
    request_for(kube_api, ns, "forged", "1.1.0", "Failed")

    # -- the admin's "send test notification" buttons, in the web process --------------------
    browser = requests.Session()
    login = f"{bed.web_url}/admin/login/?next=/admin/"
    response = browser.post(login, timeout=30, data={
        "username": "metrics-admin", "password": password, "next": "/admin/",
        "csrfmiddlewaretoken": _csrf(browser.get(login, timeout=30).text)})
    assert response.ok and "/admin/login/" not in response.url, response.text[-2000:]
    buttons = f"{bed.web_url}/admin/approvals/updaterequest/notifications/"
    token = _csrf(browser.get(buttons, timeout=30).text)
    for channel in ("webhook", "slack"):
        response = browser.post(buttons, data={"channel": channel, "csrfmiddlewaretoken": token},
                                allow_redirects=False, timeout=30)
        assert response.status_code == 302, response.text[-2000:]

    # -- a stream entry the operator cannot read -----------------------------------------------
    broken = redis.Redis.from_url(bed.redis_url)
    try:
        broken.xadd(eventqueue.STREAM, {"junk": "1"})
    finally:
        broken.close()

    # -- what the processes export -------------------------------------------------------------
    docs = documented()
    wanted = expectations(ns, hosts)

    def unmet() -> list[str]:
        pages = scene.read_all()
        return [e.describe(value) for e in wanted
                if not e.holds(value := e.measure(pages))]

    eventually(lambda: not unmet(), 90,
               lambda: "metrics not moved as the path must:\n" + "\n".join(unmet()), interval=1)

    pages = scene.read_all()
    missing, mislabelled = [], []
    for doc in docs.values():
        for process in sorted(doc.processes):
            for mine, page in pages[process]:
                if not mine:
                    continue
                family = page.families.get(doc.family)
                if family is None or family.type != doc.type:
                    missing.append(f"{doc.name} ({doc.type}) not exported by {process}")
                    continue
                for sample in family.samples:
                    names = set(sample.labels) - {"le"}
                    if names != doc.labels:
                        mislabelled.append(f"{process}: {sample.name} has labels "
                                           f"{sorted(names)}, documented {sorted(doc.labels)}")
                        break
    assert not missing, "\n".join(missing)
    assert not mislabelled, "\n".join(mislabelled)
    # The radar exports at most HEADWIND_RADAR_SERIES_LIMIT (1) slots.
    radar = scene.page("operator")
    slots = {(s.labels["namespace"], s.labels["kind"], s.labels["name"], s.labels["container"])
             for name in ("headwind_versions_behind", "headwind_running_version_age_seconds")
             for s in radar.families[name].samples}
    assert len(slots) <= 1, slots
    assert _Receiver.received, "no notification reached the receiver"
