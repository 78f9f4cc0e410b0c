"""Registry push-webhook parsing: bytes in, :class:`ImagePushEvent` list out.

Pure code (stdlib only). Usage from a view::

    parser = PARSERS[source]          # "registry", "dockerhub", "quay", "ghcr", "harbor", ...
    try:
        result = parser(request.body, request.headers)
    except PayloadError as err:
        return JsonResponse({"error": str(err)}, status=400)
    # result.events -> engine; result.response (Event Grid handshake) -> reply body

The caller authenticates the delivery (HMAC/shared token) before parsing.
"""

from registry.webhooks.parsers import (
    MANIFEST_MEDIA_TYPES,
    PARSERS,
    parse_acr,
    parse_dockerhub,
    parse_generic,
    parse_ghcr,
    parse_gitlab,
    parse_harbor,
    parse_quay,
    parse_registry,
)
from registry.webhooks.payloads import MAX_BODY_BYTES, ParseResult, PayloadError
from registry.webhooks.references import normalise_repository

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "MAX_BODY_BYTES",
    "PARSERS",
    "ParseResult",
    "PayloadError",
    "normalise_repository",
    "parse_acr",
    "parse_dockerhub",
    "parse_generic",
    "parse_ghcr",
    "parse_gitlab",
    "parse_harbor",
    "parse_quay",
    "parse_registry",
]
