"""Builds the testbed's Go binaries once and caches them by version.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok are compiled from the
published Go modules through the small wrapper modules in ``go/``; the outputs live under
``~/.cache/headwind/testbed/<versions>-<wrapper hash>/`` so a second ``up`` never rebuilds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

KUBERNETES_VERSION = "1.37.2"
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.8.0"

GO_DIR = Path(__file__).resolve().parent / "go"
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


def _go(args: list[str], cwd: Path, log) -> None:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    log(f"$ (cd {cwd.relative_to(GO_DIR.parent)}) go {' '.join(args)}")
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


def build(log=lambda msg: print(msg, file=sys.stderr, flush=True)) -> Path:
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
