"""Webhook parsers: real and documented payloads in, ImagePushEvents out.

Inputs: the files in tests/fixtures/webhooks (copied from the shared reference set, whose
INDEX.md gives the expected `host/repository:tag@digest`, plus our own quay/acr/eventgrid/generic
files built from the vendors' documented shapes; see LOCAL.md there) and small inline payloads.
Asserted: exact repository/tag/digest values, ignore reasons, PayloadError for bad input, and,
by fuzzing, that no input makes a parser raise anything but PayloadError.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operator_app.core.events import EventSource, ImagePushEvent
from registry.webhooks import (
    MAX_BODY_BYTES,
    PARSERS,
    ParseResult,
    PayloadError,
    normalise_repository,
    parse_acr,
    parse_dockerhub,
    parse_generic,
    parse_ghcr,
    parse_harbor,
    parse_quay,
    parse_registry,
)

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
DIGEST = "sha256:" + "ab" * 32

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
    ("harbor", "harbor-4", {}, [], ["harbor 1.x payload without registry host"]),
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


def test_every_fixture_file_is_covered():
    covered = {case[1] for case in FIXTURE_CASES}
    assert {path.stem for path in ALL_FIXTURES} - covered == {"jfrog-2"}  # no JFrog parser yet


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
        "generic",
    }
    assert all(parser.__doc__ for parser in PARSERS.values())


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
    ]
)

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
        ]
    )
)
KEYS = st.sampled_from(
    """events action target request host url repository tag digest mediaType push_data
    repo_name type event_data data resources resource_url docker_url updated_tags eventType
    validationCode image package package_version package_url container_metadata name
    ecosystem package_type specversion event_type""".split()
) | st.text(max_size=10)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=30,
)


def assert_parses_or_rejects(parser, body: bytes, headers: dict[str, str]) -> None:
    try:
        result = parser(body, headers)
    except PayloadError as error:
        assert 0 < len(str(error)) <= 200
        return
    assert isinstance(result, ParseResult)
    for event in result.events:
        assert isinstance(event, ImagePushEvent)
        assert event.repository == event.repository.lower()
        assert "/" in event.repository
    assert all(isinstance(reason, str) for reason in result.ignored)


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("source", sorted(PARSERS))
@FUZZ
@given(body=st.binary(max_size=512), headers=HEADER_CHOICES)
def test_fuzz_arbitrary_bytes(source, body, headers):
    assert_parses_or_rejects(PARSERS[source], body, headers)


@pytest.mark.parametrize("source", sorted(PARSERS))
@FUZZ
@given(value=JSON_VALUES, headers=HEADER_CHOICES)
def test_fuzz_arbitrary_json(source, value, headers):
    assert_parses_or_rejects(PARSERS[source], encode(value), headers)


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
    assert_parses_or_rejects(PARSERS[source], encode(document), headers)


@pytest.mark.parametrize("source", sorted(PARSERS))
@pytest.mark.parametrize("name", sorted(FIXTURE_DOCUMENTS))
def test_every_fixture_through_every_parser(source, name):
    """Misrouted deliveries (a Harbor body on the Quay URL…) are rejected or ignored cleanly."""
    assert_parses_or_rejects(PARSERS[source], fixture(name), {})


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
