"""The Django side of the foundation: probes, metrics, settings safety, run_operator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_healthz_and_readyz(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_metrics_are_prometheus_text(client, db):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests_total_by_method_total" in response.content


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if k not in {"SECRET_KEY", "HEADWIND_DEV", "DEBUG", "DJANGO_SETTINGS_MODULE"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env={**base, **env},
        capture_output=True, text=True, timeout=60,
    )


def test_secret_key_is_required_outside_development():
    proc = _manage("check", env={})
    assert proc.returncode != 0
    assert "SECRET_KEY is required" in proc.stderr


def test_run_operator_without_a_cluster_fails_cleanly(tmp_path):
    proc = _manage("run_operator", env={"HEADWIND_DEV": "true",
                                        "KUBECONFIG": str(tmp_path / "missing")})
    assert proc.returncode == 1
    assert "cannot reach a Kubernetes cluster" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_operator_with_an_unreachable_server_fails_cleanly(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    proc = _manage("run_operator", env={"HEADWIND_DEV": "true", "KUBECONFIG": str(kubeconfig)})
    assert proc.returncode == 1
    assert "https://127.0.0.1:1 is not reachable" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.testbed
def test_run_operator_reports_the_cluster_it_reached(testbed):
    proc = _manage("run_operator", "--check",
                   env={"HEADWIND_DEV": "true", "KUBECONFIG": testbed.kubeconfig})
    assert proc.returncode == 0, proc.stderr
    assert f"connected to {testbed.apiserver_url}" in proc.stdout
    assert f"Kubernetes v{testbed.kubernetes_version}" in proc.stdout
