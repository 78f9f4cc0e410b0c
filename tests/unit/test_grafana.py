"""deploy/grafana/headwind.json is a valid Grafana 10+ dashboard whose every expression names
metrics Headwind really defines; every metric Headwind defines is in docs/metrics.md; and the
docs say what became of each of the original operator's metrics.

The defined metrics are what the ``prometheus_client`` registry holds once every module of
Headwind that imports ``prometheus_client`` is imported (found by reading the sources, so a new
metrics module is not forgotten), plus django-prometheus's.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "headwind.json"
DOCS = REPO_ROOT / "docs" / "metrics.md"
PACKAGES = ("operator_app", "registry", "approvals", "headwind_site")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("", "_sum", "_count"), "info": ("_info",), "stateset": ("",),
            "gaugehistogram": ("_bucket", "_gsum", "_gcount"), "unknown": ("",)}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan", "atan2"}
_ROW = re.compile(r"^\| `(headwind_\w+)` \| (counter|gauge|histogram) \|")


def _metric_modules() -> list[str]:
    modules = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            if re.search(r"^\s*(from|import) prometheus_client", path.read_text(), re.M):
                modules.append(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts))
    return modules


@pytest.fixture(scope="module")
def families() -> dict[str, str]:
    """Every registered metric family: name -> type."""
    modules = _metric_modules()
    assert "operator_app.metrics" in modules and "registry.metrics" in modules
    for module in modules + ["django_prometheus.exports"]:
        importlib.import_module(module)
    return {family.name: family.type for family in REGISTRY.collect()}


@pytest.fixture(scope="module")
def sample_names(families) -> set[str]:
    """The names a PromQL expression can use: ``_total``, ``_bucket``, ``_sum``, ``_count``."""
    return {name + suffix for name, kind in families.items() for suffix in SUFFIXES[kind]}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (not functions, keywords, labels or ranges)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group()
        if re.match(r"\s*\(", text[match.end():]) or word.lower() in PROMQL_WORDS:
            continue  # a function or an aggregation, or a keyword
        names.add(word)
    return names


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels") or [])  # a collapsed row holds its panels
    return found


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in panels(dashboard)
            for target in panel.get("targets") or []]


# --------------------------------------------------------------------------------------------


def test_the_expression_parser():
    assert metric_names('histogram_quantile(0.95, sum by (le) (rate('
                        'headwind_event_decision_seconds_bucket{namespace=~"$namespace"}'
                        '[$__rate_interval])))') == {"headwind_event_decision_seconds_bucket"}
    assert metric_names("sum(max by (kind, namespace) (headwind_updates_pending)) or vector(0)"
                        ) == {"headwind_updates_pending"}
    assert metric_names('a_total / on (kind) group_left b_total offset 5m') == {"a_total",
                                                                               "b_total"}
    assert metric_names('sum without (instance) (x{outcome!="ok", job=~"a|b"})') == {"x"}


def test_every_expression_names_metrics_that_exist(dashboard, sample_names):
    unknown = []
    for title, expr in expressions(dashboard):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        unknown += [f"{title}: {name}" for name in sorted(names - sample_names)]
    assert not unknown, "\n".join(unknown)


def test_template_variables_query_metrics_that_exist(dashboard, sample_names):
    """A variable such as ``$namespace`` is filled by ``label_values(<metric>, <label>)``: a
    renamed metric would leave it empty, and every panel filtered by it blank."""
    queries = [v for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert queries
    for variable in queries:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) \
            else variable["query"]
        match = re.fullmatch(r"label_values\((\w+)(?:\{[^}]*\})?,\s*(\w+)\)", query.strip())
        assert match, f"${variable['name']}: {query!r}"
        assert match.group(1) in sample_names, query
        assert variable["definition"] == query, variable["name"]


def test_histogram_quantiles_read_buckets(dashboard):
    for title, expr in expressions(dashboard):
        if "histogram_quantile" in expr:
            assert "_bucket" in expr and re.search(r"by \([^)]*\ble\b", expr), (title, expr)


def test_the_dashboard_covers_what_operators_ask(dashboard):
    used = set().union(*(metric_names(expr) for _, expr in expressions(dashboard)))
    for needed in ("headwind_updates_applied_total", "headwind_updates_failed_total",
                   "headwind_updates_pending", "headwind_updates_pending_oldest_seconds",
                   "headwind_event_decision_seconds_bucket", "headwind_webhook_events_total",
                   "headwind_polling_requests_total", "headwind_polling_errors_total",
                   "headwind_notifications_sent_total", "headwind_notifications_failed_total",
                   "headwind_rollouts_total", "headwind_rollbacks_automatic_total",
                   "headwind_rollbacks_manual_total", "headwind_versions_behind",
                   "headwind_running_version_age_seconds",
                   "headwind_radar_series_dropped_total"):
        assert needed in used, needed


def test_a_valid_grafana_10_dashboard(dashboard):
    assert dashboard["title"] and dashboard["uid"]
    assert dashboard["schemaVersion"] >= 37  # Grafana 10.0 writes 37/38
    assert "__inputs" not in dashboard and "${DS_" not in DASHBOARD.read_text()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = variables["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")

    ids = [panel["id"] for panel in panels(dashboard)]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "gauge", "bargauge", "table"}
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, f"{panel['title']}: no targets"
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["expr"].strip() and target["datasource"] == DATASOURCE, panel["title"]


def test_no_datasource_is_hard_coded(dashboard):
    """Every ``datasource`` anywhere (panels, targets, variables) is the chosen one."""
    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource":
                    assert value == DATASOURCE, value
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)


def test_every_registered_metric_is_documented(families):
    """docs/metrics.md lists every headwind_* metric with its type, and nothing else."""
    documented = {}
    for line in DOCS.read_text().splitlines():
        if match := _ROW.match(line):
            name, kind = match.groups()
            family = name.removesuffix("_total") if kind == "counter" else name
            documented[family] = kind
    registered = {name: kind for name, kind in families.items() if name.startswith("headwind_")}
    assert set(registered) - set(documented) == set(), "registered but not in docs/metrics.md"
    assert set(documented) - set(registered) == set(), "documented but not defined"
    assert {n: k for n, k in registered.items() if documented[n] != k} == {}


#: The original (Rust) operator's 40 metrics (its inventory, section 14).
ORIGINAL = """
webhook_events_total webhook_events_processed updates_pending updates_approved_total
updates_rejected_total updates_applied_total updates_failed_total
updates_skipped_interval_total reconcile_duration_seconds reconcile_errors_total
deployments_watched statefulsets_watched daemonsets_watched helm_releases_watched
polling_cycles_total polling_errors_total polling_images_checked_total
polling_new_tags_found_total polling_helm_charts_checked_total
polling_helm_new_versions_found_total polling_resources_filtered_total
helm_chart_versions_checked_total helm_updates_found_total helm_updates_approved_total
helm_updates_rejected_total helm_updates_applied_total helm_repository_queries_total
helm_repository_errors_total helm_repository_query_duration_seconds rollbacks_total
rollbacks_manual_total rollbacks_automatic_total rollbacks_failed_total
deployment_health_checks_total deployment_health_failures_total notifications_sent_total
notifications_failed_total notifications_slack_sent_total notifications_teams_sent_total
notifications_webhook_sent_total""".split()


def test_every_original_metric_is_accounted_for(families):
    """Each of the original operator's metrics has a row in the docs' last table, saying what
    became of it; one it says is kept under the same name is really defined here."""
    assert len(ORIGINAL) == 40
    text = DOCS.read_text()
    table = text[text.index("## The original operator's metrics"):]
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `headwind_"):
            original, here = line.strip("|").split(" | ", 1)
            for name in re.findall(r"`(headwind_\w+)`", original):
                rows[name.removeprefix("headwind_")] = here
    assert set(rows) == set(ORIGINAL)
    kept = [name for name, here in rows.items() if here.strip().startswith("same name")]
    assert len(kept) >= 25
    for name in kept:
        assert f"headwind_{name}".removesuffix("_total") in families, name
