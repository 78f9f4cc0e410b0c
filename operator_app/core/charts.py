"""Helm chart references: a chart version in a chart repository, as one string.

A chart is the second kind of artifact Headwind moves (the first is a container image). Both
go through the same decision (:func:`operator_app.core.policy.decide`), so a chart reference
offers what an :class:`~operator_app.core.images.ImageRef` offers there: ``effective_tag`` (the
version), ``digest`` (None: chart versions are immutable), ``with_tag`` and ``repository`` (the
key that matches a target with the tags found by polling or pushed to a registry).

Spelling, used in UpdateRequests and shown to people:

* an OCI chart (a ``HelmRepository`` of type ``oci``, or an ``OCIRepository``):
  ``oci://registry.example.com/charts/podinfo:6.5.0``. Its repository key is the one the image
  side uses (``registry.example.com/charts/podinfo``), so a registry webhook for a pushed chart
  finds the HelmRelease exactly as a pushed image finds a Deployment;
* a chart in an HTTP(S) repository: ``https://charts.example.com/stable/podinfo:6.5.0``: the
  repository URL, the chart name and the version. Its key keeps the scheme
  (``https://charts.example.com/stable/podinfo``), so it can never collide with an image.

Helm stores a version's build metadata ``+`` as ``_`` in OCI tags (a tag cannot hold ``+``);
:func:`version_from_oci_tag` and :func:`oci_tag_for` translate.

Pure module: stdlib and sibling core modules only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from .images import InvalidImageReference, join_repository, split_domain
from .versions import parse_tag

__all__ = ["ChartRef", "InvalidChartReference", "is_pinned_version", "oci_tag_for",
           "parse_chart", "version_from_oci_tag"]

_CHART_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9_.]*[a-z0-9])?")
_VERSION_RE = re.compile(r"[0-9A-Za-z_.+-]{1,128}")


class InvalidChartReference(ValueError):
    def __init__(self, reference: str, problem: str) -> None:
        super().__init__(f"invalid chart reference {reference!r}: {problem}")
        self.reference = reference
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ChartRef:
    """``chart`` at ``version`` in the repository at ``source`` (``oci://…`` or ``http(s)://…``)."""

    source: str
    chart: str
    version: str

    @property
    def is_oci(self) -> bool:
        return self.source.startswith("oci://")

    @property
    def repository(self) -> str:
        """The key that matches this target with polled versions and pushed tags."""
        if self.is_oci:
            host, path = split_domain(self.source[len("oci://"):].rstrip("/") + "/" + self.chart)
            return join_repository(host, path)
        return f"{self.source.rstrip('/')}/{self.chart}"

    @staticmethod
    def valid_tag(tag: str) -> bool:
        """A chart version (SemVer 2 may carry ``+build`` metadata, unlike an image tag)."""
        return _VERSION_RE.fullmatch(tag) is not None

    @property
    def effective_tag(self) -> str:
        return self.version

    @property
    def digest(self) -> None:
        return None

    def with_tag(self, tag: str, digest: str | None = None) -> str:
        """The reference at another version (chart versions are immutable: no digest pin)."""
        if not _VERSION_RE.fullmatch(tag):
            raise InvalidChartReference(f"{self.source}/{self.chart}:{tag}", "invalid version")
        return str(replace(self, version=tag))

    def __str__(self) -> str:
        return f"{self.source.rstrip('/')}/{self.chart}:{self.version}"


def parse_chart(text: str) -> ChartRef:
    """Read a reference written by ``str(ChartRef)``."""
    if not isinstance(text, str) or "://" not in text:
        raise InvalidChartReference(str(text), "expected oci://, http:// or https://")
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("oci", "http", "https"):
        raise InvalidChartReference(text, f"unsupported scheme {scheme!r}")
    source, slash, last = text.rpartition("/")
    chart, colon, version = last.rpartition(":")
    if not slash or not colon or not chart:
        raise InvalidChartReference(text, "expected <repository>/<chart>:<version>")
    if not _CHART_NAME_RE.fullmatch(chart):
        raise InvalidChartReference(text, f"invalid chart name {chart!r}")
    if not _VERSION_RE.fullmatch(version):
        raise InvalidChartReference(text, f"invalid version {version!r}")
    if not urlsplit(source).netloc:
        raise InvalidChartReference(text, "the repository URL has no host")
    ref = ChartRef(source=source, chart=chart, version=version)
    if ref.is_oci:
        try:
            ref.repository  # noqa: B018 - validates the registry host and path
        except InvalidImageReference as exc:
            raise InvalidChartReference(text, exc.problem) from None
    return ref


def is_pinned_version(text: str | None) -> bool:
    """True for one exact version (``6.5.0``, ``v1.2.3``); False for a range (``6.x``,
    ``>=6.0.0``, ``^6``), ``*`` or nothing, which mean that Flux itself follows the chart."""
    if not text or not text.strip():
        return False
    parsed = parse_tag(text.strip())
    return parsed is not None and parsed.precision == 3


def version_from_oci_tag(tag: str) -> str:
    """Helm writes ``1.2.3+build.1`` as the OCI tag ``1.2.3_build.1``."""
    return tag.replace("_", "+")


def oci_tag_for(version: str) -> str:
    return version.replace("+", "_")
