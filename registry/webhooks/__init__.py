"""Registry push-webhook parsing: bytes in, :class:`ImagePushEvent` list out.

Pure code (stdlib only). Usage from a view::

    hosts = HostMap(settings.HEADWIND.registry_host_map)   # HEADWIND_REGISTRY_HOST_MAP
    try:
        result = parse(source, request.body, request.headers, hosts)   # source in PARSERS
    except PayloadError as err:
        return JsonResponse({"error": str(err)}, status=400)
    # result.events -> engine; result.response (Event Grid handshake) -> reply body

The caller authenticates the delivery (HMAC/shared token/OIDC) before parsing.
"""

from registry.webhooks.hosts import HOSTLESS_SOURCES, NO_HOSTS, HostMap
from registry.webhooks.parsers import (
    MANIFEST_MEDIA_TYPES,
    PARSERS,
    parse,
    parse_acr,
    parse_dockerhub,
    parse_gar,
    parse_generic,
    parse_ghcr,
    parse_gitlab,
    parse_harbor,
    parse_jfrog,
    parse_nexus,
    parse_quay,
    parse_registry,
)
from registry.webhooks.payloads import MAX_BODY_BYTES, ParseResult, PayloadError
from registry.webhooks.references import normalise_repository

__all__ = [
    "HOSTLESS_SOURCES",
    "MANIFEST_MEDIA_TYPES",
    "MAX_BODY_BYTES",
    "NO_HOSTS",
    "PARSERS",
    "HostMap",
    "ParseResult",
    "PayloadError",
    "normalise_repository",
    "parse",
    "parse_acr",
    "parse_dockerhub",
    "parse_gar",
    "parse_generic",
    "parse_ghcr",
    "parse_gitlab",
    "parse_harbor",
    "parse_jfrog",
    "parse_nexus",
    "parse_quay",
    "parse_registry",
]
