"""Helm charts on the testbed, with the real helm CLI: a chart repository over HTTP (caching,
gzip, Basic auth) and charts as OCI artifacts in the registry, with its notifications."""

from __future__ import annotations

import gzip
import hashlib
import re
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from tests.testbed import build
from tests.testbed.registry import OCI_MANIFEST

pytestmark = pytest.mark.testbed

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
IDENTITY = {"Accept-Encoding": "identity"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_helm_is_the_pinned_release(helm, tmp_path):
    assert helm.version() == f"v{build.HELM_VERSION}"
    go_mod = (build.TOOLS_DIR / "helm" / "go.mod").read_text()
    assert re.search(rf"^\s*helm\.sh/helm/v3 v{re.escape(build.HELM_VERSION)}\b", go_mod, re.M)
    # Linked as helm's Makefile does: offline it assumes the Kubernetes of its client-go
    # (1.37), not the source's default 1.20 that a chart's kubeVersion: >=1.25 would refuse.
    chart = tmp_path / "caps"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: caps\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caps}\n"
        "data: {kube: {{ .Capabilities.KubeVersion.Version | quote }}}\n")
    (rendered,) = helm.template(chart, "caps", "default")
    assert rendered["data"]["kube"] == "v1.37.0"


def test_a_published_chart_is_served_with_etag_gzip_and_304(helm, chart_repo, tmp_path):
    repo = f"public/{unique('demo')}"
    package = helm.make_chart(tmp_path, "demo", "1.0.0", app_version="2.0.0")
    url = chart_repo.publish_http(repo, package)
    assert url == f"{chart_repo.url}/{repo}"
    index_path = f"/{repo}/index.yaml"
    on_disk = (chart_repo.directory / repo / "index.yaml").read_bytes()

    # requests asks for gzip by default and decodes it; the index is helm's, URLs absolute.
    first = requests.get(f"{url}/index.yaml", timeout=10)
    assert first.status_code == 200
    assert first.headers["Content-Encoding"] == "gzip"
    assert first.headers["Vary"] == "Accept-Encoding"
    assert first.content == on_disk
    index = yaml.safe_load(first.text)
    (entry,) = index["entries"]["demo"]
    assert (entry["version"], entry["appVersion"]) == ("1.0.0", "2.0.0")
    assert entry["urls"] == [f"{url}/demo-1.0.0.tgz"]
    assert entry["digest"] == sha256(package.read_bytes())

    # On the wire: a gzip body, with its own strong ETag; without gzip, the file as it is.
    raw = requests.get(f"{url}/index.yaml", headers={"Accept-Encoding": "gzip"}, timeout=10,
                       stream=True)
    wire = raw.raw.read(decode_content=False)
    assert wire[:2] == b"\x1f\x8b" and gzip.decompress(wire) == on_disk
    plain = requests.get(f"{url}/index.yaml", headers=IDENTITY, timeout=10)
    assert "Content-Encoding" not in plain.headers and plain.content == on_disk
    etag, gzip_etag = plain.headers["ETag"], raw.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag) and gzip_etag == etag[:-1] + '-gzip"'
    assert plain.headers["Last-Modified"] == first.headers["Last-Modified"]

    # The second fetch, conditional, is a 304 without a body, whichever validator it sends.
    before = chart_repo.path_stats(index_path)
    for headers in ({"If-None-Match": etag}, {"If-None-Match": gzip_etag},
                    {"If-None-Match": f'"nope", W/{etag}'},
                    {"If-Modified-Since": first.headers["Last-Modified"]}):
        again = requests.get(f"{url}/index.yaml", headers=headers, timeout=10)
        assert again.status_code == 304, headers
        assert again.content == b"" and again.headers["ETag"] in {etag, gzip_etag}
    stale = requests.get(f"{url}/index.yaml", headers={"If-None-Match": '"stale"'}, timeout=10)
    assert stale.status_code == 200
    after = chart_repo.path_stats(index_path)
    assert after["requests"] - before["requests"] == 5
    assert after.get("304", 0) - before.get("304", 0) == 4
    assert after["200"] - before["200"] == 1

    # Chart archives are already gzip: served as they are, whatever the client accepts.
    archive = requests.get(entry["urls"][0], headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert archive.status_code == 200 and "Content-Encoding" not in archive.headers
    assert archive.content == package.read_bytes()
    assert archive.headers["Content-Type"] == "application/gzip"

    # A second version: merged into the index; the first entry is untouched; old ETag stale.
    newer = helm.make_chart(tmp_path, "demo", "1.1.0", app_version="2.1.0")
    chart_repo.publish_http(repo, newer)
    entries = chart_repo.index(repo)["entries"]["demo"]
    assert [e["version"] for e in entries] == ["1.1.0", "1.0.0"]
    assert entries[1] == entry
    changed = requests.get(f"{url}/index.yaml", headers={"If-None-Match": etag}, timeout=10)
    assert changed.status_code == 200 and changed.headers["ETag"] != gzip_etag

    # helm itself is a client of this server: it finds and pulls the new version.
    helm.run("repo", "add", repo.replace("/", "-"), url)
    found = helm.run("search", "repo", f"{repo.replace('/', '-')}/demo", "--versions").stdout
    assert "1.1.0" in found and "1.0.0" in found
    (tmp_path / "pulled").mkdir()
    helm.run("pull", f"{repo.replace('/', '-')}/demo", "--version", "1.1.0",
             "--destination", tmp_path / "pulled")
    assert (tmp_path / "pulled" / "demo-1.1.0.tgz").read_bytes() == newer.read_bytes()


def test_private_repositories_need_credentials(helm, chart_repo, tmp_path):
    repo = f"private/{unique('secret')}"
    url = chart_repo.publish_http(repo, helm.make_chart(tmp_path, "secret", "0.3.0"))
    anonymous = requests.get(f"{url}/index.yaml", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
    wrong = requests.get(f"{url}/index.yaml", auth=(chart_repo.user, "wrong"), timeout=10)
    assert wrong.status_code == 401
    archive = requests.get(f"{url}/secret-0.3.0.tgz", timeout=10)
    assert archive.status_code == 401
    allowed = requests.get(f"{url}/index.yaml", auth=chart_repo.auth, timeout=10)
    assert allowed.status_code == 200
    assert yaml.safe_load(allowed.text)["entries"]["secret"][0]["version"] == "0.3.0"
    assert chart_repo.path_stats(f"/{repo}/index.yaml")["401"] == 2
    # Nothing outside public/ and private/ is served, and no directory listings.
    assert requests.get(f"{chart_repo.url}/{repo}/", auth=chart_repo.auth,
                        timeout=10).status_code == 404
    assert requests.get(f"{chart_repo.url}/../state.json", timeout=10).status_code == 404

    name = unique("private")
    with pytest.raises(Exception, match="401"):
        helm.run("repo", "add", name, url)
    helm.run("repo", "add", name, url, "--username", chart_repo.user, "--password-stdin",
             input=chart_repo.password)
    assert "0.3.0" in helm.run("search", "repo", f"{name}/secret").stdout


def test_a_chart_pushed_as_oci_is_tagged_and_notified(helm, testbed, notification_sink,
                                                      tmp_path):
    path = unique("charts")
    package = helm.make_chart(tmp_path, "demo", "1.0.0")
    digest = helm.push_oci(package, testbed.registry, testbed.registry_user,
                           testbed.registry_password, path=path)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    repository = f"{path}/demo"
    auth = (testbed.registry_user, testbed.registry_password)
    base = f"http://{testbed.registry}/v2/{repository}"
    tags = requests.get(f"{base}/tags/list", auth=auth, timeout=10)
    assert tags.status_code == 200 and tags.json() == {"name": repository, "tags": ["1.0.0"]}

    manifest = requests.get(f"{base}/manifests/1.0.0", auth=auth, timeout=10,
                            headers={"Accept": OCI_MANIFEST})
    assert manifest.headers["Docker-Content-Digest"] == digest
    assert "sha256:" + sha256(manifest.content) == digest
    body = manifest.json()
    assert manifest.headers["Content-Type"] == OCI_MANIFEST
    # (helm writes no "mediaType" field into the manifest: only Content-Type tells it)
    assert "mediaType" not in body and body["schemaVersion"] == 2
    assert body["config"]["mediaType"] == HELM_CONFIG
    assert [layer["mediaType"] for layer in body["layers"]] == [HELM_CHART_LAYER]
    assert body["layers"][0]["digest"] == "sha256:" + sha256(package.read_bytes())
    assert body["annotations"]["org.opencontainers.image.version"] == "1.0.0"

    # docker-registry 2.8 notifies the push like an image's: the target is the OCI manifest;
    # the Helm media types appear only among its references (includereferences is on).
    def events(note) -> list[dict]:
        return [e for e in note.json()["events"]
                if e["action"] == "push" and e["target"]["repository"] == repository]

    note = notification_sink.wait_for(lambda n: any(e["target"].get("tag") == "1.0.0"
                                                    for e in events(n)))
    (tagged,) = [e for e in events(note) if e["target"].get("tag") == "1.0.0"]
    target = tagged["target"]
    assert target["mediaType"] == OCI_MANIFEST
    assert target["digest"] == digest
    assert {ref["mediaType"] for ref in target["references"]} == {HELM_CONFIG, HELM_CHART_LAYER}
    assert tagged["request"]["useragent"] == f"Helm/{build.HELM_VERSION}"
    # helm (oras ExtendedCopy) PUTs the manifest by digest first, then by tag: one more push
    # event for the same digest, without a tag, precedes the tagged one.
    all_events = [e for n in notification_sink.received for e in events(n)]
    assert [e["target"].get("tag") for e in all_events] == [None, "1.0.0"]
    assert {e["target"]["digest"] for e in all_events} == {digest}

    # A version with build metadata: OCI tags cannot hold "+", helm pushes it as "_".
    build_package = helm.make_chart(tmp_path, "demo", "1.0.1+build.7")
    helm.push_oci(build_package, testbed.registry, testbed.registry_user,
                  testbed.registry_password, path=path)
    listed = requests.get(f"{base}/tags/list", auth=auth, timeout=10).json()["tags"]
    assert sorted(listed) == ["1.0.0", "1.0.1_build.7"]


def test_helm_keeps_to_its_own_home(helm):
    for variable in ("HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME",
                     "HELM_REGISTRY_CONFIG", "HELM_REPOSITORY_CONFIG", "HELM_REPOSITORY_CACHE"):
        assert Path(helm.env[variable]).is_relative_to(helm.home), variable
    reported = dict(line.split("=", 1) for line in helm.run("env").stdout.splitlines())
    assert reported["HELM_REGISTRY_CONFIG"].strip('"') == helm.env["HELM_REGISTRY_CONFIG"]
    assert reported["HELM_CONFIG_HOME"].strip('"') == helm.env["HELM_CONFIG_HOME"]
