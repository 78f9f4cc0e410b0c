"""The layer contract (pyproject.toml, [tool.importlinter]) holds, and it really catches an
upward import: a copy of the tree with one bad import added must break it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("operator_app", "approvals", "registry", "headwind_site")
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "COLUMNS": "300"},
                          timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(path: Path, line: str) -> None:
    text = path.read_text()
    head, marker, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + marker + line + "\n" + rest)


def test_the_tree_keeps_the_layer_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("operator_app/engine.py", "import approvals.models  # noqa", "ground floor"),
    ("operator_app/cache.py", "from registry import poller  # noqa", "ground floor"),
    ("operator_app/core/images.py", "import django  # noqa", "pure core"),
    ("registry/webhooks/payloads.py", "import requests  # noqa", "pure core"),
    ("approvals/mirror.py", "import kubernetes  # noqa", "Only operator_app.kube"),
    ("approvals/services.py", "import registry.poller  # noqa", "independent"),
])
def test_an_upward_import_breaks_the_contract(tree, module, line, contract):
    add_import(tree / module, line)
    result = lint(tree)
    assert result.returncode != 0, result.stdout
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert broken and any(contract in row for row in broken), result.stdout
