"""imagePullSecret parsing and kubelet-style credential matching.

Inputs: Secret data as built by `kubectl create secret docker-registry` and by hand. Asserted:
which entries apply to which image, in which order, and that no repr, str or error message
ever contains a password, identity token or `auth` value.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.dockerconfig import (
    DOCKERCFG,
    DOCKERCONFIGJSON,
    CredentialEntry,
    Credentials,
    DockerConfigError,
    decode_secret_data,
    match_credentials,
    normalise_pattern,
    parse_docker_config,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def configjson(auths: dict, *, as_bytes: bool = True) -> dict[str, bytes | str]:
    raw = json.dumps({"auths": auths})
    return {".dockerconfigjson": raw.encode() if as_bytes else raw}


def entry(pattern: str, user: str = "u", password: str = "p") -> CredentialEntry:
    return CredentialEntry(pattern, user, password)


def users(found: list[Credentials]) -> list[str]:
    return [credentials.username for credentials in found]


# --- parsing ----------------------------------------------------------------------------------


def test_kubectl_style_dockerconfigjson():
    data = configjson(
        {
            "reg.example.com": {
                "username": "bob",
                "password": "hunter2",
                "email": "bob@example.com",
                "auth": b64("bob:hunter2"),
            }
        }
    )
    assert parse_docker_config(DOCKERCONFIGJSON, data) == [
        CredentialEntry("reg.example.com", "bob", "hunter2", None)
    ]


def test_str_values_are_accepted():
    data = configjson({"reg.io": {"auth": b64("a:b")}}, as_bytes=False)
    assert parse_docker_config(DOCKERCONFIGJSON, data)[0].password == "b"


def test_legacy_dockercfg_map_without_wrapper():
    data = {".dockercfg": json.dumps({"https://reg.io/v1/": {"auth": b64("x:y")}}).encode()}
    assert parse_docker_config(DOCKERCFG, data) == [CredentialEntry("reg.io", "x", "y", None)]


def test_auth_is_decoded_when_username_password_absent():
    data = configjson({"reg.io": {"auth": b64("robot$ci:pa:ss:word")}})
    [parsed] = parse_docker_config(DOCKERCONFIGJSON, data)
    assert (parsed.username, parsed.password) == ("robot$ci", "pa:ss:word")


def test_auth_without_padding_is_accepted():
    data = configjson({"reg.io": {"auth": b64("ab:c").rstrip("=")}})
    assert parse_docker_config(DOCKERCONFIGJSON, data)[0].password == "c"


def test_auth_wins_over_username_password_as_in_kubelet():
    data = configjson({"reg.io": {"username": "a", "password": "b", "auth": b64("c:d")}})
    [parsed] = parse_docker_config(DOCKERCONFIGJSON, data)
    assert (parsed.username, parsed.password) == ("c", "d")


def test_identity_token_is_kept():
    data = configjson(
        {"reg.io": {"auth": b64("00000000-0000-0000-0000-000000000000:"), "identitytoken": "tok"}}
    )
    [parsed] = parse_docker_config(DOCKERCONFIGJSON, data)
    assert parsed.identity_token == "tok"
    assert parsed.username == "00000000-0000-0000-0000-000000000000"


def test_entry_with_no_credentials_is_anonymous():
    data = configjson({"reg.io": {}})
    assert parse_docker_config(DOCKERCONFIGJSON, data) == [CredentialEntry("reg.io", "", "")]


def test_keys_that_cannot_name_a_registry_are_skipped():
    data = configjson({"": {"auth": b64("a:b")}, "bad host": {}, "reg.io": {}})
    assert [e.pattern for e in parse_docker_config(DOCKERCONFIGJSON, data)] == ["reg.io"]


def test_decode_secret_data():
    raw = configjson({"reg.io": {"auth": b64("a:b")}})[".dockerconfigjson"]
    decoded = decode_secret_data({".dockerconfigjson": base64.b64encode(raw).decode()})
    assert parse_docker_config(DOCKERCONFIGJSON, decoded)[0].username == "a"
    with pytest.raises(DockerConfigError, match="not valid base64"):
        decode_secret_data({".dockerconfigjson": "!!!"})


@pytest.mark.parametrize(
    ("secret_type", "data", "match"),
    [
        ("Opaque", {}, "unsupported secret type"),
        (DOCKERCONFIGJSON, {}, "no .dockerconfigjson key"),
        (DOCKERCFG, {".dockerconfigjson": b"{}"}, "no .dockercfg key"),
        (DOCKERCONFIGJSON, {".dockerconfigjson": b"{nope"}, "not valid JSON"),
        (DOCKERCONFIGJSON, {".dockerconfigjson": b"\xff\xfe\xfd"}, "not valid JSON"),
        (DOCKERCONFIGJSON, {".dockerconfigjson": b"[" * 50_000}, "not valid JSON"),
        (DOCKERCONFIGJSON, {".dockerconfigjson": b"[]"}, "must be a JSON object"),
        (DOCKERCONFIGJSON, {".dockerconfigjson": b'{"reg.io": {}}'}, "dockercfg map"),
        (DOCKERCONFIGJSON, {".dockerconfigjson": b'{"auths": []}'}, "no 'auths' object"),
        (DOCKERCONFIGJSON, {".dockerconfigjson": 5}, "bytes or str"),
        (DOCKERCONFIGJSON, configjson({"reg.io": "x"}), "must be a JSON object"),
        (DOCKERCONFIGJSON, configjson({"reg.io": {"password": 1}}), "'password' must be"),
        (DOCKERCONFIGJSON, configjson({"reg.io": {"auth": "%%%"}}), "not base64"),
        (DOCKERCONFIGJSON, configjson({"reg.io": {"auth": b64("nocolon")}}), "username:password"),
        (DOCKERCFG, {".dockercfg": b'{"reg.io": []}'}, "must be a JSON object"),
    ],
)
def test_malformed_configs(secret_type, data, match):
    with pytest.raises(DockerConfigError, match=match):
        parse_docker_config(secret_type, data)


# --- key normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("reg.io", "reg.io"),
        ("https://reg.io", "reg.io"),
        ("http://reg.io/", "reg.io"),
        ("HTTPS://Reg.IO/v2/", "reg.io"),
        ("https://reg.io/v1/", "reg.io"),
        ("reg.io/v2/team/app/", "reg.io/team/app"),
        ("reg.io/team/", "reg.io/team"),
        ("reg.io:5000", "reg.io:5000"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io/acme", "docker.io/acme"),
        ("*.example.com", "*.example.com"),
        ("localhost:5000", "localhost:5000"),
        ("[::1]:5000", "[::1]:5000"),
        ("", None),
        ("https://", None),
        ("reg io", None),
        ("reg.io/a//b", None),
    ],
)
def test_normalise_pattern(key, pattern):
    assert normalise_pattern(key) == pattern


# --- matching: one row per kubelet rule -------------------------------------------------------

MATCH_TABLE = [
    # exact host
    ("reg.io", "reg.io/app", True),
    ("reg.io", "other.io/app", False),
    ("reg.io", "reg.io/team/app:1.0@sha256:" + "a" * 64, True),
    ("REG.IO", "reg.io/app", True),
    # Docker Hub keys and bare Docker Hub images
    ("docker.io", "docker.io/library/nginx", True),
    ("docker.io", "nginx", True),
    ("docker.io", "acme/app", True),
    ("docker.io", "index.docker.io/acme/app", True),
    ("docker.io", "ghcr.io/acme/app", False),
    ("docker.io", "localhost/app", False),
    ("docker.io/acme", "acme/app", True),
    ("docker.io/library", "nginx", True),
    ("docker.io/acme", "other/app", False),
    # glob host labels: one label per label
    ("*.example.com", "reg.example.com/app", True),
    ("*.example.com", "example.com/app", False),
    ("*.example.com", "a.b.example.com/app", False),
    ("*.*.example.com", "a.b.example.com/app", True),
    ("reg-?.example.com", "reg-1.example.com/app", True),
    ("reg-?.example.com", "reg-10.example.com/app", False),
    ("*.example.com", "reg.example.org/app", False),
    ("*.azurecr.io", "contoso.azurecr.io/team/app", True),
    # port must match exactly
    ("reg.io:5000", "reg.io:5000/app", True),
    ("reg.io:5000", "reg.io/app", False),
    ("reg.io", "reg.io:5000/app", False),
    ("reg.io:5000", "reg.io:5001/app", False),
    ("*.example.com:5000", "a.example.com:5000/app", True),
    ("localhost:5000", "localhost:5000/app", True),
    ("localhost", "localhost:5000/app", False),
    ("[::1]:5000", "[::1]:5000/app", True),
    # path prefix on whole components
    ("reg.io/team", "reg.io/team/app", True),
    ("reg.io/team", "reg.io/team", True),
    ("reg.io/team", "reg.io/teamx/app", False),
    ("reg.io/team", "reg.io/app", False),
    ("reg.io/team/app", "reg.io/team/app", True),
    ("reg.io/team/app", "reg.io/team/other", False),
    ("reg.io/team/app", "reg.io/team", False),
    ("*.example.com/team", "a.example.com/team/app", True),
]


@pytest.mark.parametrize(("pattern", "image", "applies"), MATCH_TABLE)
def test_matching_rule(pattern, image, applies):
    found = match_credentials([entry(pattern)], image)
    assert (len(found) == 1) is applies


@pytest.mark.parametrize(
    "key", ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
)
def test_every_docker_hub_key_spelling_matches_docker_hub_images(key):
    data = configjson({key: {"auth": b64("hub:pw")}})
    entries = parse_docker_config(DOCKERCONFIGJSON, data)
    for image in ("nginx", "library/nginx", "docker.io/acme/app", "index.docker.io/acme/app"):
        assert users(match_credentials(entries, image)) == ["hub"]
    assert match_credentials(entries, "quay.io/acme/app") == []


def test_more_specific_matches_come_first_and_all_are_returned():
    entries = [
        entry("*.io", "glob-host"),
        entry("reg.io", "host"),
        entry("reg.io/team", "team"),
        entry("reg.io/team/app", "app"),
        entry("reg.io/other", "other"),
    ]
    found = match_credentials(entries, "reg.io/team/app")
    assert users(found) == ["app", "team", "host", "glob-host"]
    assert [credentials.pattern for credentials in found] == [
        "reg.io/team/app",
        "reg.io/team",
        "reg.io",
        "*.io",
    ]


def test_equal_specificity_keeps_the_given_order():
    entries = [entry("reg.io", "first-secret"), entry("reg.io", "second-secret")]
    assert users(match_credentials(entries, "reg.io/app")) == ["first-secret", "second-secret"]


def test_identical_credentials_are_returned_once():
    entries = [entry("reg.io", "same"), entry("reg.io/team", "same")]
    assert len(match_credentials(entries, "reg.io/team/app")) == 1


def test_no_match_is_an_empty_list():
    assert match_credentials([entry("reg.io")], "quay.io/app") == []
    assert match_credentials([], "reg.io/app") == []


def test_matching_end_to_end_from_two_secrets():
    first = parse_docker_config(
        DOCKERCONFIGJSON,
        configjson({"https://reg.example.com/v1/": {"auth": b64("ci:one")}}),
    )
    second = parse_docker_config(
        DOCKERCFG,
        {".dockercfg": json.dumps({"reg.example.com/payments": {"auth": b64("pay:two")}})},
    )
    found = match_credentials(first + second, "reg.example.com/payments/ledger:1.8.0")
    assert [(c.username, c.password) for c in found] == [("pay", "two"), ("ci", "one")]


# --- secrets never leak -----------------------------------------------------------------------

SECRET = "Sup3r-S3cret-Pa55"


def test_repr_and_str_hide_password_and_token():
    parsed = CredentialEntry("reg.io", "bob", SECRET, SECRET + "-token")
    found = match_credentials([parsed], "reg.io/app")[0]
    for obj in (parsed, found, [parsed], [found]):
        for text in (repr(obj), str(obj), f"{obj}"):
            assert SECRET not in text
            assert "bob" in text
            assert "<redacted>" in text


def test_repr_shows_empty_password_as_empty():
    assert "password=''" in repr(CredentialEntry("reg.io", "", ""))


SECRET_TEXT = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='"\\'),
    min_size=6,
    max_size=24,
).map(lambda text: "pw#" + text)  # the prefix keeps it from matching fixed message text


@settings(max_examples=100, deadline=None)
@given(password=SECRET_TEXT)
def test_errors_never_contain_the_password(password):
    broken_configs = [
        # JSON broken right after the password
        {".dockerconfigjson": f'{{"auths": {{"r.io": {{"password": "{password}" '.encode()},
        # auth that decodes to text without a colon (the whole text is the "password")
        configjson({"r.io": {"auth": b64(password.replace(":", ""))}}),
        # a valid password next to a broken auth and a wrong-typed field
        configjson({"r.io": {"username": "u", "password": password, "auth": 5}}),
        configjson({"r.io": {"auth": b64("u:" + password) + "!"}}),
        configjson({"r.io": {"password": password, "identitytoken": ["x"]}}),
        # the password in a userinfo part of the key
        configjson({f"https://u:{password.replace('/', '')}@r.io": "not-an-object"}),
    ]
    for data in broken_configs:
        with pytest.raises(DockerConfigError) as caught:
            parse_docker_config(DOCKERCONFIGJSON, data)
        message = str(caught.value) + repr(caught.value)
        assert password not in message
        assert password.replace(":", "") not in message
        assert b64("u:" + password) not in message


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=300))
def test_arbitrary_secret_bytes_raise_only_docker_config_error(raw):
    for secret_type, key in ((DOCKERCONFIGJSON, ".dockerconfigjson"), (DOCKERCFG, ".dockercfg")):
        try:
            entries = parse_docker_config(secret_type, {key: raw})
        except DockerConfigError:
            continue
        match_credentials(entries, "reg.io/app")
