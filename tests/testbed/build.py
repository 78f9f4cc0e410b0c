"""Builds the testbed's Go binaries once and caches them by version.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok are compiled from the
published Go modules through the small wrapper modules in ``go/``; the outputs live under
``~/.cache/headwind/testbed/<versions>-<wrapper hash>/`` so a second ``up`` never rebuilds.

Smaller Go programs the tests run (the Masterminds/semver oracle, the ``helm`` CLI)
are "Go tools": each is its own module under ``tools/`` and is cached on its own under
``~/.cache/headwind/tools/<name>-<version>-<source hash>/`` by :func:`build_go_tool`, so they
never touch the testbed's cache key (nothing under ``tools/`` is hashed by ``_wrapper_hash``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "1.37.2"
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.8.0"

GO_DIR = Path(__file__).resolve().parent / "go"
TOOLS_DIR = Path(__file__).resolve().parent / "tools"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KWOK_STAGES = ("node/fast", "node/heartbeat-with-lease", "pod/fast")


def cache_root() -> Path:
    return Path(os.environ.get("HEADWIND_CACHE", "~/.cache/headwind")).expanduser()


def _wrapper_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(GO_DIR.rglob("*")):
        if path.is_file() and path.suffix in {".go", ".mod", ".sum"}:
            digest.update(str(path.relative_to(GO_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def artifacts_dir() -> Path:
    key = f"k8s-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}-{_wrapper_hash()}"
    return cache_root() / "testbed" / key


def bin_path(name: str) -> Path:
    return artifacts_dir() / "bin" / name


def stages_dir() -> Path:
    return artifacts_dir() / "kwok-stages"


def is_built() -> bool:
    return (artifacts_dir() / "build.json").exists() and all(
        bin_path(name).exists() for name in BINARIES
    )


def go_binary() -> str | None:
    """``go`` on PATH, else the usual install location (a non-login shell may lack it)."""
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    return str(fallback) if fallback.exists() else None


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _go(args: list[str], cwd: Path, log) -> None:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    log(f"$ (cd {cwd.relative_to(GO_DIR.parent)}) go {shlex.join(args)}")
    proc = subprocess.run([go_binary() or "go", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise BuildError(f"go {' '.join(args[:2])} failed in {cwd.name}:\n{proc.stderr[-4000:]}")


class BuildError(RuntimeError):
    pass


def _kubernetes_ldflags() -> str:
    version, minor = f"v{KUBERNETES_VERSION}", KUBERNETES_VERSION.split(".")[1]
    stamps = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps += [
            f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor=1", f"-X {pkg}.gitMinor={minor}"
        ]
    stamps.append("-X k8s.io/component-base/version.gitTreeState=clean")
    return "-s -w " + " ".join(stamps)


def build(log=_log) -> Path:
    """Build whatever is missing; safe to call from several processes at once."""
    target = artifacts_dir()
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built():
            return target
        if go_binary() is None:
            raise BuildError("the Go toolchain is required to build the testbed (go not on PATH)")
        staging = target / "bin.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        timings: dict[str, float] = {}

        start = time.monotonic()
        _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(staging / "etcd"), "."],
            GO_DIR / "etcd", log)
        timings["etcd"] = time.monotonic() - start

        start = time.monotonic()
        _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(staging / "kwok"),
             "sigs.k8s.io/kwok/cmd/kwok"], GO_DIR / "kwok", log)
        timings["kwok"] = time.monotonic() - start

        start = time.monotonic()
        _go(["build", "-trimpath", "-ldflags", _kubernetes_ldflags(), "-o", str(staging) + "/",
             "./cmd/..."], GO_DIR / "k8s", log)
        timings["kubernetes"] = time.monotonic() - start

        _copy_kwok_stages(staging.parent / "kwok-stages", log)
        shutil.rmtree(target / "bin", ignore_errors=True)
        staging.rename(target / "bin")
        sizes = {name: bin_path(name).stat().st_size for name in BINARIES}
        (target / "build.json").write_text(
            json.dumps({"seconds": timings, "bytes": sizes, "built_at": time.time()}, indent=2)
        )
        log(f"testbed binaries built in {sum(timings.values()):.0f}s into {target}")
        return target


def _copy_kwok_stages(dest: Path, log) -> None:
    """kwok refuses to start without Stage objects; they ship inside its module."""
    proc = subprocess.run(
        [go_binary() or "go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"],
        cwd=GO_DIR / "kwok", capture_output=True, text=True, check=True,
    )
    module_dir = Path(proc.stdout.strip())
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for stage in KWOK_STAGES:
        for yaml_file in sorted((module_dir / "kustomize" / "stage" / stage).glob("*.yaml")):
            if yaml_file.name == "kustomization.yaml":
                continue
            shutil.copyfile(yaml_file, dest / f"{stage.replace('/', '-')}-{yaml_file.name}")
    log(f"kwok stages: {sorted(p.name for p in dest.iterdir())}")


# --------------------------------------------------------------------------------------------
# Go tools: small programs the tests run, each its own module under tools/
# --------------------------------------------------------------------------------------------

MASTERMINDS_SEMVER_VERSION = "3.5.0"  # must match tools/masterminds/go.mod
HELM_VERSION = "3.22.0"  # must match tools/helm/go.mod
KUBECTL_VERSION = KUBERNETES_VERSION  # must match tools/kubectl/go.mod (k8s.io/kubectl v0.X.Y)


@dataclass(frozen=True)
class GoTool:
    """One Go program the tests run: its wrapper module, the upstream release it pins, the
    package to build there and the link flags (all of which key its cache directory)."""

    source_dir: Path
    version: str
    package: str = "."
    ldflags: str = "-s -w"


def _helm_ldflags() -> str:
    """As helm's Makefile links a release: its version (else ``helm version`` says "v3.22"),
    and the Kubernetes version of the client-go it builds with, which is what ``helm template``
    and ``helm lint`` assume for ``.Capabilities.KubeVersion`` (the source default is 1.20,
    which a chart with ``kubeVersion: >=1.25.0-0`` refuses)."""
    go_mod = (TOOLS_DIR / "helm" / "go.mod").read_text()
    if not re.search(rf"^\s*(require\s+)?helm\.sh/helm/v3 v{re.escape(HELM_VERSION)}\b", go_mod,
                     re.M):
        raise BuildError(f"tools/helm/go.mod does not pin helm.sh/helm/v3 v{HELM_VERSION}")
    match = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.", go_mod, re.M)
    if match is None:
        raise BuildError("tools/helm/go.mod pins no k8s.io/client-go v0.X.Y")
    pkg = "helm.sh/helm/v3"
    stamps = [f"-X {pkg}/internal/version.version=v{HELM_VERSION}",
              f"-X {pkg}/internal/version.gitTreeState=clean"]
    for scope in ("pkg/lint/rules", "pkg/chartutil"):
        stamps += [f"-X {pkg}/{scope}.k8sVersionMajor=1",
                   f"-X {pkg}/{scope}.k8sVersionMinor={match.group(1)}"]
    return "-s -w " + " ".join(stamps)


def _kubectl_ldflags() -> str:
    """kubectl from ``k8s.io/kubectl/pkg/cmd`` at the testbed's Kubernetes version, stamped as a
    release is (``kubectl version --client`` says v1.37.2, and no version-skew warning)."""
    go_mod = (TOOLS_DIR / "kubectl" / "go.mod").read_text()
    pinned = "v0." + KUBECTL_VERSION.split(".", 1)[1]
    if not re.search(rf"^\s*(require\s+)?k8s\.io/kubectl {re.escape(pinned)}\b", go_mod, re.M):
        raise BuildError(f"tools/kubectl/go.mod does not pin k8s.io/kubectl {pinned}")
    return _kubernetes_ldflags()


#: name -> how to build it; ``build`` (``python -m tests.testbed build``) builds every one.
GO_TOOLS: dict[str, GoTool] = {
    "masterminds-semver": GoTool(TOOLS_DIR / "masterminds", MASTERMINDS_SEMVER_VERSION),
    "helm": GoTool(TOOLS_DIR / "helm", HELM_VERSION, package="helm.sh/helm/v3/cmd/helm",
                   ldflags=_helm_ldflags()),
    "kubectl": GoTool(TOOLS_DIR / "kubectl", KUBECTL_VERSION, ldflags=_kubectl_ldflags()),
}


def _source_hash(source_dir: Path, *extra: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(source_dir.rglob("*")):
        if path.is_file() and path.suffix in {".go", ".mod", ".sum"}:
            digest.update(str(path.relative_to(source_dir)).encode())
            digest.update(path.read_bytes())
    for item in extra:
        digest.update(b"\0" + item.encode())
    return digest.hexdigest()[:12]


def go_tool_path(name: str, source_dir: Path, version_key: str, *, package: str = ".",
                 ldflags: str = "-s -w") -> Path:
    """Where :func:`build_go_tool` puts ``name``: keyed by its version, its source files and
    how it is built (package, link flags)."""
    extra = () if (package, ldflags) == (".", "-s -w") else (package, ldflags)
    key = f"{name}-{version_key}-{_source_hash(source_dir, *extra)}"
    return cache_root() / "tools" / key / name


def build_go_tool(
    name: str, source_dir: Path, version_key: str, *, package: str = ".",
    ldflags: str = "-s -w", log=_log,
) -> Path:
    """Build the Go program in ``source_dir`` (its own module) unless it is cached; its path.

    Safe to call from several processes at once: one builds under a file lock, the others wait
    and reuse the result. ``version_key`` names the upstream release the module pins (it is in
    the cache directory name); any change to the module's sources, the package or the link
    flags gives a new directory too. The build's time and size go to ``build.json`` beside it.
    """
    binary = go_tool_path(name, source_dir, version_key, package=package, ldflags=ldflags)
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with open(binary.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        if go_binary() is None:
            raise BuildError(f"the Go toolchain is required to build {name} (go not on PATH)")
        partial = binary.with_name(f"{name}.partial")
        start = time.monotonic()
        _go(["build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), package],
            source_dir, log)
        seconds = time.monotonic() - start
        (binary.parent / "build.json").write_text(json.dumps(
            {"seconds": round(seconds, 1), "bytes": partial.stat().st_size, "package": package,
             "ldflags": ldflags, "built_at": time.time()}, indent=2))
        partial.rename(binary)  # atomic: a reader never sees a half-written binary
        log(f"{name} {version_key} built in {seconds:.1f}s into {binary}")
    return binary


def go_tool(name: str, log=_log) -> Path:
    """The tool ``name`` of GO_TOOLS, built if needed."""
    tool = GO_TOOLS[name]
    return build_go_tool(name, tool.source_dir, tool.version, package=tool.package,
                         ldflags=tool.ldflags, log=log)


def build_go_tools(log=_log) -> list[Path]:
    """Build every tool in GO_TOOLS that is missing; their paths."""
    return [go_tool(name, log=log) for name in GO_TOOLS]


def masterminds_semver(log=_log) -> Path:
    """The Masterminds/semver oracle (tools/masterminds), built if needed."""
    return go_tool("masterminds-semver", log=log)


def helm(log=_log) -> Path:
    """The real ``helm`` CLI (tools/helm, helm.sh/helm/v3 at HELM_VERSION), built if needed."""
    return go_tool("helm", log=log)


def kubectl(log=_log) -> Path:
    """The real ``kubectl`` CLI (tools/kubectl, k8s.io/kubectl at KUBECTL_VERSION), built if
    needed."""
    return go_tool("kubectl", log=log)
