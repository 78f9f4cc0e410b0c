"""One parser per webhook source: ``parse_<source>(body, headers) -> ParseResult``.

Pure functions (stdlib only, no Django, no Kubernetes). Each raises only :class:`PayloadError`
(malformed JSON, wrong types, missing required fields, unknown event types, invalid tag or
digest) and otherwise returns a :class:`ParseResult`. Authentication (HMAC, shared tokens) is
the receiving view's job and is not done here.

``PARSERS`` maps the source name used in the webhook URL to its parser. The parsers of sources
whose payloads name no registry host (``jfrog``, ``nexus``, Harbor 1.x on ``harbor``) also take a
:class:`~registry.webhooks.hosts.HostMap`; :func:`parse` passes it to them and applies its host
rewrites to every source's events.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from registry.webhooks.hosts import NO_HOSTS, HostMap, no_host_reason, place
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


_HARBOR_V1_OTHER_TYPES = {
    "pullImage": "pull event",
    "deleteImage": "delete event",
    "uploadChart": "chart event",
    "downloadChart": "chart event",
    "deleteChart": "chart event",
    "scanningCompleted": "scan event",
    "scanningFailed": "scan event",
}


def _harbor_v1(payload: dict[str, Any], hosts: HostMap) -> ParseResult:
    """Harbor 1.x (``event_type: pushImage``): no host in the payload; ``harbor=`` gives it."""
    result = ParseResult()
    event_type = require_str(payload, "event_type", "body")
    placed = hosts.prefix("harbor")
    if placed is None:
        result.ignore(no_host_reason("harbor"))
        return result
    if event_type != "pushImage":
        reason = _HARBOR_V1_OTHER_TYPES.get(event_type)
        if reason is None:
            raise PayloadError(f"unknown Harbor event type {shown(event_type)}")
        result.ignore(reason)
        return result
    prefix, _ = placed
    for index, item in enumerate(require_array(payload, "events", "body")):
        where = f"events[{index}]"
        item = as_object(item, where)
        name = optional_str(item, "full_name", where) or require_str(item, "repo_name", where)
        tag = optional_str(item, "tag", where)
        if tag is None:
            result.ignore("push without tag")
            continue
        # image_id is the image (config) id, not the manifest digest: no digest is reported.
        result.add_event(place(prefix, name), validate_tag(tag), None)
    return result


def parse_harbor(body: bytes, headers: Headers, hosts: HostMap = NO_HOSTS) -> ParseResult:
    """Harbor 2.x native webhooks, "Default" and "CloudEvents" payload formats; Harbor 1.x.

    Format: goharbor.io "Configure Webhooks" (``type: PUSH_ARTIFACT`` with
    ``event_data.resources[]``; CloudEvents ``type: harbor.artifact.pushed`` with
    ``data.resources[]``). Each resource gives ``resource_url``
    (``<external host>/<project>/<repo>:<tag>`` or ``…@<digest>``), ``tag`` and ``digest``.
    Harbor reports only the first tag of a push; a push by digest carries the digest as its
    ``tag`` and is ignored. Other Harbor event types (pull, delete, scan, quota…) are ignored.
    The Harbor 1.x shape (``event_type: pushImage``, ``events[].full_name``/``tag``, Harbor
    1.10 docs) names no registry host: with ``harbor=<host>`` in the host map each event is
    ``<host>/<full_name>:<tag>`` (``image_id`` is not a manifest digest, so none is given);
    without it the delivery is ignored. The ``Authorization`` header check is the caller's job.
    """
    payload = as_object(load_json(body), "body")
    if "type" not in payload and "event_type" in payload:
        return _harbor_v1(payload, hosts)
    result = ParseResult()
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


# --- Google Artifact Registry (Pub/Sub push) --------------------------------------------------

_GAR_IGNORED_ACTIONS = {"DELETE": "delete event"}


def _base64(text: str, where: str) -> bytes:
    """Base64, standard or URL-safe alphabet, padding optional (protobuf's JSON ``bytes``)."""
    compact = text.strip().replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(f"{where} is not base64") from None


def _gar_notification(notification: object, where: str, result: ParseResult) -> None:
    """One Artifact Registry notification: ``{"action", "digest", "tag"}``."""
    notification = as_object(notification, where)
    action = require_str(notification, "action", where)
    if action != "INSERT":
        # Only INSERT and DELETE are documented. Pub/Sub redelivers whatever is refused until
        # it dead-letters, so a future action is ignored rather than refused.
        result.ignore(_GAR_IGNORED_ACTIONS.get(action, "other action"))
        return
    tag_ref = optional_str(notification, "tag", where)
    digest_ref = optional_str(notification, "digest", where)
    if tag_ref is None:
        result.ignore("push without tag")
        return
    name, tag, digest = split_reference(tag_ref)
    if not tag or digest is not None:
        raise PayloadError(f"{where}.tag is not <host>/<repository>:<tag>")
    host, path = split_host(name)
    if host is None:
        raise PayloadError(f"{where}.tag has no registry host")
    repository = join_repository(host, path)
    digest = None
    if digest_ref is not None:
        digest_name, _, digest = split_reference(digest_ref)
        digest_host, digest_path = split_host(digest_name)
        if not digest or digest_host is None:
            raise PayloadError(f"{where}.digest is not <host>/<repository>@<digest>")
        if join_repository(digest_host, digest_path) != repository:
            raise PayloadError(f"{where}: tag and digest name different repositories")
    result.add_event(
        repository, validate_tag(tag), validate_digest(digest) if digest is not None else None
    )


def parse_gar(body: bytes, headers: Headers) -> ParseResult:
    """Google Artifact Registry (and Container Registry) notifications, by Pub/Sub push.

    Artifact Registry publishes to the topic ``gcr`` (Google Cloud docs, "Configuring Pub/Sub
    notifications") a JSON message ``{"action": "INSERT"|"DELETE", "digest":
    "<host>/<project>/<repo>/<image>@sha256:…", "tag": "<host>/…/<image>:<tag>"}``; an upload
    without a tag has no ``tag``. A push subscription POSTs it wrapped (Pub/Sub docs "Push
    subscriptions": ``{"message": {"data": <base64 message>, "attributes", "messageId",
    "publishTime"}, "subscription"}``), or bare when "payload unwrapping" is on; both are read.
    INSERT with a tag is an event (the digest, when present, must name the same repository);
    INSERT without a tag and DELETE are ignored. Data that is not base64 or not a JSON object is
    a PayloadError (400), which Pub/Sub retries with backoff until the message dead-letters.
    """
    payload = as_object(load_json(body), "body")
    result = ParseResult()
    if "message" not in payload and "action" in payload:  # payload unwrapping
        _gar_notification(payload, "body", result)
        return result
    message = require_object(payload, "message", "body")
    data = require_str(message, "data", "message")
    decoded = _base64(data, "message.data")
    try:
        notification = load_json(decoded)
    except PayloadError as exc:
        raise PayloadError(f"message.data: {exc.reason}") from None
    _gar_notification(notification, "message.data", result)
    return result


# --- JFrog Artifactory ------------------------------------------------------------------------

_JFROG_DOCKER_IGNORED = {
    "deleted": "delete event",
    "promoted": "promote event",
}


def parse_jfrog(body: bytes, headers: Headers, hosts: HostMap = NO_HOSTS) -> ParseResult:
    """JFrog Artifactory predefined webhooks, Docker domain.

    Format: JFrog Platform Administration "Webhooks" → "Domain: Docker", "Docker Tag was
    Pushed": ``{"repo_key", "event_type": "pushed", "path", "name", "sha256", "size",
    "image_name", "tag", "platforms"}``, delivered inside the envelope ``{"domain": "docker",
    "event_type": "pushed", "data": {…}, "subscription_key", "jpd_origin", "source"}`` (JFrog
    "Event types"), or bare as documented; both are read. Only ``pushed`` with a tag is an
    event; ``deleted``/``promoted`` and every other domain (artifact, build…) are ignored.

    The payload names no registry host (``jpd_origin`` is the platform's URL, not necessarily
    where docker pulls from), so the host map places it: ``jfrog:<repo_key>=host[/path]`` gives
    ``host[/path]/<image_name>`` (subdomain or port access, or pulls through another
    repository), else ``jfrog=host`` gives ``host/<repo_key>/<image_name>`` (the repository
    path access method, JFrog Cloud's). Without either the push is ignored. ``sha256`` is the
    checksum of the stored manifest file, which JFrog does not document as the registry
    digest, so no digest is reported.
    """
    payload = as_object(load_json(body), "body")
    result = ParseResult()
    if "domain" in payload or "data" in payload:
        domain = require_str(payload, "domain", "body")
        if domain != "docker":
            result.ignore("non-docker event")
            return result
        event_type = require_str(payload, "event_type", "body")
        data = require_object(payload, "data", "body")
        where = "data"
    else:  # the docker data object alone, as the docs show it
        data, where = payload, "body"
        event_type = require_str(data, "event_type", where)
    if event_type != "pushed":
        result.ignore(_JFROG_DOCKER_IGNORED.get(event_type, "other docker event"))
        return result
    repo_key = require_str(data, "repo_key", where)
    image_name = require_str(data, "image_name", where)
    tag = optional_str(data, "tag", where)
    if tag is None:
        result.ignore("push without tag")
        return result
    placed = hosts.prefix("jfrog", repo_key)
    if placed is None:
        result.ignore(no_host_reason("jfrog"))
        return result
    prefix, per_repository = placed
    path = image_name if per_repository else f"{repo_key}/{image_name}"
    result.add_event(place(prefix, path), validate_tag(tag), None)
    return result


# --- Sonatype Nexus Repository ----------------------------------------------------------------

NEXUS_COMPONENT_EVENT = "rm:repository:component"
NEXUS_ASSET_EVENT = "rm:repository:asset"
_NEXUS_ACTIONS = frozenset({"CREATED", "UPDATED", "DELETED"})


def _nexus_tag(version: str | None, result: ParseResult) -> str | None:
    if version is None:
        result.ignore("push without tag")
        return None
    if ":" in version:  # a manifest stored under its digest (a push by digest, an index child)
        result.ignore("push by digest without tag")
        return None
    return validate_tag(version)


def parse_nexus(body: bytes, headers: Headers, hosts: HostMap = NO_HOSTS) -> ParseResult:
    """Sonatype Nexus Repository 3 "Webhook: Repository" capability, docker repositories.

    Format: Sonatype help "Webhooks" → "Example Headers And Payloads": header
    ``X-Nexus-Webhook-Id`` (``rm:repository:component`` or ``rm:repository:asset``) and a body
    ``{"timestamp", "nodeId", "initiator", "repositoryName", "action": "CREATED"|"UPDATED"|
    "DELETED", "component": {"id", "componentId", "format", "name", "group", "version"}}`` (or
    ``"asset": {"id", "assetId", "format", "name"}``). The kind is read from the header, else
    from the body. For docker, a component is one tag (``name`` = ``library/nginx``,
    ``version`` = the tag); an asset is a stored file, and a tag's manifest is the asset
    ``v2/<name>/manifests/<tag>``.

    Events: a component CREATED (a new tag), and a manifest asset CREATED or UPDATED (a new tag,
    or an existing tag pushed again with new content, which creates no component). Other
    actions, blobs, manifests stored by digest and non-docker formats are ignored. No digest is
    ever sent. The payload names no registry host: ``nexus:<repositoryName>=host[/path]`` or
    ``nexus=host`` in the host map gives ``host[/path]/<name>`` (a docker connector port or a
    proxy in front of Nexus serves one repository per host); without it the push is ignored.
    Signature checking (``X-Nexus-Webhook-Signature``) is the caller's job.
    """
    payload = as_object(load_json(body), "body")
    result = ParseResult()
    kind = header(headers, "X-Nexus-Webhook-Id")
    if kind is None:  # a replayed body without headers
        kind = NEXUS_COMPONENT_EVENT if "component" in payload else NEXUS_ASSET_EVENT
    if kind not in (NEXUS_COMPONENT_EVENT, NEXUS_ASSET_EVENT):
        result.ignore("not a repository component or asset event")
        return result
    repository_name = require_str(payload, "repositoryName", "body")
    action = require_str(payload, "action", "body")
    if action not in _NEXUS_ACTIONS:
        raise PayloadError(f"unknown Nexus action {shown(action)}")
    key = "component" if kind == NEXUS_COMPONENT_EVENT else "asset"
    item = require_object(payload, key, "body")
    if optional_str(item, "format", key) != "docker":
        result.ignore(f"non-docker {key}")
        return result
    name = require_str(item, "name", key)
    if key == "component":
        if action != "CREATED":
            result.ignore(f"component {action.lower()} event")
            return result
        tag = _nexus_tag(optional_str(item, "version", key), result)
    else:
        if action == "DELETED":
            result.ignore("asset deleted event")
            return result
        manifest_path, marker, reference = name.rpartition("/manifests/")
        if not marker or not manifest_path.startswith("v2/") or "/" in reference:
            result.ignore("non-manifest asset")
            return result
        name = manifest_path[len("v2/") :]
        tag = _nexus_tag(reference or None, result)
    if tag is None:
        return result
    placed = hosts.prefix("nexus", repository_name)
    if placed is None:
        result.ignore(no_host_reason("nexus"))
        return result
    result.add_event(place(placed[0], name), tag, None)
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
    "gar": parse_gar,
    "jfrog": parse_jfrog,
    "nexus": parse_nexus,
    "generic": parse_generic,
}

#: The parsers that take the host map (:data:`~registry.webhooks.hosts.HOSTLESS_SOURCES`).
_HOSTLESS_PARSERS: dict[str, Callable[[bytes, Headers, HostMap], ParseResult]] = {
    "harbor": parse_harbor,
    "jfrog": parse_jfrog,
    "nexus": parse_nexus,
}


def parse(source: str, body: bytes, headers: Headers, hosts: HostMap = NO_HOSTS) -> ParseResult:
    """Parse one delivery for ``source`` (a key of :data:`PARSERS`) with the host map: host-less
    sources are placed by it, and every event's host is rewritten by it. Raises KeyError for an
    unknown source and PayloadError for a bad body."""
    hostless = _HOSTLESS_PARSERS.get(source)
    if hostless is not None:
        result = hostless(body, headers, hosts)
    else:
        result = PARSERS[source](body, headers)
    return hosts.apply(result)
