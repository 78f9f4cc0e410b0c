"""Helm charts for tests, made and published with the real ``helm`` CLI (tools/helm).

- :class:`Helm` runs the binary with its own config, cache, data and registry-credential files
  (under one temporary directory per test session: nothing touches the user's ``~/.config``,
  ``~/.cache`` or ``~/.docker``). It makes charts (``helm create`` + ``helm package``), pushes
  them to an OCI registry (``helm registry login`` + ``helm push``), lints and templates.
- :class:`ChartRepo` publishes packages to the testbed's chart repository server
  (tests/testbed/chartserver.py) the way a chart maintainer does: ``helm repo index --merge``
  with ``--url``, so earlier versions stay in ``index.yaml`` and every entry's URL is absolute.

The pytest fixtures ``helm`` and ``chart_repo`` (tests/testbed/fixtures.py) expose both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from . import build
from .cluster import TestbedState

DIGEST = re.compile(r"^Digest:\s*(sha256:[0-9a-f]{64})\s*$", re.M)


class HelmError(RuntimeError):
    pass


class Helm:
    """The real helm CLI with a private home under ``home``."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = Path(binary)
        self.home = Path(home)
        dirs = {"HELM_CONFIG_HOME": "config", "HELM_CACHE_HOME": "cache", "HELM_DATA_HOME": "data"}
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("HELM_")}  # a developer's HELM_* must not leak in
        for variable, name in dirs.items():
            (self.home / name).mkdir(parents=True, exist_ok=True)
            self.env[variable] = str(self.home / name)
        self.env.update(
            HELM_REGISTRY_CONFIG=str(self.home / "config" / "registry" / "config.json"),
            HELM_REPOSITORY_CONFIG=str(self.home / "config" / "repositories.yaml"),
            HELM_REPOSITORY_CACHE=str(self.home / "cache" / "repository"),
            # helm template/lint never need a cluster; make sure nothing can reach one.
            KUBECONFIG=str(self.home / "no-kubeconfig"),
        )

    @classmethod
    def build(cls, home: Path) -> Helm:
        """The helm of tools/helm (built and cached by tests.testbed.build if needed)."""
        return cls(build.helm(), home)

    def run(self, *args: str | Path, input: str | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """``helm ARGS``; raises :class:`HelmError` with its output when it fails."""
        argv = [str(self.binary), *map(str, args)]
        done = subprocess.run(argv, env=self.env, cwd=cwd, input=input, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise HelmError(f"helm {' '.join(argv[1:])} exited {done.returncode}:\n"
                            f"{done.stdout}{done.stderr}")
        return done

    def version(self) -> str:
        return self.run("version", "--template", "{{ .Version }}").stdout.strip()

    # -- charts ---------------------------------------------------------------------------------

    def make_chart(self, workdir: Path, name: str, version: str,
                   app_version: str | None = None) -> Path:
        """``helm create`` a chart named ``name`` in ``workdir`` and ``helm package`` it as
        ``version`` (and ``app_version``; without it the package keeps ``helm create``'s
        appVersion, 1.16.0); returns the package, ``workdir/<name>-<version>.tgz``.
        Calling it again with the same name and another version packages the same sources."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        source = workdir / "src" / name
        if not source.exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            self.run("create", source)
        args = ["package", source, "--destination", workdir, "--version", version]
        if app_version is not None:
            args += ["--app-version", app_version]
        out = self.run(*args).stdout
        match = re.search(r"saved it to: (.+\.tgz)\s*$", out, re.M)
        package = Path(match.group(1)) if match else workdir / f"{name}-{version}.tgz"
        if not package.exists():
            raise HelmError(f"helm package said {out!r} but {package} does not exist")
        return package

    def lint(self, chart: Path, *args: str | Path) -> str:
        """``helm lint --strict`` (warnings fail too); its output."""
        return self.run("lint", "--strict", chart, *args).stdout

    def template(self, chart: Path, release: str, namespace: str, values: dict | None = None,
                 *args: str | Path) -> list[dict]:
        """``helm template`` with ``values`` (merged over values.yaml as ``-f`` would); the
        rendered objects (CRDs only with ``--include-crds`` among ``args``)."""
        with tempfile.TemporaryDirectory(dir=self.home) as tmp:
            extra: list[str | Path] = []
            if values:
                values_file = Path(tmp) / "values.json"  # JSON is YAML
                values_file.write_text(json.dumps(values))
                extra = ["--values", values_file]
            out = self.run("template", release, chart, "--namespace", namespace,
                           *extra, *args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    # -- OCI ------------------------------------------------------------------------------------

    def registry_login(self, registry_host: str, user: str, password: str, *,
                       plain_http: bool = True) -> None:
        args = ["registry", "login", registry_host, "--username", user, "--password-stdin"]
        self.run(*args, *(["--plain-http"] if plain_http else []), input=password)

    def push_oci(self, package: Path, registry_host: str, user: str, password: str,
                 path: str = "charts", *, plain_http: bool = True) -> str:
        """``helm registry login`` and ``helm push PACKAGE oci://HOST/PATH``: the chart lands in
        repository ``PATH/<chart name>`` with its version as the tag (``+`` becomes ``_``).
        Returns the pushed manifest's digest, as helm reports it."""
        self.registry_login(registry_host, user, password, plain_http=plain_http)
        done = self.run("push", package, f"oci://{registry_host}/{path.strip('/')}",
                        *(["--plain-http"] if plain_http else []))
        match = DIGEST.search(done.stdout + done.stderr)
        if not match:
            raise HelmError(f"no digest in helm push's output:\n{done.stdout}{done.stderr}")
        return match.group(1)


@dataclass
class ChartRepo:
    """The testbed's chart repository server: ``<url>/public/<repo>/`` for anyone,
    ``<url>/private/<repo>/`` with ``(user, password)``."""

    url: str
    user: str
    password: str
    directory: Path
    helm: Helm

    @classmethod
    def of(cls, state: TestbedState, helm: Helm) -> ChartRepo:
        return cls(state.chart_repo_url, state.chart_repo_user, state.chart_repo_password,
                   Path(state.chart_repo_dir), helm)

    @property
    def auth(self) -> tuple[str, str]:
        return self.user, self.password

    def repo_url(self, repo_subdir: str) -> str:
        return f"{self.url}/{repo_subdir.strip('/')}"

    def publish_http(self, repo_subdir: str, *packages: Path) -> str:
        """Add ``packages`` to the repository ``repo_subdir`` (``public/<name>`` or
        ``private/<name>``) and return its URL. Only the new packages are indexed, merged into
        the existing ``index.yaml`` (earlier entries keep their ``created`` times and digests;
        a new package of an existing version replaces it); the index is replaced atomically,
        so a client never reads half of one."""
        area = repo_subdir.strip("/").split("/")[0]
        if area not in {"public", "private"}:
            raise ValueError(f"{repo_subdir!r}: repositories live under public/ or private/")
        served = self.directory / repo_subdir.strip("/")
        served.mkdir(parents=True, exist_ok=True)
        url = self.repo_url(repo_subdir)
        index = served / "index.yaml"
        with tempfile.TemporaryDirectory(dir=self.directory.parent) as tmp:
            staging = Path(tmp)
            for package in packages:
                shutil.copy2(package, staging / Path(package).name)
            args: list[str | Path] = ["repo", "index", staging, "--url", url]
            if index.exists():  # (--merge with a missing file would write an empty one there)
                args += ["--merge", index]
            self.helm.run(*args)
            for package in packages:
                shutil.copy2(staging / Path(package).name, served / Path(package).name)
            os.replace(staging / "index.yaml", index)
        return url

    def index(self, repo_subdir: str) -> dict:
        """``index.yaml`` as served (with credentials for private repositories)."""
        response = requests.get(f"{self.repo_url(repo_subdir)}/index.yaml", auth=self.auth,
                                timeout=10)
        response.raise_for_status()
        return yaml.safe_load(response.text)

    def stats(self) -> dict:
        """The server's request counts: ``{"paths": {path: {"requests": n, "200": n,
        "304": n, ...}}, "requests": total}``."""
        response = requests.get(f"{self.url}/_stats", timeout=10)
        response.raise_for_status()
        return response.json()

    def path_stats(self, path: str) -> dict[str, int]:
        """The counts of one path (``/public/<repo>/index.yaml``), zeros if never requested."""
        return self.stats()["paths"].get(path, {"requests": 0})
