"""The one event shape every trigger (registry webhook, poller) hands to the engine."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EventSource(StrEnum):
    WEBHOOK = "webhook"
    POLLING = "polling"


@dataclass(frozen=True, slots=True)
class ImagePushEvent:
    """A tag (and, when known, its manifest digest) that now exists in a registry.

    ``repository`` is normalised the way the container runtime does it
    (``docker.io/library/nginx``, ``localhost:5000/team/app``), so the engine can compare it with
    a container's normalised image without knowing where the event came from.
    """

    repository: str
    tag: str
    digest: str | None = None
    source: EventSource = EventSource.WEBHOOK
    #: When the event was queued (Unix seconds), if known: lets a handler bound its retries.
    received_at: float | None = None
