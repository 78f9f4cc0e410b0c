"""One parser per webhook source: ``parse_<source>(body, headers) -> ParseResult``.

Pure functions (stdlib only, no Django, no Kubernetes). Each raises only :class:`PayloadError`
(malformed JSON, wrong types, missing required fields, unknown event types, invalid tag or
digest) and otherwise returns a :class:`ParseResult`. Authentication (HMAC, shared tokens) is
the receiving view's job and is not done here.

``PARSERS`` maps the source name used in the webhook URL to its parser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from registry.webhooks.payloads import (
    MAX_ITEMS,
    ParseResult,
    PayloadError,
    as_array,
    as_object,
    header,
    load_json,
    optional_object,
    optional_str,
    require_array,
    require_object,
    require_str,
    shown,
)
from registry.webhooks.references import (
    DOCKER_HUB,
    join_repository,
    normalise_repository,
    split_host,
    split_reference,
    url_host,
    validate_digest,
    validate_tag,
)

Headers = Mapping[str, str]
Parser = Callable[[bytes, Headers], ParseResult]

#: Manifest and index media types: a push of one of these with a tag is a new image tag.
MANIFEST_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    }
)

# Actions of the distribution notification format (and ACR, which reuses it) that never mean
# "a new tag exists".
_DISTRIBUTION_IGNORED_ACTIONS = {
    "pull": "pull event",
    "delete": "delete event",
    "mount": "mount event",
}
_ACR_IGNORED_ACTIONS = {
    **_DISTRIBUTION_IGNORED_ACTIONS,
    "chart_push": "chart push",
    "chart_delete": "chart delete",
    "quarantine": "quarantine event",
    "ping": "ping event",
}


# --- distribution notification envelope (registry, GitLab) -----------------------------------


def _registry_event(
    event: object, where: str, result: ParseResult, ignored_actions: Mapping[str, str]
) -> None:
    """One distribution-format event (``action``/``target``/``request``) into ``result``."""
    event = as_object(event, where)
    action = require_str(event, "action", where)
    if action != "push":
        reason = ignored_actions.get(action)
        if reason is None:
            raise PayloadError(f"unknown action {shown(action)} at {where}")
        result.ignore(reason)
        return
    target = require_object(event, "target", where)
    media_type = optional_str(target, "mediaType", f"{where}.target")
    tag = optional_str(target, "tag", f"{where}.target")
    is_manifest = media_type in MANIFEST_MEDIA_TYPES
    if tag is None:
        result.ignore("manifest push without tag" if is_manifest else "blob push without tag")
        return
    if not is_manifest:
        result.ignore("non-manifest push")
        return
    request = optional_object(event, "request", where) or {}
    host = optional_str(request, "host", f"{where}.request")
    if host is None:
        url = optional_str(target, "url", f"{where}.target")
        host = url_host(url) if url else None
    if host is None:
        raise PayloadError(f"{where} has no registry host (request.host or target.url)")
    path = require_str(target, "repository", f"{where}.target")
    digest = optional_str(target, "digest", f"{where}.target")
    result.add_event(
        join_repository(host, path),
        validate_tag(tag),
        validate_digest(digest) if digest is not None else None,
    )


def _distribution_envelope(body: bytes) -> ParseResult:
    payload = as_object(load_json(body), "body")
    result = ParseResult()
    for index, event in enumerate(require_array(payload, "events", "body")):
        _registry_event(event, f"events[{index}]", result, _DISTRIBUTION_IGNORED_ACTIONS)
    return result


def parse_registry(body: bytes, headers: Headers) -> ParseResult:
    """CNCF distribution (``registry:2``, Harbor's embedded registry, Zot…) notifications.

    Format: "Notifications" in the distribution docs
    (https://distribution.github.io/distribution/about/notifications/), envelope
    ``{"events": [...]}`` sent as ``application/vnd.docker.distribution.events.v1+json``
    (v2.x) or ``…events.v2+json`` (v3). Only ``action == "push"`` of a manifest/index media type
    with a non-empty ``target.tag`` is an event; pulls, deletes, mounts, blob pushes and
    digest-only manifest pushes are ignored. The host is ``request.host`` (the Host header the
    pusher used), else the authority of ``target.url``; it is joined with ``target.repository``,
    which never carries a host. The digest is ``target.digest``.
    """
    return _distribution_envelope(body)


def parse_gitlab(body: bytes, headers: Headers) -> ParseResult:
    """GitLab container registry notifications (self-managed GitLab).

    GitLab has no project webhook for registry pushes; its bundled registry sends distribution
    notifications configured under ``registry['notifications']`` in ``gitlab.rb``
    (https://docs.gitlab.com/administration/packages/container_registry/#configure-container-registry-notifications),
    content type ``application/vnd.docker.distribution.events.v1+json``. Same rules as
    :func:`parse_registry`: host from ``request.host``, falling back to ``target.url``.
    """
    return _distribution_envelope(body)


# --- Docker Hub -------------------------------------------------------------------------------


def parse_dockerhub(body: bytes, headers: Headers) -> ParseResult:
    """Docker Hub repository webhooks.

    Format: https://docs.docker.com/docker-hub/repos/manage/webhooks/ ("Example webhook
    payload"). Every delivery is a push: ``docker.io/`` + ``repository.repo_name`` (official
    images under ``library/``) at ``push_data.tag``. No digest is ever sent. ``repo_url`` and
    ``callback_url`` are web URLs and are not used.
    """
    payload = as_object(load_json(body), "body")
    push_data = require_object(payload, "push_data", "body")
    repository = require_object(payload, "repository", "body")
    repo_name = require_str(repository, "repo_name", "repository")
    tag = optional_str(push_data, "tag", "push_data")
    result = ParseResult()
    if tag is None:
        result.ignore("push without tag")
        return result
    result.add_event(join_repository(DOCKER_HUB, repo_name), validate_tag(tag), None)
    return result


# --- Quay -------------------------------------------------------------------------------------


def parse_quay(body: bytes, headers: Headers) -> ParseResult:
    """Quay (quay.io and Red Hat Quay) "Repository Push" notifications, webhook method.

    Format: Red Hat Quay "Repository Notifications" → "Repository Push" (``docker_url``,
    ``updated_tags``). ``updated_tags`` is a list of tag names; early Quay sent an object of
    tag → image id, which is also accepted (keys are the tags). ``docker_url`` carries the
    registry host (``quay.io`` or the self-hosted ``SERVER_HOSTNAME``). No digest is sent.
    Quay's other notifications (build queued/started/completed/failed, vulnerability found)
    use the same endpoint and are ignored.
    """
    payload = as_object(load_json(body), "body")
    result = ParseResult()
    if payload.get("updated_tags") is None:
        if "build_id" in payload:
            result.ignore("build event")
            return result
        if "vulnerability" in payload:
            result.ignore("vulnerability event")
            return result
        raise PayloadError("not a Quay repository push (missing updated_tags)")
    docker_url = require_str(payload, "docker_url", "body")
    for scheme in ("https://", "http://"):
        if docker_url.lower().startswith(scheme):
            docker_url = docker_url[len(scheme) :]
    host, path = split_host(docker_url)
    if host is None:
        raise PayloadError(f"docker_url has no registry host: {shown(docker_url)}")
    repository = join_repository(host, path)
    updated = payload["updated_tags"]
    if isinstance(updated, dict):
        tags: list[Any] = list(updated)
        if len(tags) > MAX_ITEMS:
            raise PayloadError(f"updated_tags has more than {MAX_ITEMS} items")
    else:
        tags = as_array(updated, "updated_tags")
    if not tags:
        result.ignore("push without tags")
    for index, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise PayloadError(f"updated_tags[{index}] must be a string")
        result.add_event(repository, validate_tag(tag), None)
    return result


# --- GitHub Packages / GHCR -------------------------------------------------------------------

_GITHUB_ACTIONS = frozenset({"published", "updated", "create"})
_CONTAINER_KINDS = frozenset({"container", "docker"})
_RETIRED_GITHUB_REGISTRY = "docker.pkg.github.com"
GHCR = "ghcr.io"


def _github_payload(body: bytes, headers: Headers) -> dict[str, Any]:
    content_type = (header(headers, "Content-Type") or "").lower()
    if content_type.startswith("application/x-www-form-urlencoded"):
        if isinstance(body, str):
            text = body
        else:
            try:
                text = bytes(body).decode("utf-8")
            except (UnicodeDecodeError, TypeError):
                raise PayloadError("form body is not valid UTF-8") from None
        try:
            fields = parse_qs(text, max_num_fields=100)
        except ValueError:
            raise PayloadError("form body has too many fields") from None
        if not fields.get("payload"):
            raise PayloadError("form body has no payload field")
        return as_object(load_json(fields["payload"][0]), "body")
    return as_object(load_json(body), "body")


def parse_ghcr(body: bytes, headers: Headers) -> ParseResult:
    """GitHub ``package`` / ``registry_package`` webhooks for the GitHub Container Registry.

    Format: GitHub docs "Webhook events and payloads" → ``package`` and ``registry_package``
    (header ``X-GitHub-Event``; JSON, or the ``payload`` field of a form-encoded body). The
    image is ``package_version.package_url`` (``ghcr.io/<owner>/<name>:<tag>``), else
    ``ghcr.io/<owner.login or namespace>/<name>``, lower-cased; the tag comes from
    ``package_url``, else ``container_metadata.tag.name``; the digest from
    ``container_metadata.tag.digest``, else ``package_version.name`` when it is a digest.
    ``registry.url`` (``https://CONTAINER.pkg.github.com/…``) is never used. Untagged pushes,
    non-container packages and the retired ``docker.pkg.github.com`` registry are ignored;
    ``ping`` is ignored. Signature checking (``X-Hub-Signature-256``) is the caller's job.
    """
    payload = _github_payload(body, headers)
    result = ParseResult()
    event = header(headers, "X-GitHub-Event")
    if event is None:  # infer it, so a replayed body without headers still parses
        if "zen" in payload and "hook_id" in payload:
            event = "ping"
        elif "package" in payload:
            event = "package"
        elif "registry_package" in payload:
            event = "registry_package"
        else:
            raise PayloadError("missing X-GitHub-Event header")
    if event == "ping":
        result.ignore("ping event")
        return result
    if event not in ("package", "registry_package"):
        raise PayloadError(f"unsupported GitHub event {shown(event)}")
    action = require_str(payload, "action", "body")
    if action not in _GITHUB_ACTIONS:
        raise PayloadError(f"unknown {event} action {shown(action)}")
    package = require_object(payload, event, "body")

    kinds = {
        value.lower()
        for value in (
            optional_str(package, "package_type", event),
            optional_str(package, "ecosystem", event),
        )
        if value is not None
    }
    if not kinds & _CONTAINER_KINDS:
        result.ignore("non-container package")
        return result
    registry = optional_object(package, "registry", event) or {}
    registry_url = optional_str(registry, "url", f"{event}.registry")
    registry_host = url_host(registry_url) if registry_url else None
    if registry_host and registry_host.lower() == _RETIRED_GITHUB_REGISTRY:
        result.ignore("retired docker.pkg.github.com registry")
        return result

    where = f"{event}.package_version"
    version = require_object(package, "package_version", event)
    metadata = optional_object(version, "container_metadata", where) or {}
    tag_info = optional_object(metadata, "tag", f"{where}.container_metadata") or {}

    package_url = optional_str(version, "package_url", where)
    url_tag = None
    if package_url is not None:
        name, url_tag, _ = split_reference(package_url)
        host, path = split_host(name)
        repository = join_repository(host or GHCR, path)
    else:
        name = require_str(package, "name", event)
        owner_info = optional_object(package, "owner", event) or {}
        owner = optional_str(owner_info, "login", f"{event}.owner") or require_str(
            package, "namespace", event
        )
        repository = join_repository(GHCR, f"{owner}/{name}")

    tag = url_tag or optional_str(tag_info, "name", f"{where}.container_metadata.tag")
    if not tag:
        result.ignore("untagged push")
        return result
    digest = optional_str(tag_info, "digest", f"{where}.container_metadata.tag")
    if digest is None:
        version_name = optional_str(version, "name", where)
        if version_name is not None and version_name.startswith("sha256:"):
            digest = version_name
    result.add_event(
        repository, validate_tag(tag), validate_digest(digest) if digest is not None else None
    )
    return result


# --- Harbor -----------------------------------------------------------------------------------

_HARBOR_PUSH_TYPES = frozenset({"PUSH_ARTIFACT", "harbor.artifact.pushed"})
_HARBOR_OTHER_TYPES = {
    "PULL_ARTIFACT": "pull event",
    "harbor.artifact.pulled": "pull event",
    "DELETE_ARTIFACT": "delete event",
    "harbor.artifact.deleted": "delete event",
    "CREATE_TAG": "tag created event",
    "harbor.tag.created": "tag created event",
    "DELETE_TAG": "tag deleted event",
    "SCANNING_COMPLETED": "scan event",
    "SCANNING_FAILED": "scan event",
    "SCANNING_STOPPED": "scan event",
    "harbor.scan.completed": "scan event",
    "harbor.scan.failed": "scan event",
    "harbor.scan.stopped": "scan event",
    "QUOTA_EXCEED": "quota event",
    "QUOTA_WARNING": "quota event",
    "harbor.quota.exceeded": "quota event",
    "harbor.quota.warned": "quota event",
    "REPLICATION": "replication event",
    "harbor.replication.status.changed": "replication event",
    "TAG_RETENTION": "tag retention event",
    "harbor.tag_retention.finished": "tag retention event",
    "UPLOAD_CHART": "chart event",
    "DOWNLOAD_CHART": "chart event",
    "DELETE_CHART": "chart event",
}


def parse_harbor(body: bytes, headers: Headers) -> ParseResult:
    """Harbor 2.x native webhooks, "Default" and "CloudEvents" payload formats.

    Format: goharbor.io "Configure Webhooks" (``type: PUSH_ARTIFACT`` with
    ``event_data.resources[]``; CloudEvents ``type: harbor.artifact.pushed`` with
    ``data.resources[]``). Each resource gives ``resource_url``
    (``<external host>/<project>/<repo>:<tag>`` or ``…@<digest>``), ``tag`` and ``digest``.
    Harbor reports only the first tag of a push; a push by digest carries the digest as its
    ``tag`` and is ignored. The Harbor 1.x shape (``event_type: pushImage``) has no registry
    host and is ignored. Other Harbor event types (pull, delete, scan, quota…) are ignored.
    The ``Authorization`` header check is the caller's job.
    """
    payload = as_object(load_json(body), "body")
    result = ParseResult()
    if "type" not in payload and "event_type" in payload:
        require_str(payload, "event_type", "body")
        result.ignore("harbor 1.x payload without registry host")
        return result
    event_type = require_str(payload, "type", "body")
    if event_type not in _HARBOR_PUSH_TYPES:
        reason = _HARBOR_OTHER_TYPES.get(event_type)
        if reason is None:
            raise PayloadError(f"unknown Harbor event type {shown(event_type)}")
        result.ignore(reason)
        return result
    data_key = "event_data" if event_type == "PUSH_ARTIFACT" else "data"
    data = require_object(payload, data_key, "body")
    for index, resource in enumerate(require_array(data, "resources", data_key)):
        where = f"{data_key}.resources[{index}]"
        resource = as_object(resource, where)
        resource_url = require_str(resource, "resource_url", where)
        name, _, _ = split_reference(resource_url)
        host, path = split_host(name)
        if host is None:
            raise PayloadError(f"{where}.resource_url has no registry host")
        repository = join_repository(host, path)
        tag = optional_str(resource, "tag", where)
        digest = optional_str(resource, "digest", where)
        if tag is None or tag.startswith("sha256:"):
            result.ignore("push by digest without tag")
            continue
        result.add_event(
            repository,
            validate_tag(tag),
            validate_digest(digest) if digest is not None else None,
        )
    return result


# --- Azure Container Registry (webhook and Event Grid) ---------------------------------------

_EVENT_GRID_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
_EVENT_GRID_PUSH = "Microsoft.ContainerRegistry.ImagePushed"
_EVENT_GRID_IGNORED = {
    "Microsoft.ContainerRegistry.ImageDeleted": "delete event",
    "Microsoft.ContainerRegistry.ChartPushed": "chart push",
    "Microsoft.ContainerRegistry.ChartDeleted": "chart delete",
    "Microsoft.EventGrid.SubscriptionDeletedEvent": "subscription deleted",
}
_MAX_VALIDATION_CODE = 256


def _event_grid(events: list[Any]) -> ParseResult:
    result = ParseResult()
    for index, item in enumerate(events):
        where = f"[{index}]"
        item = as_object(item, where)
        # Event Grid schema says "eventType"; the CloudEvents 1.0 schema says "type".
        key = "eventType" if "eventType" in item else "type"
        event_type = require_str(item, key, where)
        if event_type == _EVENT_GRID_VALIDATION:
            data = require_object(item, "data", where)
            code = require_str(data, "validationCode", f"{where}.data")
            if len(code) > _MAX_VALIDATION_CODE or not code.isprintable():
                raise PayloadError("invalid validationCode")
            if result.response is None:
                result.response = {"validationResponse": code}
            result.ignore("subscription validation")
        elif event_type == _EVENT_GRID_PUSH:
            data = require_object(item, "data", where)
            _registry_event(data, f"{where}.data", result, _ACR_IGNORED_ACTIONS)
        elif event_type in _EVENT_GRID_IGNORED:
            result.ignore(_EVENT_GRID_IGNORED[event_type])
        else:
            raise PayloadError(f"unknown Event Grid event type {shown(event_type)}")
    return result


def parse_acr(body: bytes, headers: Headers) -> ParseResult:
    """Azure Container Registry: classic ACR webhooks and Azure Event Grid deliveries.

    Classic webhook format: Microsoft Learn "Azure Container Registry webhook reference" — one
    object with ``action`` (``push``, ``delete``, ``chart_push``, ``chart_delete``,
    ``quarantine``, ``ping``), ``target.repository/tag/digest/mediaType`` and
    ``request.host`` (the registry's login server). Event Grid format: Microsoft Learn "Azure
    Container Registry as an Event Grid source" — an array of events in the Event Grid schema
    (``eventType``) or CloudEvents 1.0 schema (``type``); ``Microsoft.ContainerRegistry.
    ImagePushed`` carries the same object in ``data``. A
    ``Microsoft.EventGrid.SubscriptionValidationEvent`` ("Endpoint validation with Event Grid
    event schema") sets ``response = {"validationResponse": <validationCode>}``, which the
    receiver must return with status 200. (CloudEvents-schema subscriptions validate with an
    HTTP OPTIONS request instead, which never reaches a parser.)
    """
    payload = load_json(body)
    if isinstance(payload, list):
        return _event_grid(as_array(payload, "body"))
    payload = as_object(payload, "body")
    if "eventType" in payload or "specversion" in payload:
        return _event_grid([payload])
    result = ParseResult()
    _registry_event(payload, "body", result, _ACR_IGNORED_ACTIONS)
    return result


# --- generic ----------------------------------------------------------------------------------


def _generic_item(item: object, where: str, result: ParseResult) -> None:
    item = as_object(item, where)
    image = require_str(item, "image", where)
    name, image_tag, image_digest = split_reference(image)
    tag = optional_str(item, "tag", where)
    digest = optional_str(item, "digest", where)
    if image_tag is not None and tag is not None and image_tag != tag:
        raise PayloadError(f"{where}: tag in image and tag field differ")
    if image_digest is not None and digest is not None and image_digest != digest:
        raise PayloadError(f"{where}: digest in image and digest field differ")
    tag = tag if tag is not None else image_tag
    digest = digest if digest is not None else image_digest
    if not tag:
        raise PayloadError(f"{where}: missing tag")
    result.add_event(
        normalise_repository(name),
        validate_tag(tag),
        validate_digest(digest) if digest is not None else None,
    )


def parse_generic(body: bytes, headers: Headers) -> ParseResult:
    """Headwind's own format, for CI pipelines and scripts.

    One object or an array of them::

        {"image": "registry.example.com/team/app", "tag": "1.2.3", "digest": "sha256:…"}
        {"image": "registry.example.com/team/app:1.2.3"}

    ``image`` is required and follows docker's naming rules (``nginx`` means
    ``docker.io/library/nginx``). The tag is required, either in ``image`` or as ``tag``; the
    digest is optional. When both spellings are given they must agree.
    """
    payload = load_json(body)
    result = ParseResult()
    if isinstance(payload, list):
        for index, item in enumerate(as_array(payload, "body")):
            _generic_item(item, f"[{index}]", result)
    else:
        _generic_item(payload, "body", result)
    return result


PARSERS: dict[str, Parser] = {
    "registry": parse_registry,
    "dockerhub": parse_dockerhub,
    "quay": parse_quay,
    "ghcr": parse_ghcr,
    "harbor": parse_harbor,
    "acr": parse_acr,
    "gitlab": parse_gitlab,
    "generic": parse_generic,
}
