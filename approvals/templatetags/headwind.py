"""Template helpers for the dashboard."""

from __future__ import annotations

from django import template
from django.utils.timesince import timesince

from approvals import live

register = template.Library()


@register.simple_tag
def row_id(ur) -> str:
    """The row's HTML id (``live.row_id``): live updates find rows by it."""
    return live.row_id(ur.namespace, ur.name)


@register.filter
def image_parts(image: str) -> dict[str, str]:
    """``reg/app:1.2`` → ``{"repository": "reg/app", "ref": ":1.2"}`` (``@sha256:…`` shortened).

    The dashboard prints the repository quietly and the tag or digest boldly, so a change of
    version is visible at a glance.
    """
    image = image or ""
    base, at, digest = image.partition("@")
    head, colon, tag = base.rpartition(":")
    if colon and "/" not in tag:
        repository, ref = head, f":{tag}"
    else:
        repository, ref = base, ""
    if at:
        algorithm, _, value = digest.partition(":")
        ref += f"@{algorithm}:{value[:12]}" if value else f"@{digest}"
    return {"repository": repository, "ref": ref}


@register.filter
def phase_class(phase: str) -> str:
    return f"phase-{(phase or 'unknown').lower()}"


@register.filter
def ago(moment) -> str:
    """``3 hours ago`` (one unit only; the exact time goes in the element's title)."""
    if not moment:
        return ""
    text = timesince(moment, depth=1)
    return "just now" if text.startswith("0\xa0") else f"{text} ago"
