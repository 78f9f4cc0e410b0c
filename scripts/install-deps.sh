#!/usr/bin/env bash
# Installs what Headwind's demo and tests need on a fresh Debian 12 machine, and nothing twice:
# Debian packages (registry, Redis, PostgreSQL, Chromium for the UI tests), the Python
# virtualenv, and the testbed's Go-built binaries (cached under ~/.cache/headwind/ by version).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
# chromium: the browser tests drive Debian's build through Playwright (never a downloaded one).
for pair in docker-registry:docker-registry redis-server:redis-server chromium:chromium; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
# PostgreSQL: the testbed runs Debian's server (not on PATH: /usr/lib/postgresql/<major>/bin).
new_postgres=""
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  need_pkgs+=(postgresql)
  new_postgres=1
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "==> apt-get install ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# Debian starts these as system services; the testbed runs its own instances on free ports.
for svc in redis-server docker-registry; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
  fi
done
# The package's own cluster ("main", port 5432) is started by its installation; the testbed
# makes throwaway clusters of its own, so the one just installed is stopped (never someone's
# PostgreSQL that was there before).
if [ -n "$new_postgres" ] && command -v pg_lsclusters >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _port status _rest; do
    if [ "$status" = online ]; then
      $SUDO pg_ctlcluster "$version" "$cluster" stop >/dev/null 2>&1 || true
    fi
  done || true
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  if ! "$PY" -m venv .venv 2>/dev/null; then
    # Debian's own python3 keeps venv (and ensurepip) in a separate package.
    rm -rf .venv
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv .venv
  fi
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> pip install -r requirements-dev.txt"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi
# The kubectl plugin's console script (.venv/bin/kubectl-headwind, pyproject.toml): Headwind
# itself as an editable package, its dependencies already installed above. Redone when
# pyproject.toml changes or the script is missing.
pkg_stamp=.venv/.package.sha
pkg_want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/kubectl-headwind ] || [ "$(cat "$pkg_stamp" 2>/dev/null)" != "$pkg_want" ]; then
  echo "==> pip install --no-deps -e . (kubectl-headwind)"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$pkg_want" > "$pkg_stamp"
fi

if [ "${HEADWIND_SKIP_TESTBED_BUILD:-0}" != 1 ]; then
  .venv/bin/python -m tests.testbed build
fi
