"""Webhook parsers: real and documented payloads in, ImagePushEvents out.

Inputs: the files in tests/fixtures/webhooks (copied from the shared reference set, whose
INDEX.md gives the expected `host/repository:tag@digest`, plus our own quay/acr/eventgrid/generic/
gar/jfrog/nexus files built from the vendors' documented shapes or recorded deliveries; see
LOCAL.md there) and small inline payloads. Asserted: exact repository/tag/digest values, ignore
reasons, PayloadError for bad input, HEADWIND_REGISTRY_HOST_MAP's parsing and effect, the
signatures and tokens registry/auth.py accepts (including Pub/Sub's OIDC token, against a real
key set served on loopback), and, by fuzzing, that no input makes a parser raise anything but
PayloadError.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwind_site.config import HOSTLESS_WEBHOOK_SOURCES, ConfigError, OperatorSettings
from operator_app.core.events import EventSource, ImagePushEvent
from registry import auth
from registry.webhooks import (
    HOSTLESS_SOURCES,
    MAX_BODY_BYTES,
    NO_HOSTS,
    PARSERS,
    HostMap,
    ParseResult,
    PayloadError,
    normalise_repository,
    parse,
    parse_acr,
    parse_dockerhub,
    parse_gar,
    parse_generic,
    parse_ghcr,
    parse_harbor,
    parse_jfrog,
    parse_nexus,
    parse_quay,
    parse_registry,
)
from registry.webhooks.hosts import no_host_reason

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"

D_GITHUB3 = "sha256:89160c587d0c36bf54090497a465445c14980ba48efbcf3b0d03c49b76f3feb8"
D_GITHUB5 = "sha256:7d3848ba2f2e7f69bebb4b576e5fad0379b64a0b1512aee6ad0ec9e7c6319fed"
D_HARBOR3 = "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
D_GITLAB1 = "sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d"
D_ACR1 = "sha256:6278457d4631f9b205f091ce1c011a5be684ddd055b83164a2b2481be84ff6b6"
D_EG1 = "sha256:2429cf915bc88662947b50848c5f78e601c0e8995d2f8cca2f650c71a5e51f40"
D_EG2 = "sha256:68a6a38f5a0894b8a5902c5744ef366807c13be6410786a3f766a1984ff48fb6"
D_GEN1 = "sha256:088d1de33d429fd085243a991123d465f5bda0b35224b285a791e6d943170016"
D_GEN3 = "sha256:11a6ac7943b762920857435f6d63e8e5e385f605d0d5dbeb71238716762eeac3"
D_GAR1 = "sha256:2bab379a890a8d7554ba0ea94c3e5b737337c90222301dac88349af12015655a"
DIGEST = "sha256:" + "ab" * 32

NEXUS_COMPONENT = {"X-Nexus-Webhook-Id": "rm:repository:component"}
NEXUS_ASSET = {"X-Nexus-Webhook-Id": "rm:repository:asset"}
#: fluxcd/flux-recv's Test_Nexus: its secret, and the signature of nexus-1.json under it.
NEXUS_SECRET = "gk0qp4u98xy0vntojv81i8zcjr4zw7xd6c4ugzad"
NEXUS_SIGNATURE = "d06eea380d4631e8c1180b689d10d9ba83ab68f6"


def host_map(text: str) -> HostMap:
    """A HostMap exactly as the view builds one from HEADWIND_REGISTRY_HOST_MAP."""
    settings_ = OperatorSettings.from_environ({"HEADWIND_REGISTRY_HOST_MAP": text})
    return HostMap(settings_.registry_host_map)

PACKAGE = {"X-GitHub-Event": "package"}
REGISTRY_PACKAGE = {"X-GitHub-Event": "registry_package"}

# (parser, fixture, headers, events as (repository, tag, digest), ignore reasons)
FIXTURE_CASES: list[tuple[str, str, dict[str, str], list[tuple], list[str]]] = [
    ("dockerhub", "dockerhub-2", {}, [("docker.io/svendowideit/testhook", "latest", None)], []),
    ("dockerhub", "dockerhub-3", {}, [("docker.io/karolisr/keel", "0.1.7", None)], []),
    ("ghcr", "github-1", PACKAGE, [], ["untagged push"]),
    ("ghcr", "github-2", REGISTRY_PACKAGE, [], ["untagged push"]),
    ("ghcr", "github-3", PACKAGE, [("ghcr.io/theryangeary/www", "0e2a89b", D_GITHUB3)], []),
    ("ghcr", "github-4", REGISTRY_PACKAGE, [], ["retired docker.pkg.github.com registry"]),
    (
        "ghcr",
        "github-5",
        PACKAGE,
        [("ghcr.io/utaitebox/utaitebox-server", "3.2.1", D_GITHUB5)],
        [],
    ),
    ("harbor", "harbor-1", {}, [], ["push by digest without tag"]),
    ("harbor", "harbor-2", {}, [], ["push by digest without tag"]),
    ("harbor", "harbor-3", {}, [("hub.harbor.com/test-webhook/debian", "latest", D_HARBOR3)], []),
    ("harbor", "harbor-4", {}, [], [no_host_reason("harbor")]),
    ("gitlab", "gitlab-1", {}, [("registry.git.erxes.io/foo/bar", "1.6.1", D_GITLAB1)], []),
    ("registry", "gitlab-1", {}, [("registry.git.erxes.io/foo/bar", "1.6.1", D_GITLAB1)], []),
    (
        "registry",
        "distribution-1",
        {},
        [],
        ["manifest push without tag", "blob push without tag", "blob push without tag"],
    ),
    ("registry", "distribution-2", {}, [], ["pull event"]),
    (
        "quay",
        "quay-1",
        {},
        [("quay.io/acme/storefront", "2.4.1", None), ("quay.io/acme/storefront", "latest", None)],
        [],
    ),
    (
        "quay",
        "quay-2",
        {},
        [("quay.internal.example.com:8443/platform/billing-api", "v3.0.0", None)],
        [],
    ),
    ("quay", "quay-3", {}, [], ["build event"]),
    ("acr", "acr-1", {}, [("contosoprod.azurecr.io/payments/ledger", "1.8.0", D_ACR1)], []),
    ("acr", "acr-2", {}, [], ["delete event"]),
    ("acr", "eventgrid-1", {}, [("contosoprod.azurecr.io/payments/ledger", "1.8.1", D_EG1)], []),
    (
        "acr",
        "eventgrid-2",
        {},
        [("contosoprod.azurecr.io/web/frontend", "2026.03.02", D_EG2)],
        [],
    ),
    (
        "acr",
        "eventgrid-3",
        {"aeg-event-type": "SubscriptionValidation"},
        [],
        ["subscription validation"],
    ),
    ("acr", "eventgrid-4", {}, [], ["delete event", "chart push"]),
    ("gar", "gar-1", {}, [("us-docker.pkg.dev/acme-prod/containers/checkout", "1.4.3", D_GAR1)],
     []),
    ("gar", "gar-2", {}, [("us.gcr.io/am/am.kebab.api", "test", None)], []),
    ("gar", "gar-3", {}, [], ["delete event"]),
    ("gar", "gar-4", {}, [], ["push without tag"]),
    # Host-less sources without HEADWIND_REGISTRY_HOST_MAP: nothing can be placed.
    ("jfrog", "jfrog-1", {}, [], [no_host_reason("jfrog")]),
    ("jfrog", "jfrog-2", {}, [], [no_host_reason("jfrog")]),
    ("jfrog", "jfrog-3", {}, [], [no_host_reason("jfrog")]),
    ("jfrog", "jfrog-4", {}, [], ["non-docker event"]),
    ("jfrog", "jfrog-5", {}, [], ["delete event"]),
    ("nexus", "nexus-1", NEXUS_COMPONENT, [], [no_host_reason("nexus")]),
    ("nexus", "nexus-2", NEXUS_ASSET, [], ["non-docker asset"]),
    ("nexus", "nexus-3", NEXUS_ASSET, [], [no_host_reason("nexus")]),
    ("nexus", "nexus-4", NEXUS_ASSET, [], ["non-manifest asset"]),
    ("nexus", "nexus-5", NEXUS_COMPONENT, [], ["component deleted event"]),
    ("generic", "generic-1", {}, [("registry.example.com/team/api", "1.2.3", D_GEN1)], []),
    ("generic", "generic-2", {}, [("docker.io/library/nginx", "1.27.1", None)], []),
    (
        "generic",
        "generic-3",
        {},
        [
            ("localhost:5000/tools/migrate", "dev-42", None),
            ("ghcr.io/acme/worker", "v2.0.0-rc.1", D_GEN3),
        ],
        [],
    ),
]

# (parser, fixture, headers, HEADWIND_REGISTRY_HOST_MAP, events): the same files with a host map.
MAPPED_FIXTURE_CASES: list[tuple[str, str, dict[str, str], str, list[tuple]]] = [
    ("jfrog", "jfrog-1", {}, "jfrog:docker-remote-cache=docker.acme.example",
     [("docker.acme.example/library/ubuntu", "latest", None)]),
    ("jfrog", "jfrog-2", {}, "jfrog=acme.jfrog.io",
     [("acme.jfrog.io/docker-remote-cache/library/ubuntu", "latest", None)]),
    ("jfrog", "jfrog-3", {}, "jfrog=ACME.jfrog.io",
     [("acme.jfrog.io/docker-local/payments/ledger", "2.4.1", None)]),
    ("nexus", "nexus-1", NEXUS_COMPONENT, "nexus=container.example.com",
     [("container.example.com/app1/alpine", "3.4", None)]),
    ("nexus", "nexus-3", NEXUS_ASSET,
     "nexus=nexus.example.com,nexus:docker-hosted=nexus.example.com:8443",
     [("nexus.example.com:8443/team/billing", "2.1.0", None)]),
    ("harbor", "harbor-4", {}, "harbor=harbor.example.com",
     [("harbor.example.com/prj/repo1", "latest", None)]),
    ("gitlab", "gitlab-1", {}, "registry.git.erxes.io=registry.example.com",
     [("registry.example.com/foo/bar", "1.6.1", D_GITLAB1)]),
    ("gar", "gar-1", {}, "us-docker.pkg.dev=gar.example.com",
     [("gar.example.com/acme-prod/containers/checkout", "1.4.3", D_GAR1)]),
]

ALL_FIXTURES = sorted(FIXTURES.glob("*.json"))


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture(name))


def encode(value: object) -> bytes:
    return json.dumps(value).encode()


def triples(result: ParseResult) -> list[tuple[str, str, str | None]]:
    return [(event.repository, event.tag, event.digest) for event in result.events]


# --- every fixture --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name", "headers", "events", "ignored"),
    FIXTURE_CASES,
    ids=[f"{case[0]}-{case[1]}" for case in FIXTURE_CASES],
)
def test_fixture_parses_to_expected_events(source, name, headers, events, ignored):
    result = PARSERS[source](fixture(name), headers)
    assert triples(result) == events
    assert result.ignored == ignored
    assert all(event.source is EventSource.WEBHOOK for event in result.events)
    assert all(isinstance(event, ImagePushEvent) for event in result.events)


@pytest.mark.parametrize(
    ("source", "name", "headers", "mapping", "events"),
    MAPPED_FIXTURE_CASES,
    ids=[f"{case[0]}-{case[1]}" for case in MAPPED_FIXTURE_CASES],
)
def test_fixture_with_a_host_map_parses_to_expected_events(source, name, headers, mapping, events):
    result = parse(source, fixture(name), headers, host_map(mapping))
    assert triples(result) == events
    assert result.ignored == []


def test_every_fixture_file_is_covered():
    covered = {case[1] for case in FIXTURE_CASES}
    assert {path.stem for path in ALL_FIXTURES} - covered == set()


def test_event_grid_validation_handshake_returns_the_code():
    result = parse_acr(fixture("eventgrid-3"), {"aeg-event-type": "SubscriptionValidation"})
    assert result.response == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert result.events == []


def test_response_is_none_for_ordinary_deliveries():
    assert parse_acr(fixture("eventgrid-1"), {}).response is None
    assert parse_registry(fixture("gitlab-1"), {}).response is None


def test_parsers_registry_has_every_source():
    assert set(PARSERS) == {
        "registry",
        "dockerhub",
        "quay",
        "ghcr",
        "harbor",
        "acr",
        "gitlab",
        "gar",
        "jfrog",
        "nexus",
        "generic",
    }
    assert all(parser.__doc__ for parser in PARSERS.values())


def test_parse_without_a_host_map_is_the_parser():
    for case in FIXTURE_CASES:
        source, name, headers = case[:3]
        assert parse(source, fixture(name), headers) == PARSERS[source](fixture(name), headers)


# --- distribution / GitLab ------------------------------------------------------------------


def distribution_event(**target: Any) -> dict[str, Any]:
    base = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "repository": "team/app",
        "tag": "1.0.0",
        "digest": DIGEST,
    }
    base.update(target)
    return {
        "action": "push",
        "target": {key: value for key, value in base.items() if value is not None},
        "request": {"host": "registry.example.com:5000", "method": "PUT"},
    }


def envelope(*events: dict[str, Any]) -> bytes:
    return encode({"events": list(events)})


def test_distribution_host_comes_from_request_host_not_repository():
    result = parse_registry(envelope(distribution_event()), {})
    assert triples(result) == [("registry.example.com:5000/team/app", "1.0.0", DIGEST)]


def test_distribution_host_falls_back_to_target_url():
    event = distribution_event(url="https://user:pw@Reg.Example.com/v2/team/app/manifests/1.0.0")
    del event["request"]
    assert triples(parse_registry(envelope(event), {})) == [
        ("reg.example.com/team/app", "1.0.0", DIGEST)
    ]


def test_distribution_without_any_host_is_an_error():
    event = distribution_event()
    event["request"] = {"method": "PUT"}
    with pytest.raises(PayloadError, match="no registry host"):
        parse_registry(envelope(event), {})


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ],
)
def test_distribution_accepts_manifest_and_index_media_types(media_type):
    result = parse_registry(envelope(distribution_event(mediaType=media_type)), {})
    assert len(result.events) == 1


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({**distribution_event(), "action": "pull"}, "pull event"),
        ({**distribution_event(), "action": "delete"}, "delete event"),
        ({**distribution_event(), "action": "mount"}, "mount event"),
        (
            distribution_event(mediaType="application/octet-stream", tag=None),
            "blob push without tag",
        ),
        (distribution_event(tag=None), "manifest push without tag"),
        (distribution_event(tag=""), "manifest push without tag"),
        (distribution_event(mediaType="application/octet-stream"), "non-manifest push"),
        (distribution_event(mediaType=None), "non-manifest push"),
    ],
)
def test_distribution_ignores(event, reason):
    result = parse_registry(envelope(event), {})
    assert result.events == []
    assert result.ignored == [reason]


def test_distribution_mixed_envelope_keeps_only_the_tagged_manifest_push():
    body = envelope(
        distribution_event(mediaType="application/octet-stream", tag=None),
        distribution_event(tag=None),
        {**distribution_event(), "action": "pull"},
        distribution_event(tag="2.0.0"),
    )
    result = parse_registry(body, {})
    assert triples(result) == [("registry.example.com:5000/team/app", "2.0.0", DIGEST)]
    assert len(result.ignored) == 3


def test_distribution_duplicate_events_are_reported_once():
    result = parse_registry(envelope(distribution_event(), distribution_event()), {})
    assert len(result.events) == 1


def test_distribution_push_without_digest_has_none():
    result = parse_registry(envelope(distribution_event(digest=None)), {})
    assert triples(result) == [("registry.example.com:5000/team/app", "1.0.0", None)]


def test_empty_envelope_is_an_empty_result():
    result = parse_registry(b'{"events": []}', {})
    assert (result.events, result.ignored) == ([], [])


# --- Docker Hub -------------------------------------------------------------------------------


def test_dockerhub_official_image_gets_library_namespace():
    body = encode({"push_data": {"tag": "1.27"}, "repository": {"repo_name": "nginx"}})
    assert triples(parse_dockerhub(body, {})) == [("docker.io/library/nginx", "1.27", None)]


def test_dockerhub_never_takes_a_host_from_repo_name():
    body = encode({"push_data": {"tag": "1"}, "repository": {"repo_name": "ghcr.io/x"}})
    assert triples(parse_dockerhub(body, {}))[0][0].startswith("docker.io/")


def test_dockerhub_without_tag_is_ignored():
    body = encode({"push_data": {"tag": ""}, "repository": {"repo_name": "acme/app"}})
    assert parse_dockerhub(body, {}).ignored == ["push without tag"]


# --- GHCR -------------------------------------------------------------------------------------


def test_ghcr_lowercases_owner_and_uses_ghcr_host():
    payload = fixture_json("github-3")
    payload["package"]["package_version"]["package_url"] = "ghcr.io/TheRyanGeary/WWW:0e2a89b"
    assert triples(parse_ghcr(encode(payload), PACKAGE))[0][0] == "ghcr.io/theryangeary/www"


def test_ghcr_without_package_url_uses_owner_login_and_name():
    payload = fixture_json("github-3")
    del payload["package"]["package_version"]["package_url"]
    payload["package"]["name"] = "nested/www"
    payload["package"]["owner"]["login"] = "Someone"
    assert triples(parse_ghcr(encode(payload), PACKAGE)) == [
        ("ghcr.io/someone/nested/www", "0e2a89b", D_GITHUB3)
    ]


def test_ghcr_event_type_is_inferred_when_header_is_missing():
    assert triples(parse_ghcr(fixture("github-3"), {})) == [
        ("ghcr.io/theryangeary/www", "0e2a89b", D_GITHUB3)
    ]


def test_ghcr_header_lookup_is_case_insensitive():
    assert len(parse_ghcr(fixture("github-3"), {"x-github-event": "package"}).events) == 1


def test_ghcr_form_encoded_delivery():
    from urllib.parse import urlencode

    body = urlencode({"payload": fixture("github-3").decode()}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **PACKAGE}
    assert triples(parse_ghcr(body, headers)) == [
        ("ghcr.io/theryangeary/www", "0e2a89b", D_GITHUB3)
    ]


def test_ghcr_ping_is_ignored():
    body = encode({"zen": "Design for failure.", "hook_id": 1, "hook": {}})
    assert parse_ghcr(body, {"X-GitHub-Event": "ping"}).ignored == ["ping event"]
    assert parse_ghcr(body, {}).ignored == ["ping event"]


def test_ghcr_non_container_package_is_ignored():
    payload = fixture_json("github-3")
    payload["package"]["package_type"] = "npm"
    payload["package"]["ecosystem"] = "npm"
    assert parse_ghcr(encode(payload), PACKAGE).ignored == ["non-container package"]


def test_ghcr_other_github_events_are_rejected():
    with pytest.raises(PayloadError, match="unsupported GitHub event"):
        parse_ghcr(fixture("github-3"), {"X-GitHub-Event": "push"})


def test_ghcr_unknown_action_is_rejected():
    payload = fixture_json("github-3")
    payload["action"] = "exploded"
    with pytest.raises(PayloadError, match="unknown package action"):
        parse_ghcr(encode(payload), PACKAGE)


# --- Harbor -----------------------------------------------------------------------------------


def harbor(event_type: str = "PUSH_ARTIFACT", **resource: Any) -> bytes:
    base = {
        "digest": DIGEST,
        "tag": "v1.2.3",
        "resource_url": "harbor.example.com:8443/proj/app:v1.2.3",
    }
    base.update(resource)
    return encode({"type": event_type, "event_data": {"resources": [base]}})


def test_harbor_host_and_port_come_from_resource_url():
    assert triples(parse_harbor(harbor(), {})) == [
        ("harbor.example.com:8443/proj/app", "v1.2.3", DIGEST)
    ]


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        ("PULL_ARTIFACT", "pull event"),
        ("DELETE_ARTIFACT", "delete event"),
        ("SCANNING_COMPLETED", "scan event"),
        ("QUOTA_EXCEED", "quota event"),
        ("harbor.artifact.pulled", "pull event"),
        ("harbor.replication.status.changed", "replication event"),
    ],
)
def test_harbor_other_event_types_are_ignored(event_type, reason):
    assert parse_harbor(harbor(event_type), {}).ignored == [reason]


def test_harbor_unknown_type_is_rejected():
    with pytest.raises(PayloadError, match="unknown Harbor event type"):
        parse_harbor(harbor("EXPLODE"), {})


def test_harbor_resource_url_without_host_is_rejected():
    with pytest.raises(PayloadError, match="no registry host"):
        parse_harbor(harbor(resource_url="proj/app:v1"), {})


# --- Quay -------------------------------------------------------------------------------------


def test_quay_vulnerability_notification_is_ignored():
    body = encode({"repository": "a/b", "docker_url": "quay.io/a/b", "vulnerability": {}})
    assert parse_quay(body, {}).ignored == ["vulnerability event"]


def test_quay_push_with_no_tags_is_ignored():
    body = encode({"docker_url": "quay.io/a/b", "updated_tags": []})
    assert parse_quay(body, {}).ignored == ["push without tags"]


def test_quay_docker_url_without_host_is_rejected():
    with pytest.raises(PayloadError, match="no registry host"):
        parse_quay(encode({"docker_url": "acme/app", "updated_tags": ["1"]}), {})


def test_quay_unrecognised_notification_is_rejected():
    with pytest.raises(PayloadError, match="missing updated_tags"):
        parse_quay(encode({"docker_url": "quay.io/a/b"}), {})


# --- ACR / Event Grid -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("delete", "delete event"),
        ("chart_push", "chart push"),
        ("chart_delete", "chart delete"),
        ("quarantine", "quarantine event"),
        ("ping", "ping event"),
    ],
)
def test_acr_webhook_non_push_actions_are_ignored(action, reason):
    payload = fixture_json("acr-1")
    payload["action"] = action
    assert parse_acr(encode(payload), {}).ignored == [reason]


def test_acr_documented_example_with_redacted_digest_is_rejected():
    payload = fixture_json("acr-1")
    payload["target"]["digest"] = (
        "sha256:xxxxd5c8786bb9e621a45ece0dbxxxx1cdc624ad20da9fe62e9d25490f33xxxx"
    )
    with pytest.raises(PayloadError, match="invalid digest"):
        parse_acr(encode(payload), {})


def test_event_grid_single_cloudevent_object_is_accepted():
    single = fixture_json("eventgrid-2")[0]
    assert triples(parse_acr(encode(single), {})) == [
        ("contosoprod.azurecr.io/web/frontend", "2026.03.02", D_EG2)
    ]


def test_event_grid_batch_mixes_events_and_ignores():
    batch = fixture_json("eventgrid-1") + fixture_json("eventgrid-4") + fixture_json("eventgrid-2")
    result = parse_acr(encode(batch), {})
    assert [event.tag for event in result.events] == ["1.8.1", "2026.03.02"]
    assert result.ignored == ["delete event", "chart push"]


def test_event_grid_unknown_event_type_is_rejected():
    item = fixture_json("eventgrid-1")[0]
    item["eventType"] = "Microsoft.Storage.BlobCreated"
    with pytest.raises(PayloadError, match="unknown Event Grid event type"):
        parse_acr(encode([item]), {})


@pytest.mark.parametrize("code", [123, "x" * 300, "bad\ncode", ""])
def test_event_grid_bad_validation_code_is_rejected(code):
    item = fixture_json("eventgrid-3")[0]
    item["data"]["validationCode"] = code
    with pytest.raises(PayloadError):
        parse_acr(encode([item]), {})


# --- Google Artifact Registry (Pub/Sub push) --------------------------------------------------


def pubsub(notification: object, **message: Any) -> bytes:
    """A Pub/Sub push envelope around ``notification`` (JSON-encoded unless bytes/str)."""
    if isinstance(notification, bytes):
        raw = notification
    elif isinstance(notification, str):
        raw = notification.encode()
    else:
        raw = json.dumps(notification).encode()
    body = {"message": {"data": base64.b64encode(raw).decode(), "messageId": "1",
                        "publishTime": "2026-03-02T00:00:00Z", **message},
            "subscription": "projects/p/subscriptions/s"}
    return encode(body)


GAR_TAG = "europe-west4-docker.pkg.dev/acme/containers/api:2.0.1"
GAR_DIGEST = "europe-west4-docker.pkg.dev/acme/containers/api@" + DIGEST
GAR_EVENT = ("europe-west4-docker.pkg.dev/acme/containers/api", "2.0.1", DIGEST)


def test_gar_wrapped_and_unwrapped_deliveries_mean_the_same():
    notification = {"action": "INSERT", "digest": GAR_DIGEST, "tag": GAR_TAG}
    assert triples(parse_gar(pubsub(notification), {})) == [GAR_EVENT]
    assert triples(parse_gar(encode(notification), {})) == [GAR_EVENT]  # payload unwrapping


def test_gar_insert_with_a_tag_and_no_digest():
    assert triples(parse_gar(pubsub({"action": "INSERT", "tag": GAR_TAG}), {})) == [
        ("europe-west4-docker.pkg.dev/acme/containers/api", "2.0.1", None)
    ]


def test_gar_url_safe_unpadded_base64_and_attributes_are_accepted():
    raw = json.dumps({"action": "INSERT", "tag": "gcr.io/p/img:v1", "note": "???>>>"}).encode()
    data = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "_" in data and not data.endswith("=")
    body = encode({"message": {"data": data, "attributes": {"a": "b"}}, "subscription": "s"})
    assert triples(parse_gar(body, {})) == [("gcr.io/p/img", "v1", None)]


@pytest.mark.parametrize(
    ("notification", "reason"),
    [
        ({"action": "DELETE", "tag": GAR_TAG}, "delete event"),
        ({"action": "DELETE", "digest": GAR_DIGEST}, "delete event"),
        ({"action": "INSERT", "digest": GAR_DIGEST}, "push without tag"),
        ({"action": "INSERT", "digest": GAR_DIGEST, "tag": ""}, "push without tag"),
        ({"action": "RETAG", "tag": GAR_TAG}, "other action"),
    ],
)
def test_gar_ignores(notification, reason):
    result = parse_gar(pubsub(notification), {})
    assert (result.events, result.ignored) == ([], [reason])


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (encode({"subscription": "s"}), "missing message"),
        (encode({"message": {"messageId": "1"}}), "missing message.data"),
        (encode({"message": {"data": ""}}), "message.data is empty"),
        (encode({"message": {"data": 7}}), "message.data must be a string"),
        (encode({"message": {"data": "not base64!"}}), "message.data is not base64"),
        (encode({"message": {"data": "abcde"}}), "message.data is not base64"),
        (pubsub(b"{not json"), "message.data: malformed JSON"),
        (pubsub(b"\xff\xfe binary"), "message.data: malformed JSON"),
        (pubsub(b" \n"), "message.data: empty body"),
        (pubsub([1, 2]), "message.data must be an object"),
        (pubsub({"tag": GAR_TAG}), "missing message.data.action"),
        (pubsub({"action": "INSERT", "tag": "gcr.io/p/img"}), "not <host>/<repository>:<tag>"),
        (pubsub({"action": "INSERT", "tag": GAR_DIGEST}), "not <host>/<repository>:<tag>"),
        (pubsub({"action": "INSERT", "tag": "acme/img:1"}), "no registry host"),
        (pubsub({"action": "INSERT", "tag": "gcr.io/p/img:-x"}), "invalid tag"),
        (pubsub({"action": "INSERT", "tag": GAR_TAG, "digest": "sha256:" + "ab" * 32}),
         "not <host>/<repository>@<digest>"),
        (pubsub({"action": "INSERT", "tag": GAR_TAG,
                 "digest": "europe-west4-docker.pkg.dev/acme/containers/other@" + DIGEST}),
         "different repositories"),
        (pubsub({"action": "INSERT", "tag": GAR_TAG, "digest": GAR_DIGEST[:-2]}),
         "invalid digest"),
    ],
)
def test_gar_malformed_messages_are_payload_errors(body, match):
    with pytest.raises(PayloadError, match=match):
        parse_gar(body, {})


# --- JFrog Artifactory ------------------------------------------------------------------------

JFROG = host_map("jfrog=acme.jfrog.io")


def jfrog_data(**data: Any) -> dict[str, Any]:
    base = fixture_json("jfrog-3")["data"]
    base.update(data)
    return base


def test_jfrog_with_and_without_the_envelope_mean_the_same():
    enveloped = fixture_json("jfrog-3")
    expected = [("acme.jfrog.io/docker-local/payments/ledger", "2.4.1", None)]
    assert triples(parse_jfrog(encode(enveloped), {}, JFROG)) == expected
    assert triples(parse_jfrog(encode(enveloped["data"]), {}, JFROG)) == expected


def test_jfrog_sha256_is_not_taken_for_the_registry_digest():
    assert parse_jfrog(fixture("jfrog-3"), {}, JFROG).events[0].digest is None


@pytest.mark.parametrize(
    ("mapping", "repository"),
    [
        ("jfrog=acme.jfrog.io", "acme.jfrog.io/docker-local/payments/ledger"),
        # the repository's own host (subdomain or port access): the repo key is not in the path
        ("jfrog=acme.jfrog.io,jfrog:docker-local=docker-local.acme.jfrog.io",
         "docker-local.acme.jfrog.io/payments/ledger"),
        ("jfrog:DOCKER-local=artifactory.acme.example:5001",
         "artifactory.acme.example:5001/payments/ledger"),
        # pushed to docker-local, pulled through the virtual repository "docker"
        ("jfrog:docker-local=acme.jfrog.io/docker", "acme.jfrog.io/docker/payments/ledger"),
        # an entry for another repository key does not apply; the source-wide one does
        ("jfrog=acme.jfrog.io,jfrog:docker-remote=x.example",
         "acme.jfrog.io/docker-local/payments/ledger"),
    ],
)
def test_jfrog_host_map_places_the_image(mapping, repository):
    result = parse_jfrog(fixture("jfrog-3"), {}, host_map(mapping))
    assert triples(result) == [(repository, "2.4.1", None)]


def test_jfrog_without_an_entry_for_the_repository_is_ignored():
    result = parse_jfrog(fixture("jfrog-3"), {}, host_map("jfrog:docker-remote=x.example"))
    assert (result.events, result.ignored) == ([], [no_host_reason("jfrog")])


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({**fixture_json("jfrog-3"), "event_type": "promoted"}, "promote event"),
        ({**fixture_json("jfrog-3"), "event_type": "exploded"}, "other docker event"),
        (jfrog_data(event_type="deleted"), "delete event"),
        ({**fixture_json("jfrog-4"), "domain": "build"}, "non-docker event"),
        (jfrog_data(tag=""), "push without tag"),
        (jfrog_data(tag=None), "push without tag"),
    ],
)
def test_jfrog_ignores(payload, reason):
    result = parse_jfrog(encode(payload), {}, JFROG)
    assert (result.events, result.ignored) == ([], [reason])


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"domain": "docker", "data": jfrog_data()}, "missing event_type"),
        ({"event_type": "pushed", "data": jfrog_data()}, "missing domain"),
        ({"domain": "docker", "event_type": "pushed", "data": []}, "data must be an object"),
        ({"domain": "docker", "event_type": "pushed"}, "missing data"),
        ({"domain": 3, "event_type": "pushed", "data": {}}, "domain must be a string"),
        (jfrog_data(repo_key=None), "missing repo_key"),
        (jfrog_data(image_name=None), "missing image_name"),
        (jfrog_data(image_name="Payments Ledger"), "invalid repository"),
        (jfrog_data(image_name="/ledger"), "invalid repository"),
        (jfrog_data(tag="2.4.1 "), "invalid tag"),
        ({"repo_key": "docker-local", "image_name": "a", "tag": "1"}, "missing event_type"),
    ],
)
def test_jfrog_malformed_payloads_are_payload_errors(payload, match):
    with pytest.raises(PayloadError, match=match):
        parse_jfrog(encode(payload), {}, JFROG)


# --- Sonatype Nexus ---------------------------------------------------------------------------

NEXUS = host_map("nexus=nexus.example.com:8443")


def nexus_asset(name: str, action: str = "CREATED", fmt: str = "docker") -> bytes:
    payload = fixture_json("nexus-3")
    payload["action"] = action
    payload["asset"].update(name=name, format=fmt)
    return encode(payload)


def nexus_component(action: str = "CREATED", **component: Any) -> bytes:
    payload = json.loads(fixture("nexus-1"))
    payload["action"] = action
    payload["component"].update(component)
    return encode(payload)


def test_nexus_component_created_is_one_tag():
    assert triples(parse_nexus(fixture("nexus-1"), NEXUS_COMPONENT, NEXUS)) == [
        ("nexus.example.com:8443/app1/alpine", "3.4", None)
    ]


@pytest.mark.parametrize("action", ["CREATED", "UPDATED"])
def test_nexus_manifest_asset_created_or_updated_is_one_tag(action):
    body = nexus_asset("v2/library/nginx/manifests/1.27.1", action)
    assert triples(parse_nexus(body, NEXUS_ASSET, NEXUS)) == [
        ("nexus.example.com:8443/library/nginx", "1.27.1", None)
    ]


def test_nexus_event_kind_comes_from_the_header_else_the_body():
    assert len(parse_nexus(fixture("nexus-1"), {}, NEXUS).events) == 1
    assert len(parse_nexus(fixture("nexus-3"), {}, NEXUS).events) == 1
    assert len(parse_nexus(fixture("nexus-1"), {"x-nexus-webhook-id":
                                                  "rm:repository:component"}, NEXUS).events) == 1
    with pytest.raises(PayloadError, match="missing asset"):
        parse_nexus(fixture("nexus-1"), NEXUS_ASSET, NEXUS)


def test_nexus_per_repository_entry_wins_over_the_source_wide_one():
    mapping = host_map("nexus=nexus.example.com,nexus:APP1=app1.registry.example.com/mirror")
    assert triples(parse_nexus(fixture("nexus-1"), NEXUS_COMPONENT, mapping)) == [
        ("app1.registry.example.com/mirror/app1/alpine", "3.4", None)
    ]


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (nexus_component("UPDATED"), NEXUS_COMPONENT, "component updated event"),
        (nexus_component("DELETED"), NEXUS_COMPONENT, "component deleted event"),
        (nexus_component(format="maven2"), NEXUS_COMPONENT, "non-docker component"),
        (nexus_component(version=None), NEXUS_COMPONENT, "push without tag"),
        (nexus_component(version=DIGEST), NEXUS_COMPONENT, "push by digest without tag"),
        (nexus_asset("v2/library/nginx/manifests/1.0", "DELETED"), NEXUS_ASSET,
         "asset deleted event"),
        (nexus_asset(f"v2/library/nginx/manifests/{DIGEST}"), NEXUS_ASSET,
         "push by digest without tag"),
        (nexus_asset(f"v2/library/nginx/blobs/{DIGEST}"), NEXUS_ASSET, "non-manifest asset"),
        (nexus_asset("v2/library/nginx/tags/list"), NEXUS_ASSET, "non-manifest asset"),
        (nexus_asset("library/nginx/manifests/1.0"), NEXUS_ASSET, "non-manifest asset"),
        (nexus_asset("v2/manifests/1.0"), NEXUS_ASSET, "non-manifest asset"),
        (nexus_asset("v2/library/nginx/manifests/"), NEXUS_ASSET, "push without tag"),
        (nexus_asset("v2/a/manifests/1.0", fmt="npm"), NEXUS_ASSET, "non-docker asset"),
        (fixture("nexus-1"), {"X-Nexus-Webhook-Id": "rm:repository"},
         "not a repository component or asset event"),
    ],
)
def test_nexus_ignores(body, headers, reason):
    result = parse_nexus(body, headers, NEXUS)
    assert (result.events, result.ignored) == ([], [reason])


@pytest.mark.parametrize(
    ("body", "headers", "match"),
    [
        (nexus_component("EXPLODED"), NEXUS_COMPONENT, "unknown Nexus action"),
        (encode({"action": "CREATED", "component": {}}), NEXUS_COMPONENT,
         "missing repositoryName"),
        (encode({"repositoryName": "r", "component": {}}), NEXUS_COMPONENT, "missing action"),
        (nexus_component(name=None), NEXUS_COMPONENT, "missing component.name"),
        (nexus_component(name="App1/Alpine Linux"), NEXUS_COMPONENT, "invalid repository"),
        (nexus_component(version="3.4!"), NEXUS_COMPONENT, "invalid tag"),
        (nexus_component(format=5), NEXUS_COMPONENT, "component.format must be a string"),
    ],
)
def test_nexus_malformed_payloads_are_payload_errors(body, headers, match):
    with pytest.raises(PayloadError, match=match):
        parse_nexus(body, headers, NEXUS)


# --- Harbor 1.x with a host ---------------------------------------------------------------------


def test_harbor_1x_is_placed_by_the_harbor_entry():
    payload = fixture_json("harbor-4")
    payload["events"].append({**payload["events"][0], "tag": "1.0.1"})
    result = parse_harbor(encode(payload), {}, host_map("harbor=Harbor.Example.com:8443"))
    assert [(e.repository, e.tag) for e in result.events] == [
        ("harbor.example.com:8443/prj/repo1", "latest"),
        ("harbor.example.com:8443/prj/repo1", "1.0.1"),
    ]


@pytest.mark.parametrize(("event_type", "reason"),
                         [("pullImage", "pull event"), ("deleteImage", "delete event"),
                          ("scanningCompleted", "scan event"), ("uploadChart", "chart event")])
def test_harbor_1x_other_events_are_ignored(event_type, reason):
    payload = {**fixture_json("harbor-4"), "event_type": event_type}
    result = parse_harbor(encode(payload), {}, host_map("harbor=harbor.example.com"))
    assert (result.events, result.ignored) == ([], [reason])


def test_harbor_1x_unknown_event_type_is_rejected():
    payload = {**fixture_json("harbor-4"), "event_type": "explode"}
    with pytest.raises(PayloadError, match="unknown Harbor event type"):
        parse_harbor(encode(payload), {}, host_map("harbor=harbor.example.com"))


# --- HEADWIND_REGISTRY_HOST_MAP: parsing (headwind_site.config) --------------------------------


def test_host_map_is_parsed_and_normalised():
    text = (" Registry.LOCAL:5000 = registry.example.com , jfrog=ACME.jfrog.io,"
            "jfrog:Docker-Local=acme.jfrog.io/Docker,nexus=nexus.example.com:8443,,"
            "nexus:docker-hosted=nexus.example.com,harbor=harbor.example.com,"
            "index.docker.io=mirror.example.com")
    parsed = OperatorSettings.from_environ({"HEADWIND_REGISTRY_HOST_MAP": text})
    assert parsed.registry_host_map == (
        ("docker.io", "mirror.example.com"),
        ("harbor", "harbor.example.com"),
        ("jfrog", "acme.jfrog.io"),
        ("jfrog:docker-local", "acme.jfrog.io/docker"),
        ("nexus", "nexus.example.com:8443"),
        ("nexus:docker-hosted", "nexus.example.com"),
        ("registry.local:5000", "registry.example.com"),
    )
    assert OperatorSettings.from_environ({}).registry_host_map == ()
    blank = OperatorSettings.from_environ({"HEADWIND_REGISTRY_HOST_MAP": " , "})
    assert blank.registry_host_map == ()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("registry.local:5000", "is not from=to"),
        ("registry.local:5000=", "is not from=to"),
        ("=registry.example.com", "is not from=to"),
        ("a.example=b.example,a.example=c.example", "mapped twice"),
        ("A.example=b.example,a.example=c.example", "mapped twice"),
        ("registry.local:5000=https://registry.example.com", "not a registry host"),
        ("registry.local:5000=registry.example.com/team", "not a registry host"),
        ("registry.local/x=registry.example.com", "not a registry host"),
        ("my_registry=registry.example.com", "not a registry host"),
        ("a=b=c", "not a registry host"),
        ("registry.local:http=registry.example.com", "not a registry host"),
        ("jfrog=https://acme.jfrog.io", "not a registry host"),
        ("jfrog=acme.jfrog.io/Bad Path", "not host"),
        ("jfrog=acme.jfrog.io//x", "not host"),
        ("jfrog:=acme.jfrog.io", "not a repository key"),
        ("jfrog:a/b=acme.jfrog.io", "not a repository key"),
        ("harbor:project=harbor.example.com", "harbor takes no repository part"),
        ("nexus=", "is not from=to"),
    ],
)
def test_malformed_host_map_is_a_config_error_naming_the_variable(text, match):
    with pytest.raises(ConfigError, match=match) as caught:
        OperatorSettings.from_environ({"HEADWIND_REGISTRY_HOST_MAP": text})
    assert str(caught.value).startswith("HEADWIND_REGISTRY_HOST_MAP: ")


def test_config_and_parsers_agree_on_the_host_less_sources():
    from registry.webhooks.parsers import _HOSTLESS_PARSERS

    assert set(HOSTLESS_WEBHOOK_SOURCES) == HOSTLESS_SOURCES == set(_HOSTLESS_PARSERS)
    assert all(PARSERS[source] is _HOSTLESS_PARSERS[source] for source in HOSTLESS_SOURCES)


# --- HEADWIND_REGISTRY_HOST_MAP: effect on events ----------------------------------------------

PROXIED = host_map("registry.local:5000=registry.example.com")


def distribution_push(host: str, tag: str = "1.0.1", repository: str = "team/app") -> bytes:
    event = distribution_event(tag=tag, repository=repository)
    event["request"]["host"] = host
    return envelope(event)


def test_distribution_behind_a_proxy_matches_the_workloads_name():
    """The registry saw ``Host: registry.local:5000`` (its proxy passed that on); workloads pull
    ``registry.example.com/team/app``. The rewrite makes the two one repository."""
    from operator_app.core.images import parse_image

    result = parse("registry", distribution_push("registry.local:5000"), {}, PROXIED)
    assert triples(result) == [("registry.example.com/team/app", "1.0.1", DIGEST)]
    workload = parse_image("Registry.Example.com/team/app:1.0.0")
    assert result.events[0].repository == workload.repository


@pytest.mark.parametrize("host", ["REGISTRY.local:5000", "registry.LOCAL:5000"])
def test_rewrite_compares_hosts_case_insensitively(host):
    result = parse("registry", distribution_push(host), {}, PROXIED)
    assert [e.repository for e in result.events] == ["registry.example.com/team/app"]


@pytest.mark.parametrize("host", ["registry.local:5001", "registry.local", "registry.local.eu"])
def test_rewrite_needs_the_exact_host_and_port(host):
    result = parse("registry", distribution_push(host), {}, PROXIED)
    assert [e.repository for e in result.events] == [f"{host}/team/app"]


def test_rewrite_merges_events_that_become_the_same():
    body = encode({"events": [json.loads(distribution_push("registry.local:5000"))["events"][0],
                              json.loads(distribution_push("registry.example.com"))["events"][0]]})
    assert triples(parse("registry", body, {}, PROXIED)) == [
        ("registry.example.com/team/app", "1.0.1", DIGEST)
    ]


def test_rewrite_keeps_ignore_reasons_and_the_handshake_response():
    pull = json.loads(distribution_push("registry.local:5000"))["events"][0]
    body = encode({"events": [{**pull, "action": "pull"},
                              json.loads(distribution_push("registry.local:5000"))["events"][0]]})
    result = parse("registry", body, {}, PROXIED)
    assert result.ignored == ["pull event"] and len(result.events) == 1
    handshake = parse("acr", fixture("eventgrid-3"), {}, PROXIED)
    assert handshake.response == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


def test_rewrite_applies_to_docker_hub_and_to_placed_sources():
    hub = host_map("docker.io=mirror.example.com")
    assert triples(parse("dockerhub", fixture("dockerhub-3"), {}, hub)) == [
        ("mirror.example.com/karolisr/keel", "0.1.7", None)
    ]
    chained = host_map("jfrog=registry.local:5000,registry.local:5000=registry.example.com")
    assert [e.repository for e in parse("jfrog", fixture("jfrog-3"), {}, chained).events] == [
        "registry.example.com/docker-local/payments/ledger"
    ]


def test_source_entries_are_not_host_rewrites():
    mapping = host_map("jfrog=acme.jfrog.io")
    assert not NO_HOSTS and mapping
    assert mapping.rewrite("jfrog/app") == "jfrog/app"


# --- authentication (registry/auth.py) -----------------------------------------------------------


@pytest.fixture
def webhook_env(monkeypatch):
    """No webhook credential from the environment but those a test sets."""
    import os

    for name in list(os.environ):
        if name.startswith("HEADWIND_WEBHOOK_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_nexus_signature_matches_a_real_delivery(webhook_env):
    """The vector is fluxcd/flux-recv's: a Nexus 3 delivery, its secret and its signature."""
    webhook_env.setenv("HEADWIND_WEBHOOK_NEXUS_SECRET", NEXUS_SECRET)
    body = fixture("nexus-1")
    signed = {**NEXUS_COMPONENT, "X-Nexus-Webhook-Signature": NEXUS_SIGNATURE}
    assert auth.check("nexus", signed, body).ok
    assert auth.check("nexus", {**signed, "X-Nexus-Webhook-Signature": NEXUS_SIGNATURE.upper()},
                      body).ok
    expected = hmac.new(NEXUS_SECRET.encode(), body, hashlib.sha1).hexdigest()
    assert expected == NEXUS_SIGNATURE


@pytest.mark.parametrize("signature", ["0" * 40, NEXUS_SIGNATURE[:-1], "sha1=" + NEXUS_SIGNATURE,
                                       hmac.new(b"other", b"", hashlib.sha1).hexdigest()])
def test_nexus_wrong_signature_is_refused(webhook_env, signature):
    webhook_env.setenv("HEADWIND_WEBHOOK_NEXUS_SECRET", NEXUS_SECRET)
    webhook_env.setenv("HEADWIND_WEBHOOK_NEXUS_TOKEN", "tok")
    headers = {"X-Nexus-Webhook-Signature": signature, "Authorization": "Bearer tok"}
    assert auth.check("nexus", headers, fixture("nexus-1")) == auth.Verdict(
        False, 403, "signature does not match")


def test_nexus_signature_covers_the_exact_body(webhook_env):
    webhook_env.setenv("HEADWIND_WEBHOOK_NEXUS_SECRET", NEXUS_SECRET)
    headers = {"X-Nexus-Webhook-Signature": NEXUS_SIGNATURE}
    assert not auth.check("nexus", headers, fixture("nexus-1") + b"\n").ok
    assert not auth.check("nexus", headers, fixture("nexus-1").replace(b"3.4", b"3.5")).ok


def test_nexus_secret_without_signature_falls_back_to_the_token(webhook_env):
    webhook_env.setenv("HEADWIND_WEBHOOK_NEXUS_SECRET", NEXUS_SECRET)
    assert auth.check("nexus", {}, fixture("nexus-1")).status == 401
    webhook_env.setenv("HEADWIND_WEBHOOK_NEXUS_TOKEN", "tok")
    assert auth.check("nexus", {"X-Headwind-Token": "tok"}, fixture("nexus-1")).ok


def test_nexus_signature_header_means_nothing_to_other_sources(webhook_env):
    webhook_env.setenv("HEADWIND_WEBHOOK_GENERIC_SECRET", NEXUS_SECRET)
    headers = {"X-Nexus-Webhook-Signature": NEXUS_SIGNATURE}
    assert auth.check("generic", headers, fixture("nexus-1")).status == 401


def test_jfrog_secret_token_header(webhook_env):
    webhook_env.setenv("HEADWIND_WEBHOOK_JFROG_TOKEN", "jfrog-secret")
    assert auth.check("jfrog", {"X-JFrog-Event-Auth": "jfrog-secret"}, b"{}").ok
    assert auth.check("jfrog", {"x-jfrog-event-auth": "jfrog-secret"}, b"{}").ok
    assert auth.check("jfrog", {"X-JFrog-Event-Auth": "nope"}, b"{}").status == 403


def test_gar_query_and_path_tokens(webhook_env):
    webhook_env.setenv("HEADWIND_WEBHOOK_GAR_TOKEN", "pubsub-secret")
    assert auth.check("gar", {}, b"{}", query_token="pubsub-secret").ok
    assert auth.check("gar", {}, b"{}", path_token="pubsub-secret").ok
    assert auth.check("gar", {}, b"{}", query_token="nope").status == 403
    assert auth.check("gar", {}, b"{}").status == 401


# Pub/Sub's OIDC push token, against a key set served on loopback ---------------------------------

AUDIENCE = "https://headwind.example.com/webhook/gar"
PUSHER = "pubsub-push@acme-prod.iam.gserviceaccount.com"


class KeySet:
    """An RSA key pair and an HTTP server on 127.0.0.1 serving its public JWKS, as Google's
    https://www.googleapis.com/oauth2/v3/certs does; counts the fetches."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "headwind-test-key-1"
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.document = json.dumps({"keys": [{**public, "kid": self.kid, "alg": "RS256",
                                               "use": "sig"}]}).encode()
        self.fetches = 0
        keyset = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                keyset.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(keyset.document)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/v3/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, *, key=None, kid: str | None = None, algorithm: str = "RS256",
              **claims: Any) -> str:
        now = int(time.time())
        payload = {"aud": AUDIENCE, "azp": "113774264463038321964", "email": PUSHER,
                   "email_verified": True, "exp": now + 3600, "iat": now,
                   "iss": "https://accounts.google.com", "sub": "113774264463038321964",
                   **claims}
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(payload, key if key is not None else self.key, algorithm=algorithm,
                          headers={"kid": kid or self.kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def google_keys(webhook_env):
    keys = KeySet()
    webhook_env.setenv("HEADWIND_WEBHOOK_GAR_OIDC_AUDIENCE", AUDIENCE)
    webhook_env.setenv("HEADWIND_WEBHOOK_GAR_OIDC_EMAIL", PUSHER)
    webhook_env.setenv("HEADWIND_WEBHOOK_GAR_OIDC_JWKS_URL", keys.url)
    auth._jwks_clients.clear()
    yield keys
    auth._jwks_clients.clear()
    keys.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_pubsub_oidc_token_is_accepted(google_keys):
    assert auth.is_configured("gar")
    assert auth.check("gar", bearer(google_keys.token()), fixture("gar-1")).ok
    assert auth.check("gar", bearer(google_keys.token(iss="accounts.google.com")), b"{}").ok
    assert auth.check("gar", bearer(google_keys.token(email_verified="true")), b"{}").ok
    assert auth.check("gar", bearer(google_keys.token(email=PUSHER.upper())), b"{}").ok
    assert google_keys.fetches == 1  # the key set is cached


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://elsewhere.example.com/webhook/gar"},
        {"aud": None},
        {"email": "someone-else@acme-prod.iam.gserviceaccount.com"},
        {"email": None},
        {"email_verified": False},
        {"email_verified": None},
        {"iss": "https://evil.example.com"},
        {"exp": int(time.time()) - 3600},
        {"iat": None},
        {"exp": None},
    ],
    ids=lambda claims: ",".join(f"{k}={v}" for k, v in claims.items()),
)
def test_pubsub_oidc_token_with_wrong_claims_is_refused(google_keys, claims):
    verdict = auth.check("gar", bearer(google_keys.token(**claims)), b"{}")
    assert (verdict.ok, verdict.status) == (False, 403)


def test_pubsub_oidc_token_signed_by_another_key_is_refused(google_keys):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert auth.check("gar", bearer(google_keys.token(key=stranger)), b"{}").status == 403


def hs256_token(secret: bytes, header: dict, claims: dict) -> str:
    """Signed by hand: PyJWT refuses to sign with a public key as the HMAC secret."""
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    signing_input = f"{part(header)}.{part(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def test_pubsub_oidc_refuses_hmac_tokens_and_unknown_keys(google_keys):
    from cryptography.hazmat.primitives import serialization

    valid = jwt.decode(google_keys.token(), options={"verify_signature": False})
    public_pem = google_keys.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (public_pem, google_keys.document):  # algorithm confusion
        forged = hs256_token(secret, {"alg": "HS256", "typ": "JWT", "kid": google_keys.kid},
                             valid)
        assert auth.check("gar", bearer(forged), b"{}").status == 403
    unsigned = jwt.encode(valid, None, algorithm="none", headers={"kid": google_keys.kid})
    assert auth.check("gar", bearer(unsigned), b"{}").status == 403
    assert auth.check("gar", bearer(google_keys.token(kid="rotated-key")), b"{}").status == 403
    assert auth.check("gar", bearer(google_keys.token(kid="rotated-again")), b"{}").status == 403
    assert google_keys.fetches <= 2  # one refresh for an unknown key, then a cool-down
    assert auth.check("gar", bearer("eyJ.not-a.token"), b"{}").status == 403


def test_pubsub_oidc_key_set_unreachable_is_retried_later(google_keys, webhook_env):
    webhook_env.setenv("HEADWIND_WEBHOOK_GAR_OIDC_JWKS_URL", "http://127.0.0.1:9/certs")
    verdict = auth.check("gar", bearer(google_keys.token()), b"{}")
    assert (verdict.ok, verdict.status) == (False, 503)


def test_pubsub_oidc_key_set_not_json_is_retried_later(google_keys):
    google_keys.document = b"<html>maintenance</html>"
    verdict = auth.check("gar", bearer(google_keys.token()), b"{}")
    assert (verdict.ok, verdict.status) == (False, 503)


def test_pubsub_oidc_and_a_url_token_together(google_keys, webhook_env):
    webhook_env.setenv("HEADWIND_WEBHOOK_GAR_TOKEN", "pubsub-secret")
    assert auth.check("gar", {}, b"{}", query_token="pubsub-secret").ok
    # A presented OIDC token decides on its own: a bad one is not rescued by the URL token.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not auth.check("gar", bearer(google_keys.token(key=stranger)), b"{}",
                          query_token="pubsub-secret").ok


def test_pubsub_oidc_needs_audience_and_email_together(webhook_env):
    webhook_env.setenv("HEADWIND_WEBHOOK_GAR_OIDC_AUDIENCE", AUDIENCE)
    verdict = auth.check("gar", {}, b"{}")
    assert (verdict.ok, verdict.status) == (False, 403)
    assert "must be set together" in verdict.reason


def test_pubsub_oidc_is_only_for_gar(google_keys):
    assert auth.check("generic", bearer(google_keys.token()), b"{}").status == 403
    assert not auth.is_configured("generic")


# --- generic ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"image": "nginx", "tag": "1"}, ("docker.io/library/nginx", "1", None)),
        ({"image": "library/nginx:1"}, ("docker.io/library/nginx", "1", None)),
        ({"image": "index.docker.io/acme/app:2"}, ("docker.io/acme/app", "2", None)),
        ({"image": "registry-1.docker.io/acme/app:2"}, ("docker.io/acme/app", "2", None)),
        ({"image": "localhost/app:3"}, ("localhost/app", "3", None)),
        ({"image": "reg.io:5000/a/b/c:4@" + DIGEST}, ("reg.io:5000/a/b/c", "4", DIGEST)),
        ({"image": "reg.io/app:5", "tag": "5", "digest": DIGEST}, ("reg.io/app", "5", DIGEST)),
        ({"image": "REG.IO/Team/App", "tag": "V1_x"}, ("reg.io/team/app", "V1_x", None)),
    ],
)
def test_generic_image_forms(payload, expected):
    assert triples(parse_generic(encode(payload), {})) == [expected]


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"image": "reg.io/app"}, "missing tag"),
        ({"image": "reg.io/app:1", "tag": "2"}, "differ"),
        ({"image": "reg.io/app:1@" + DIGEST, "digest": "sha256:" + "cd" * 32}, "differ"),
        ({"image": "reg.io/app:"}, "missing tag"),
        ({"tag": "1"}, "missing image"),
        ({"image": 5, "tag": "1"}, "must be a string"),
        ({"image": "reg.io/app", "tag": 1}, "must be a string"),
        ({"image": "reg.io/app", "tag": "-bad"}, "invalid tag"),
        ({"image": "reg.io/app", "tag": "x" * 129}, "invalid tag"),
        ({"image": "reg.io/app", "tag": "1", "digest": "sha256:abc"}, "invalid digest"),
        ({"image": "reg.io/app", "tag": "1", "digest": "SHA256:" + "ab" * 32}, "invalid digest"),
        ({"image": "reg.io/App Name", "tag": "1"}, "invalid repository"),
        ({"image": "reg.io//app", "tag": "1"}, "invalid repository"),
        ({"image": "my_reg.io/app", "tag": "1"}, "invalid registry host"),
        ({"image": "reg.io/" + "a" * 300, "tag": "1"}, "longer than 255"),
        ({"image": "reg.io/caf\u00e9", "tag": "1"}, "invalid repository"),
    ],
)
def test_generic_errors(payload, match):
    with pytest.raises(PayloadError, match=match):
        parse_generic(encode(payload), {})


def test_generic_list_form_and_empty_list():
    assert len(parse_generic(fixture("generic-3"), {}).events) == 2
    assert parse_generic(b"[]", {}).events == []


# --- errors common to every parser -------------------------------------------------------------


@pytest.mark.parametrize("source", sorted(PARSERS))
@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty body"),
        (b"   \n", "empty body"),
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe\x00garbage", "malformed JSON"),
        (b"[" * 100_000, "malformed JSON"),
        (b"1" * 5000, "malformed JSON"),
        (b'"a string"', "must be an"),
        (b"42", "must be an"),
        (b"null", "must be an"),
    ],
)
def test_malformed_bodies_raise_payload_error(source, body, match):
    with pytest.raises(PayloadError, match=match):
        PARSERS[source](body, {})


@pytest.mark.parametrize("source", sorted(PARSERS))
def test_oversized_body_is_refused_before_decoding(source):
    with pytest.raises(PayloadError, match="too large"):
        PARSERS[source](b" " * (MAX_BODY_BYTES + 1), {})


@pytest.mark.parametrize(
    ("source", "body", "match"),
    [
        ("registry", b"{}", "missing events"),
        ("registry", b'{"events": {}}', "events must be an array"),
        ("registry", b'{"events": [1]}', r"events\[0\] must be an object"),
        ("registry", b'{"events": [{"target": {}}]}', r"missing events\[0\].action"),
        ("registry", b'{"events": [{"action": "explode"}]}', "unknown action"),
        ("registry", b'{"events": [{"action": "push"}]}', "missing"),
        ("registry", b'{"events": [{"action": 7}]}', "must be a string"),
        ("dockerhub", b'{"repository": {"repo_name": "a/b"}}', "missing push_data"),
        ("dockerhub", b'{"push_data": {"tag": "1"}, "repository": {}}', "repo_name"),
        ("dockerhub", b'{"push_data": [], "repository": {}}', "must be an object"),
        ("harbor", b'{"type": "PUSH_ARTIFACT"}', "missing event_data"),
        ("harbor", b'{"type": "PUSH_ARTIFACT", "event_data": {"resources": 3}}', "array"),
        ("harbor", b'{"occur_at": 1}', "missing type"),
        ("quay", b'{"updated_tags": ["1"]}', "missing docker_url"),
        ("quay", b'{"docker_url": "quay.io/a/b", "updated_tags": [1]}', "must be a string"),
        ("quay", b'{"docker_url": "quay.io/a/b", "updated_tags": "1"}', "must be an array"),
        ("acr", b'{"action": "push"}', "missing target"),
        ("acr", b'[{"data": {}}]', "missing"),
        ("acr", b"[1]", "must be an object"),
        ("ghcr", b'{"action": "published"}', "missing X-GitHub-Event"),
        ("generic", b'[{"image": "a:1"}, 5]', r"\[1\] must be an object"),
        ("gar", b"{}", "missing message"),
        ("gar", b'{"message": []}', "message must be an object"),
        ("gar", b'{"action": 1}', "action must be a string"),
        ("jfrog", b"{}", "missing event_type"),
        ("jfrog", b'{"domain": "docker", "event_type": "pushed", "data": 1}', "must be an object"),
        ("nexus", b"{}", "missing repositoryName"),
        ("nexus", b'{"repositoryName": "r", "action": "CREATED", "component": []}',
         "must be an object"),
    ],
)
def test_structural_errors(source, body, match):
    with pytest.raises(PayloadError, match=match):
        PARSERS[source](body, {})


def test_too_many_items_are_refused():
    body = encode([{"image": "a:1"}] * 1001)
    with pytest.raises(PayloadError, match="more than 1000"):
        parse_generic(body, {})


def test_error_messages_are_short_and_do_not_echo_large_input():
    secret = "s3cr3t-" + "x" * 5000
    with pytest.raises(PayloadError) as caught:
        parse_generic(encode({"image": "reg.io/app", "tag": secret}), {})
    message = str(caught.value)
    assert len(message) <= 200
    assert secret not in message
    assert "\n" not in message


def test_payload_error_is_a_value_error_with_reason():
    error = PayloadError("x" * 1000)
    assert isinstance(error, ValueError)
    assert error.reason == str(error)
    assert len(error.reason) == 200


def test_bodies_may_be_str_bytearray_or_memoryview():
    raw = fixture("generic-1")
    for body in (raw.decode(), bytearray(raw), memoryview(raw)):
        assert len(parse_generic(body, {}).events) == 1


# --- repository normalisation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("docker.io/nginx", "docker.io/library/nginx"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx"),
        ("acme/app", "docker.io/acme/app"),
        ("localhost/app", "localhost/app"),
        ("localhost:5000/app", "localhost:5000/app"),
        ("reg.io/a/b/c", "reg.io/a/b/c"),
        ("Reg.IO/A", "reg.io/a"),
        ("10.0.0.1:5000/app", "10.0.0.1:5000/app"),
        ("[::1]:5000/app", "[::1]:5000/app"),
        ("a__b/c-d.e", "docker.io/a__b/c-d.e"),
    ],
)
def test_normalise_repository(name, expected):
    assert normalise_repository(name) == expected
    assert normalise_repository(expected) == expected  # idempotent


@pytest.mark.parametrize("name", ["", "reg.io/", "/app", "reg.io/-app", "a_-b", "reg.io/a..b"])
def test_normalise_repository_rejects(name):
    with pytest.raises(PayloadError):
        normalise_repository(name)


# --- fuzzing: only PayloadError or a ParseResult, for any input --------------------------------

HEADER_CHOICES = st.sampled_from(
    [
        {},
        PACKAGE,
        REGISTRY_PACKAGE,
        {"X-GitHub-Event": "ping"},
        {"Content-Type": "application/x-www-form-urlencoded", **PACKAGE},
        {"aeg-event-type": "Notification"},
        NEXUS_COMPONENT,
        NEXUS_ASSET,
        {"X-Nexus-Webhook-Id": "rm:audit"},
    ]
)
#: Every kind of entry, so the fuzzed host-less parsers reach their placing code.
FUZZ_HOSTS = host_map("jfrog=acme.jfrog.io,jfrog:docker-local=docker.example.com/x,"
                      "nexus=nexus.example.com:8443,nexus:app1=app1.example.com,"
                      "harbor=harbor.example.com,registry.local:5000=registry.example.com,"
                      "docker.io=mirror.example.com")

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "push",
            "pull",
            "published",
            "PUSH_ARTIFACT",
            "harbor.artifact.pushed",
            "Microsoft.ContainerRegistry.ImagePushed",
            "Microsoft.EventGrid.SubscriptionValidationEvent",
            "application/vnd.oci.image.manifest.v1+json",
            "CONTAINER",
            "latest",
            "reg.io/a/b:1",
            DIGEST,
            "INSERT",
            "DELETE",
            "docker",
            "pushed",
            "CREATED",
            "UPDATED",
            "pushImage",
            "docker-local",
            "v2/a/b/manifests/1.0",
            GAR_TAG,
            GAR_DIGEST,
            base64.b64encode(json.dumps({"action": "INSERT", "tag": GAR_TAG}).encode()).decode(),
        ]
    )
)
KEYS = st.sampled_from(
    """events action target request host url repository tag digest mediaType push_data
    repo_name type event_data data resources resource_url docker_url updated_tags eventType
    validationCode image package package_version package_url container_metadata name
    ecosystem package_type specversion event_type message attributes subscription domain
    repo_key image_name repositoryName component asset format version full_name""".split()
) | st.text(max_size=10)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=30,
)


def assert_parses_or_rejects(source: str, body: bytes, headers: dict[str, str]) -> None:
    """With and without a host map: a ParseResult of normalised events, or PayloadError."""
    for attempt in (lambda: PARSERS[source](body, headers),
                    lambda: parse(source, body, headers, FUZZ_HOSTS)):
        try:
            result = attempt()
        except PayloadError as error:
            assert 0 < len(str(error)) <= 200
            continue
        assert isinstance(result, ParseResult)
        for event in result.events:
            assert isinstance(event, ImagePushEvent)
            assert event.repository == event.repository.lower()
            assert "/" in event.repository
            assert normalise_repository(event.repository) == event.repository
        assert all(isinstance(reason, str) for reason in result.ignored)


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("source", sorted(PARSERS))
@FUZZ
@given(body=st.binary(max_size=512), headers=HEADER_CHOICES)
def test_fuzz_arbitrary_bytes(source, body, headers):
    assert_parses_or_rejects(source, body, headers)


@pytest.mark.parametrize("source", sorted(PARSERS))
@FUZZ
@given(value=JSON_VALUES, headers=HEADER_CHOICES)
def test_fuzz_arbitrary_json(source, value, headers):
    assert_parses_or_rejects(source, encode(value), headers)


def json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths += json_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += json_paths(child, (*prefix, index))
    return paths


FIXTURE_DOCUMENTS = {path.stem: json.loads(path.read_bytes()) for path in ALL_FIXTURES}
FIXTURE_PATHS = {name: json_paths(document) for name, document in FIXTURE_DOCUMENTS.items()}


@pytest.mark.parametrize("source", sorted(PARSERS))
@FUZZ
@given(data=st.data(), headers=HEADER_CHOICES)
def test_fuzz_mutated_fixtures(source, data, headers):
    """Real payloads with one node replaced or removed: reaches deep into every parser."""
    name = data.draw(st.sampled_from(sorted(FIXTURE_DOCUMENTS)))
    document = copy.deepcopy(FIXTURE_DOCUMENTS[name])
    path = data.draw(st.sampled_from(FIXTURE_PATHS[name]))
    replacement = data.draw(JSON_VALUES)
    if not path:
        document = replacement
    else:
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
    assert_parses_or_rejects(source, encode(document), headers)


@pytest.mark.parametrize("source", sorted(PARSERS))
@pytest.mark.parametrize("name", sorted(FIXTURE_DOCUMENTS))
def test_every_fixture_through_every_parser(source, name):
    """Misrouted deliveries (a Harbor body on the Quay URL…) are rejected or ignored cleanly."""
    assert_parses_or_rejects(source, fixture(name), {})


# --- one normaliser: the webhooks' repository is the core's ------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "REGISTRY.example.com/team/app",  # a host in capitals: DNS is case-blind, so is the key
        "MyHost/app",  # an upper-case first component is a host (distribution/reference)
        "myhost/app",  # ... and a lower-case one is a Docker Hub namespace
        "Index.Docker.io/library/nginx",
        "nginx",
        "localhost:5000/a/b",
        "[::1]:5000/app",
    ],
)
def test_webhook_repositories_are_normalised_by_the_core(name):
    from operator_app.core.images import parse_image

    assert normalise_repository(name) == parse_image(name).repository


def test_a_push_names_the_host_in_any_case():
    body = json.dumps({"events": [{
        "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "repository": "team/app", "tag": "1.1.0", "digest": "sha512:" + "ab" * 64},
        "request": {"host": "Registry.Example.COM"},
    }]}).encode()
    event = parse_registry(body, {}).events[0]
    from operator_app.core.images import parse_image

    assert event.repository == parse_image("REGISTRY.example.com/team/app:1.0").repository
    assert event.digest == "sha512:" + "ab" * 64  # sha384/sha512 as go-digest allows
