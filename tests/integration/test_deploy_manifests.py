"""The deploy artefacts (deploy/manifests/, deploy/helm/headwind/) against the real API server.

- every manifest object passes a server-side dry run with strict field validation, and every
  Deployment's pod passes the "restricted" Pod Security profile its Namespace enforces;
  created for real (kwok runs the pods), the Services find their pods on the right ports;
- every environment variable they set is read by the code (a typo fails);
- the Secret template holds no values, and Django refuses to start on it as it is;
- both default to PostgreSQL: with their configuration (the server moved to the testbed's),
  Django connects to a real PostgreSQL and ``/readyz`` answers; the chart refuses SQLite;
- the Helm chart: its templates reference only values that exist, its CRD is deploy/crds/'s,
  ``helm lint --strict`` of the real helm (tests/testbed/tools/helm, the ``helm`` fixture)
  passes for every tested set of values, and ``helm template`` renders it for the testbed's
  Kubernetes version: the rendered objects get the same dry run and checks as the manifests.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from operator_app import kube
from registry.webhooks import PARSERS
from tests.testbed.build import KUBERNETES_VERSION
from tests.waiting import eventually

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "manifests"
CHART = ROOT / "deploy" / "helm" / "headwind"
CRD = ROOT / "deploy" / "crds" / "updaterequests.headwind.sh.yaml"
CODE = [ROOT / "headwind_site", ROOT / "registry", ROOT / "operator_app",
        ROOT / "approvals"]
IMAGE = "ghcr.io/headwind-sh/headwind:0.1.0"

PLURALS = {
    "Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "ConfigMap": "configmaps",
    "Secret": "secrets", "Service": "services", "Pod": "pods", "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets", "Ingress": "ingresses",
    "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles", "RoleBinding": "rolebindings",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


# --- talking to the API server -----------------------------------------------------------------


def collection_path(doc: dict, namespace: str) -> str:
    """Derived from the object's own apiVersion, so a wrong group/version is the server's 404."""
    version = doc["apiVersion"]
    prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
    plural = PLURALS[doc["kind"]]  # a new kind: add it here
    if doc["kind"] in CLUSTER_SCOPED:
        return f"{prefix}/{plural}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


def dry_run(api, doc: dict, namespace: str) -> dict:
    """Create without persisting; unknown or duplicate fields are errors, not warnings."""
    try:
        return kube.request(api, "POST", collection_path(doc, namespace), body=doc,
                            query={"dryRun": "All", "fieldValidation": "Strict"})
    except kube.KubeError as exc:
        raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {exc}") from None


def enforce_namespace_labels(api, namespace: str, labels: dict) -> None:
    kube.request(api, "PATCH", f"/api/v1/namespaces/{namespace}",
                 body={"metadata": {"labels": labels}},
                 content_type="application/merge-patch+json")


def pod_of(deployment: dict) -> dict:
    template = deployment["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{deployment['metadata']['name']}-pod",
                         "labels": template["metadata"]["labels"]},
            "spec": template["spec"]}


def check_against_cluster(api, docs: list[dict], namespace: str) -> None:
    """Dry-run every object; then, with its ServiceAccount created for real (admission looks it
    up), every Deployment's pod under the restricted Pod Security profile."""
    for doc in docs:
        accepted = dry_run(api, doc, namespace)
        assert (accepted["kind"], accepted["metadata"]["name"]) == (
            doc["kind"], doc["metadata"]["name"])
    enforce_namespace_labels(api, namespace, {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest"})
    # The profile is really enforced here: a pod without a security context is refused (the
    # admission plugin reads namespace labels from its informer, so allow it a moment).
    def refusal() -> kube.KubeError | None:
        try:
            kube.request(api, "POST", f"/api/v1/namespaces/{namespace}/pods",
                         query={"dryRun": "All"},
                         body={"metadata": {"name": "unsafe"},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        except kube.KubeError as exc:
            return exc
        return None

    refused = eventually(refusal, 15, "the restricted profile enforced", interval=0.2)
    assert refused.status == 403 and "PodSecurity" in refused.message
    for doc in docs:
        if doc["kind"] == "ServiceAccount":
            kube.request(api, "POST", collection_path(doc, namespace), body=doc)
    deployments = [doc for doc in docs if doc["kind"] == "Deployment"]
    assert len(deployments) == 3
    for deployment in deployments:
        pod = dry_run(api, pod_of(deployment), namespace)
        assert pod["spec"]["serviceAccountName"] == deployment["spec"]["template"]["spec"][
            "serviceAccountName"]


# --- the manifests ------------------------------------------------------------------------------


def manifest_docs() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def manifests_for(namespace: str) -> list[dict]:
    """All manifest objects moved into ``namespace``; cluster-wide names get its suffix."""
    suffix = namespace[-6:]
    docs = []
    for _, doc in manifest_docs():
        doc = yaml.safe_load(json.dumps(doc).replace("headwind-system", namespace))
        if doc["kind"] in CLUSTER_SCOPED:
            doc["metadata"]["name"] += f"-{suffix}"
            if doc["kind"] == "ClusterRoleBinding":
                doc["roleRef"]["name"] += f"-{suffix}"
        docs.append(doc)
    return docs


def test_every_manifest_is_accepted_by_the_api_server(kube_api, namespace):
    docs = manifests_for(namespace)
    kinds = sorted({doc["kind"] for doc in docs})
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Namespace",
                     "PodDisruptionBudget", "Role", "RoleBinding", "Secret", "Service",
                     "ServiceAccount"]
    # The labels the shipped Namespace sets are the ones enforced in this test.
    (ns_doc,) = [doc for doc in docs if doc["kind"] == "Namespace"]
    assert ns_doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    check_against_cluster(kube_api, docs, namespace)


def test_the_services_reach_the_pods_they_name(kube_api, namespace):
    """Created for real (kwok runs the pods): the web Service finds the web pods on 8000, and the
    metrics Service's named port resolves to 9090 on the operators and 9091 on the worker."""
    docs = [doc for doc in manifests_for(namespace) if doc["kind"] not in CLUSTER_SCOPED]
    (ns_doc,) = [doc for doc in manifests_for(namespace) if doc["kind"] == "Namespace"]
    enforce_namespace_labels(kube_api, namespace, ns_doc["metadata"]["labels"])
    for doc in docs:
        kube.request(kube_api, "POST", collection_path(doc, namespace), body=doc)

    def endpoints() -> dict[tuple[str, int], int]:
        slices = kube.request(kube_api, "GET",
                              f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices")
        found: dict[tuple[str, int], int] = {}
        for item in slices["items"]:
            service = item["metadata"]["labels"]["kubernetes.io/service-name"]
            for port in item.get("ports") or []:
                ready = [e for e in item.get("endpoints") or []
                         if e.get("conditions", {}).get("ready")]
                key = (service, port["port"])
                found[key] = found.get(key, 0) + len(ready)
        return found

    wanted = {("headwind-web", 8000): 2, ("headwind-metrics", 9090): 2,
              ("headwind-metrics", 9091): 1}
    eventually(lambda: endpoints() == wanted, 60,
               lambda: f"ready endpoints {wanted} (found {endpoints()})", interval=0.5)


def test_manifests_follow_the_deployment_rules():
    docs = [doc for _, doc in manifest_docs()]
    check_workloads(docs, sa_name="headwind", config_name="headwind-config",
                    secret_name="headwind-secrets")
    for doc in docs:
        if doc["kind"] == "Deployment":
            for container in containers(doc):
                assert container["image"] == IMAGE
    names = {doc["kind"]: doc["metadata"]["name"] for doc in docs if doc["kind"] != "Deployment"}
    assert names["ServiceAccount"] == "headwind"
    assert {doc["metadata"]["name"] for doc in docs if doc["kind"] == "Deployment"} == {
        "headwind-web", "headwind-worker", "headwind-operator"}


def test_the_secret_template_holds_no_values_and_headwind_refuses_to_start_on_it(tmp_path):
    docs = [doc for _, doc in manifest_docs()]
    (secret,) = [doc for doc in docs if doc["kind"] == "Secret"]
    assert secret["metadata"]["name"] == "headwind-secrets"
    assert "data" not in secret
    assert {"SECRET_KEY", "DATABASE_PASSWORD", "HEADWIND_WEBHOOK_TOKEN"} <= set(
        secret["stringData"])
    assert "DATABASE_URL" not in secret["stringData"], "an empty one would hide config.yaml's"
    assert all(value == "" for value in secret["stringData"].values()), "never real values"

    config = config_env(docs)
    as_shipped = run_django(tmp_path, {**config, **secret["stringData"]})
    assert as_shipped.returncode != 0
    assert "SECRET_KEY is required" in as_shipped.stderr
    no_password = run_django(tmp_path,
                             {**config, **secret["stringData"], "SECRET_KEY": "k" * 50})
    assert no_password.returncode != 0
    assert "DATABASE_PASSWORD is set but empty" in no_password.stderr


def test_the_configuration_starts_django_and_the_probes_get_through(tmp_path, testbed):
    check_probes_get_through([doc for _, doc in manifest_docs()], tmp_path, testbed)


def test_the_manifests_default_to_postgresql():
    """The ConfigMap names a PostgreSQL server (no password in it); the password is the
    Secret's DATABASE_PASSWORD, which replaces whatever the URL says."""
    from headwind_site.settings import database_from_url

    docs = [doc for _, doc in manifest_docs()]
    url = config_env(docs)["DATABASE_URL"]
    assert url == "postgres://headwind@postgres.headwind-system.svc:5432/headwind"
    database = database_from_url(url, "s3cret:/@")
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["USER"], database["PASSWORD"], database["HOST"], database["PORT"],
            database["NAME"]) == ("headwind", "s3cret:/@", "postgres.headwind-system.svc", "5432",
                                  "headwind")
    with_options = database_from_url("postgresql://u:p%40ss@db:6432/hw?sslmode=verify-full"
                                     "&sslrootcert=/etc/db/ca.crt")
    assert with_options["PASSWORD"] == "p@ss"
    assert with_options["OPTIONS"] == {"sslmode": "verify-full", "sslrootcert": "/etc/db/ca.crt"}


# --- environment variable names -----------------------------------------------------------------


def _code_names() -> tuple[set[str], list[re.Pattern]]:
    """String constants (docstrings and comments excluded) and ``HEADWIND_*`` f-string patterns
    of the code that reads the environment."""
    constants: set[str] = set()
    patterns: list[re.Pattern] = []
    files = [p for root in CODE for p in ([root] if root.is_file() else root.rglob("*.py"))]
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {id(node.value) for node in ast.walk(tree)
                      if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) not in docstrings:
                    constants.add(node.value)
            elif isinstance(node, ast.JoinedStr):
                parts = [re.escape(v.value) if isinstance(v, ast.Constant) else "(?P<var>.+)"
                         for v in node.values]
                if parts and parts[0].startswith("HEADWIND_"):
                    patterns.append(re.compile("".join(parts) + r"\Z"))
    return constants, patterns


CODE_CONSTANTS, CODE_PATTERNS = _code_names()


def read_by_code(name: str) -> bool:
    """Named literally in the code, or built there per webhook source (HEADWIND_WEBHOOK_<SOURCE>_
    TOKEN / _SECRET), and then only for a source that exists."""
    if name in CODE_CONSTANTS:
        return True
    for pattern in CODE_PATTERNS:
        match = pattern.match(name)
        if match and match.group("var").lower() in PARSERS:
            return True
    return False


def test_the_name_check_catches_typos():
    assert read_by_code("HEADWIND_POLLING_INTERVAL")
    assert read_by_code("HEADWIND_WEBHOOK_QUAY_TOKEN")
    assert read_by_code("HEADWIND_WEBHOOK_GHCR_SECRET")
    assert not read_by_code("HEADWIND_POLLING_INTERVALL")
    assert not read_by_code("HEADWIND_WEBHOOK_REGISTY_TOKEN")
    assert not read_by_code("HEADWIND_WEBHOOK_REGISTRY_TOKENS")
    assert not read_by_code("ALLOWED_HOST")


def env_names(docs: list[dict]) -> set[str]:
    names: set[str] = set()
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            names |= set(doc.get("data") or {})
        elif doc["kind"] == "Secret":
            names |= set(doc.get("stringData") or {}) | set(doc.get("data") or {})
        elif doc["kind"] == "Deployment":
            for container in containers(doc):
                names |= {item["name"] for item in container.get("env", [])}
    return names


def test_every_variable_the_manifests_set_is_read_by_the_code():
    names = env_names([doc for _, doc in manifest_docs()])
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS",
            "HEADWIND_NAMESPACE"} <= names
    assert sorted(name for name in names if not read_by_code(name)) == []


# --- the Helm chart -----------------------------------------------------------------------------


def test_chart_files_parse_and_the_crd_is_the_shipped_one():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "headwind"
    assert IMAGE.endswith(":" + chart["appVersion"])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert f"{values['image']['repository']}:{chart['appVersion']}" == IMAGE
    assert not [p for p in CHART.rglob("*") if p.is_symlink()], "copies, not symlinks"
    assert (CHART / "crds" / CRD.name).read_bytes() == CRD.read_bytes()
    assert [p.name for p in (CHART / "crds").iterdir()] == [CRD.name]


VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def test_chart_templates_use_only_values_that_exist():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    seen, missing = set(), []
    for template in sorted((CHART / "templates").iterdir()):
        for match in VALUES_REF.finditer(template.read_text()):
            path = match.group(1).lstrip(".").split(".")
            seen.add(".".join(path))
            node = values
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    missing.append(f"{template.name}: .Values.{'.'.join(path)}")
                    break
                node = node[key]
    assert len(seen) > 20, "the pattern found the references"
    assert missing == []


@pytest.fixture(scope="session")
def render_chart(helm):
    """``render(release, namespace, values=None) -> [objects]``: ``helm template`` of the real
    helm for the testbed's Kubernetes version (CRDs not included, as ``helm install`` applies
    them on its own)."""

    def render(release: str, namespace: str, values: dict | None = None) -> list[dict]:
        return helm.template(CHART, release, namespace, values,
                             "--kube-version", KUBERNETES_VERSION)

    return render


VARIANTS = {
    "defaults": None,
    "existing-secret-ingress-polling": {
        "secrets": {"existingSecret": "my-secrets"},
        "ingress": {"enabled": True, "className": "nginx",
                    "tls": [{"secretName": "headwind-tls", "hosts": ["headwind.example.com"]}],
                    "annotations": {"example.com/a": "b"}},
        "polling": {"enabled": True, "interval": 60, "insecureRegistries": ["reg:5000"]},
        "env": {"HEADWIND_TRUSTED_PROXIES": "10.0.0.0/8", "LOG_LEVEL": "DEBUG"},
        "imagePullSecrets": [{"name": "pull"}], "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "web": {"migrate": False, "pdb": {"enabled": False}},
        "serviceAccount": {"annotations": {"example.com/role": "x"}},
        "database": {"host": "db.example.internal", "sslMode": "require"},
    },
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_passes(variant, helm, tmp_path):
    """``helm lint --strict`` (warnings fail too) with each tested set of values."""
    args: list = ["--kube-version", KUBERNETES_VERSION]
    if VARIANTS[variant]:
        (tmp_path / "values.json").write_text(json.dumps(VARIANTS[variant]))
        args += ["--values", tmp_path / "values.json"]
    out = helm.lint(CHART, *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_helm_renders_the_shipped_crd_and_keeps_to_the_kube_version(helm):
    docs = helm.template(CHART, "headwind", "headwind-system", None, "--include-crds",
                         "--kube-version", KUBERNETES_VERSION)
    crds = [doc for doc in docs if doc["kind"] == "CustomResourceDefinition"]
    assert crds == [yaml.safe_load(CRD.read_text())]
    # The chart's kubeVersion constraint is real: helm refuses a cluster older than it allows.
    floor = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    assert floor == ">=1.25.0-0"
    with pytest.raises(Exception, match="chart requires kubeVersion: >=1.25.0-0"):
        helm.template(CHART, "headwind", "headwind-system", None, "--kube-version", "1.24.9")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_rendered_chart_is_accepted_by_the_api_server(variant, render_chart, kube_api,
                                                          namespace):
    release = f"hw-{namespace[-6:]}"  # unique cluster-wide names
    docs = render_chart(release, namespace, VARIANTS[variant])
    check_against_cluster(kube_api, docs, namespace)
    kinds = {doc["kind"] for doc in docs}
    if variant == "defaults":
        assert "Secret" in kinds and "Ingress" not in kinds
    else:
        assert "Secret" not in kinds and "Ingress" in kinds
        config = config_env(docs)
        assert config["HEADWIND_POLLING_ENABLED"] == "true"
        assert config["HEADWIND_POLLING_INTERVAL"] == "60"
        assert config["LOG_LEVEL"] == "DEBUG"  # env overrides the named values


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_rendered_chart_follows_the_manifests(variant, render_chart):
    docs = render_chart("headwind", "headwind-system", VARIANTS[variant])
    secret = (VARIANTS[variant] or {}).get("secrets", {}).get("existingSecret", "headwind-secrets")
    check_workloads(docs, sa_name="headwind", config_name="headwind-config",
                    secret_name=secret)
    assert sorted(name for name in env_names(docs) if not read_by_code(name)) == []
    for doc in docs:
        if doc["kind"] == "Secret":
            assert all(value == "" for value in doc["stringData"].values())
    # Exactly the tested RBAC of deploy/manifests/rbac.yaml.
    shipped = {doc["kind"]: doc for _, doc in manifest_docs() if doc.get("rules")}
    rendered = {doc["kind"]: doc for doc in docs if doc.get("rules")}
    assert {kind: doc["rules"] for kind, doc in rendered.items()} == {
        kind: doc["rules"] for kind, doc in shipped.items()}


def test_the_chart_configuration_starts_django_and_the_probes_get_through(render_chart,
                                                                          tmp_path, testbed):
    check_probes_get_through(render_chart("headwind", "headwind-system"), tmp_path, testbed)


def test_the_chart_defaults_to_postgresql_and_refuses_sqlite(render_chart, helm):
    config = config_env(render_chart("headwind", "headwind-system"))
    assert config["DATABASE_URL"] == "postgres://headwind@postgres:5432/headwind"
    managed = config_env(render_chart("headwind", "headwind-system", {"database": {
        "host": "db.example.internal", "port": 6432, "name": "hw", "user": "headwind-app",
        "sslMode": "verify-full"}}))
    assert managed["DATABASE_URL"] == (
        "postgres://headwind-app@db.example.internal:6432/hw?sslmode=verify-full")
    # With no host, the Secret is expected to carry a whole DATABASE_URL.
    assert "DATABASE_URL" not in config_env(render_chart("headwind", "headwind-system",
                                                         {"database": {"host": ""}}))
    for values in ({"secrets": {"values": {"DATABASE_URL": "sqlite:////tmp/db.sqlite3"}}},
                   {"env": {"DATABASE_URL": "sqlite:////tmp/db.sqlite3"}}):
        with pytest.raises(Exception, match="SQLite is for the demo"):
            render_chart("headwind", "headwind-system", values)


# --- shared checks ------------------------------------------------------------------------------


def containers(deployment: dict) -> list[dict]:
    spec = deployment["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def config_env(docs: list[dict]) -> dict[str, str]:
    (config,) = [doc for doc in docs if doc["kind"] == "ConfigMap"]
    return config["data"]


def check_workloads(docs: list[dict], *, sa_name: str, config_name: str,
                    secret_name: str) -> None:
    """What every Headwind Deployment must have, whatever produced it."""
    deployments = {doc["metadata"]["name"].rsplit("-", 1)[1]: doc
                   for doc in docs if doc["kind"] == "Deployment"}
    assert sorted(deployments) == ["operator", "web", "worker"]
    (config,) = [doc for doc in docs if doc["kind"] == "ConfigMap"]
    assert config["metadata"]["name"] == config_name
    (account,) = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] == sa_name
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == sa_name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
        assert "emptyDir" in tmp
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        for container in containers(deployment):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["envFrom"] == [{"configMapRef": {"name": config_name}},
                                            {"secretRef": {"name": secret_name}}]
    web, worker, operator = (deployments[k] for k in ("web", "worker", "operator"))
    (web_container,) = web["spec"]["template"]["spec"]["containers"]
    # the web launcher (uvicorn, its access log through the filter that redacts webhook tokens)
    assert web_container["command"][:3] == ["python", "-m", "headwind_site.web"]
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in web_container["ports"]
    assert web_container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web_container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert operator["spec"]["replicas"] == 2
    (operator_container,) = operator["spec"]["template"]["spec"]["containers"]
    assert operator_container["command"][-1] == "run_operator"
    (worker_container,) = worker["spec"]["template"]["spec"]["containers"]
    assert worker_container["command"][:4] == ["celery", "-A", "headwind_site", "worker"]
    assert "--pool=threads" in worker_container["command"]
    # The metrics listeners the code opens are the container ports the Service targets.
    env = config["data"]
    for container, variable, port in ((operator_container, "HEADWIND_OPERATOR_METRICS_PORT", 9090),
                                      (worker_container, "HEADWIND_WORKER_METRICS_PORT", 9091)):
        (metrics,) = [p for p in container["ports"] if p["name"] == "metrics"]
        assert metrics["containerPort"] == int(env[variable]) == port
    services = {doc["metadata"]["name"].rsplit("-", 1)[1]: doc
                for doc in docs if doc["kind"] == "Service"}
    assert services["web"]["spec"]["ports"][0]["port"] == 8000
    assert services["metrics"]["spec"]["ports"][0]["targetPort"] == "metrics"
    for name in ("worker", "operator"):
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert services["metrics"]["spec"]["selector"].items() <= labels.items()


DJANGO_PROBE = """
import json, sys
import django
django.setup()
from django.test import Client
client = Client()
print(json.dumps({f"{host} {path}": client.get(path, HTTP_HOST=host).status_code
                  for host, path in json.loads(sys.argv[1])}))
"""


def run_django(tmp_path: Path, env: dict[str, str], checks=()):
    """Django with only these variables, as in the container (no HEADWIND_DEV); GETs each
    (host, path) of ``checks`` and returns the finished process."""
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "headwind_site.settings",
            "HEADWIND_NAMESPACE": "headwind-system"}
    return subprocess.run([sys.executable, "-c", DJANGO_PROBE, json.dumps(list(checks))],
                          cwd=tmp_path, env={**base, **env}, capture_output=True, text=True,
                          timeout=120)


def check_probes_get_through(docs: list[dict], tmp_path: Path, testbed) -> None:
    """The ConfigMap's values start Django (with a key and the database password filled in,
    and its PostgreSQL server moved to the testbed's), ``/readyz`` finds the database, and the
    web probes' Host header passes ALLOWED_HOSTS; a bare pod IP would not."""
    (web,) = [doc for doc in docs if doc["kind"] == "Deployment"
              and doc["metadata"]["name"].endswith("-web")]
    (container,) = web["spec"]["template"]["spec"]["containers"]
    checks = []
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        (host,) = [h["value"] for h in get["httpHeaders"] if h["name"] == "Host"]
        checks.append((f"{host}:8000", get["path"]))
    checks.append(("10.1.2.3:8000", "/healthz"))
    config = config_env(docs)
    shipped, testbed_server = urlsplit(config["DATABASE_URL"]), urlsplit(testbed.database_url)
    assert shipped.scheme == "postgres" and shipped.password is None
    # The shipped user and database ("headwind") exist on the testbed's server too.
    url = shipped._replace(netloc=f"{shipped.username}@{testbed_server.netloc.split('@')[1]}")
    env = {**config, "SECRET_KEY": "k" * 50, "DATABASE_URL": urlunsplit(url),
           "DATABASE_PASSWORD": testbed_server.password}
    done = run_django(tmp_path, env, checks)
    assert done.returncode == 0, done.stderr
    statuses = json.loads(done.stdout.strip().splitlines()[-1])
    assert statuses == {"localhost:8000 /healthz": 200, "localhost:8000 /readyz": 200,
                        "10.1.2.3:8000 /healthz": 400}
