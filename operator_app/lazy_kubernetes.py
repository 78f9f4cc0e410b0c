"""The Kubernetes client package, loaded on demand: its generated API and model classes are
imported only when one is first used.

Why: ``import kubernetes`` runs ``kubernetes/__init__.py``, which imports every sub-package, and
``kubernetes.client``'s ``__init__`` imports about 70 API classes and 770 model classes; that
costs some 55 MB in each of Headwind's three processes, which talk to the API server with raw
JSON (``operator_app.kube.request``) and use a handful of those classes at most. The packages
``kubernetes``, ``kubernetes.client``, ``kubernetes.client.api`` and
``kubernetes.client.models`` are put in ``sys.modules`` as modules whose attributes resolve on
first access (PEP 562 ``__getattr__``) from the names their real ``__init__.py`` imports. Every
name stays where the library puts it (``kubernetes.client.CustomObjectsApi``,
``kubernetes.client.models.V1Pod``, ``from kubernetes import config``), so any code using the
library sees the same objects, only later.

``install()`` must run before anything imports ``kubernetes``; afterwards (the package was
imported the ordinary way) it changes nothing.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from pathlib import Path

#: ``from kubernetes.client.api.apps_v1_api import AppsV1Api`` (one name or several).
_FROM_IMPORT = re.compile(r"^from\s+(kubernetes[\w.]*)\s+import\s+([\w\s,]+?)\s*$", re.M)
_LAZY_PACKAGES = ("kubernetes", "kubernetes.client", "kubernetes.client.api",
                  "kubernetes.client.models")


class _LazyPackage(types.ModuleType):
    """A package whose names are imported from their own modules on first access."""

    _origins: dict[str, str]

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        origin = self._origins.get(name)
        if origin is None:  # a sub-module or sub-package: kubernetes.config, client.rest, ...
            try:
                value = importlib.import_module(f"{self.__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{self.__name__}.{name}":
                    raise
                raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") \
                    from None
        else:
            value = getattr(importlib.import_module(origin), name)
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._origins})


def _package(name: str, directory: Path) -> _LazyPackage:
    source = (directory / "__init__.py").read_text()
    origins: dict[str, str] = {}
    for origin, names in _FROM_IMPORT.findall(source):
        if origin.startswith("."):
            continue
        for imported in names.replace("\n", " ").split(","):
            if imported.strip():
                origins[imported.strip()] = origin
    module = _LazyPackage(name)
    module._origins = origins
    module.__file__ = str(directory / "__init__.py")
    module.__path__ = [str(directory)]
    module.__package__ = name
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(directory)]
    module.__spec__ = spec
    version = re.search(r'^__version__\s*=\s*["\']([^"\']+)', source, re.M)
    if version:
        module.__version__ = version.group(1)
    return module


def install() -> bool:
    """Put the lazy packages in place; False when ``kubernetes`` was imported already (or is
    not installed), and then nothing changes."""
    if "kubernetes" in sys.modules:
        return False
    spec = importlib.util.find_spec("kubernetes")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(next(iter(spec.submodule_search_locations)))
    for name in _LAZY_PACKAGES:
        directory = root.joinpath(*name.split(".")[1:])
        module = _package(name, directory)
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    return True
