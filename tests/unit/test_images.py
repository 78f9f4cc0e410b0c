"""Image reference parsing and normalisation (operator_app.core.images).

Real: the parser. Faked: nothing. Expected values follow distribution/reference's
``ParseNormalizedNamed`` (what containerd/CRI-O resolve), plus the registry-1.docker.io alias.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from operator_app.core.images import (
    ImageRef,
    InvalidImageReference,
    is_valid_digest,
    is_valid_tag,
    join_repository,
    normalise_repository,
    parse_image,
    short_digest,
)

SHA = "sha256:" + "0123456789abcdef" * 4
SHA2 = "sha256:" + "fedcba9876543210" * 4


@pytest.mark.parametrize(
    ("text", "registry", "path", "tag", "digest", "name"),
    [
        ("nginx", "docker.io", "library/nginx", None, None, "nginx"),
        ("nginx:1.25.3", "docker.io", "library/nginx", "1.25.3", None, "nginx"),
        ("library/nginx", "docker.io", "library/nginx", None, None, "library/nginx"),
        ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None, "bitnami/redis"),
        ("docker.io/nginx", "docker.io", "library/nginx", None, None, "docker.io/nginx"),
        (
            "docker.io/library/nginx:1",
            "docker.io",
            "library/nginx",
            "1",
            None,
            "docker.io/library/nginx",
        ),
        (
            "index.docker.io/nginx",
            "docker.io",
            "library/nginx",
            None,
            None,
            "index.docker.io/nginx",
        ),
        (
            "registry-1.docker.io/org/app:v2",
            "docker.io",
            "org/app",
            "v2",
            None,
            "registry-1.docker.io/org/app",
        ),
        ("ghcr.io/org/app:main", "ghcr.io", "org/app", "main", None, "ghcr.io/org/app"),
        ("ghcr.io/app", "ghcr.io", "app", None, None, "ghcr.io/app"),  # no library/ off Hub
        ("localhost/app", "localhost", "app", None, None, "localhost/app"),
        (
            "localhost:5000/team/app:1.0",
            "localhost:5000",
            "team/app",
            "1.0",
            None,
            "localhost:5000/team/app",
        ),
        ("registry:5000/app", "registry:5000", "app", None, None, "registry:5000/app"),
        ("10.0.0.1:5000/a/b/c:x", "10.0.0.1:5000", "a/b/c", "x", None, "10.0.0.1:5000/a/b/c"),
        ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None, "[::1]:5000/app"),
        ("[2001:db8::1]/app", "[2001:db8::1]", "app", None, None, "[2001:db8::1]/app"),
        # Hosts compare case-insensitively (DNS does): the key spells them in lower case, the
        # name keeps the user's spelling for what is written back.
        (
            "REGISTRY.example.com/app",
            "registry.example.com",
            "app",
            None,
            None,
            "REGISTRY.example.com/app",
        ),
        # ParseNormalizedNamed: an uppercase first component can only be a host.
        ("Registry/app", "registry", "app", None, None, "Registry/app"),
        (
            "docker.io/a.b-c__d/e---f:T_a.g-1",
            "docker.io",
            "a.b-c__d/e---f",
            "T_a.g-1",
            None,
            "docker.io/a.b-c__d/e---f",
        ),
        ("nginx@" + SHA, "docker.io", "library/nginx", None, SHA, "nginx"),
        ("nginx:latest@" + SHA, "docker.io", "library/nginx", "latest", SHA, "nginx"),
        ("localhost:5000/app:1@" + SHA, "localhost:5000", "app", "1", SHA, "localhost:5000/app"),
        (
            "nginx@sha512:" + "ab" * 64,
            "docker.io",
            "library/nginx",
            None,
            "sha512:" + "ab" * 64,
            "nginx",
        ),
        # No slash: "localhost:5000" is image "localhost" with tag "5000" (runtime FIXME).
        ("localhost:5000", "docker.io", "library/localhost", "5000", None, "localhost"),
    ],
)
def test_parse_valid(
    text: str, registry: str, path: str, tag: str | None, digest: str | None, name: str
) -> None:
    ref = parse_image(text)
    assert ref == ImageRef(registry=registry, path=path, tag=tag, digest=digest, name=name)
    assert ref.repository == f"{registry}/{path}"
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("Nginx", "must be lowercase"),
        ("docker.io/Library/nginx", "must be lowercase"),
        ("org/App:1", "must be lowercase"),
        ("nginx:", "invalid tag"),
        ("nginx:-1", "invalid tag"),
        ("nginx:.x", "invalid tag"),
        ("nginx:" + "a" * 129, "invalid tag"),
        ("nginx:1:2", "invalid tag"),
        ("nginx:tag with space", "invalid tag"),
        ("nginx:tâg", "invalid tag"),
        ("nginx@sha256:abc", "invalid digest"),
        ("nginx@sha256:" + "A" * 64, "lowercase hex"),
        ("nginx@sha256:" + "a" * 63, "lowercase hex"),
        ("nginx@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("nginx@", "invalid digest"),
        ("nginx@" + SHA + "@" + SHA, "invalid digest"),
        ("0123456789abcdef" * 4, "64-byte hexadecimal"),
        ("/nginx", "path component"),
        ("nginx/", "path component"),
        ("a//b", "path component"),
        ("-nginx", "path component"),
        ("nginx-", "path component"),
        ("a_-b", "path component"),
        ("a___b", "path component"),
        ("a..b", "path component"),
        (" nginx", "path component"),
        ("ng!nx", "path component"),
        ("ex ample.com/app", "invalid registry host"),
        # A first component with a '.' is a host, and hosts cannot contain '_'.
        ("a.b_c/app", "invalid registry host"),
        ("example.com:port/app", "invalid registry host"),
        ("-bad.com/app", "invalid registry host"),
        ("[::1/app", "invalid registry host"),
        ("localhost:5000/", "path component"),
        ("a" * 256 + "/b", "longer than 255"),
    ],
)
def test_parse_invalid_names_the_input(text: str, problem: str) -> None:
    with pytest.raises(InvalidImageReference) as caught:
        parse_image(text)
    assert repr(text) in str(caught.value)
    assert problem in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_path_length_limit_applies_after_normalisation() -> None:
    parse_image("ghcr.io/" + "a" * 255)
    with pytest.raises(InvalidImageReference):
        parse_image("a" * 250)  # becomes library/aaaa..., 258 characters


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", "latest"),
        ("nginx:1.2", "1.2"),
        ("nginx:1.2@" + SHA, "1.2"),
        ("nginx@" + SHA, None),
    ],
)
def test_effective_tag(text: str, expected: str | None) -> None:
    assert parse_image(text).effective_tag == expected


@pytest.mark.parametrize(
    ("text", "tag", "digest", "expected"),
    [
        ("nginx:1.2.3", "1.3.0", None, "nginx:1.3.0"),
        ("nginx", "1.3.0", None, "nginx:1.3.0"),
        ("nginx:1.2.3", "latest", SHA, "nginx:latest@" + SHA),
        ("docker.io/library/nginx:1", "2", None, "docker.io/library/nginx:2"),
        ("index.docker.io/nginx:1", "2", None, "index.docker.io/nginx:2"),
        ("localhost:5000/app:1", "2", None, "localhost:5000/app:2"),
        # An old digest would pin the pod to the old image, so it is dropped...
        ("nginx:1@" + SHA, "2", None, "nginx:2"),
        # ...unless the caller supplies the new one.
        ("nginx:1@" + SHA, "1", SHA2, "nginx:1@" + SHA2),
        ("nginx@" + SHA, "1", None, "nginx:1"),
    ],
)
def test_with_tag_keeps_the_users_spelling(
    text: str, tag: str, digest: str | None, expected: str
) -> None:
    ref = parse_image(text)
    result = ref.with_tag(tag, digest)
    assert result == expected
    assert parse_image(result).repository == ref.repository


@pytest.mark.parametrize(("tag", "digest"), [("", None), ("-x", None), ("1", "sha256:zz")])
def test_with_tag_rejects_bad_input(tag: str, digest: str | None) -> None:
    with pytest.raises(InvalidImageReference):
        parse_image("nginx:1").with_tag(tag, digest)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("library/nginx", "docker.io/library/nginx"),
        ("bitnami/redis", "docker.io/bitnami/redis"),
        ("docker.io/nginx", "docker.io/library/nginx"),
        ("registry-1.docker.io/library/nginx", "docker.io/library/nginx"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx"),
        ("ghcr.io/org/app", "ghcr.io/org/app"),
        ("localhost:5000/team/app", "localhost:5000/team/app"),
    ],
)
def test_normalise_repository(text: str, expected: str) -> None:
    assert normalise_repository(text) == expected


@pytest.mark.parametrize("text", ["nginx:1", "nginx@" + SHA, "", "Nginx"])
def test_normalise_repository_rejects_images_and_garbage(text: str) -> None:
    with pytest.raises(InvalidImageReference):
        normalise_repository(text)


def test_helpers() -> None:
    assert is_valid_tag("v1.2.3-rc.1_x")
    assert not is_valid_tag("v1+build")
    assert is_valid_digest(SHA)
    assert not is_valid_digest("sha256:" + "0" * 32)
    assert short_digest(SHA) == "sha256:0123456789ab"


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

_component = st.from_regex(r"[a-z0-9]{1,6}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,6}){0,2}", fullmatch=True)
_registries = st.sampled_from(
    [
        None,
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "ghcr.io",
        "localhost",
        "localhost:5000",
        "my-registry.example.com:443",
        "127.0.0.1:5000",
        "[::1]:5000",
        "Upper",
    ]
)
_tags = st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True)
_digests = st.none() | st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)


@st.composite
def _image_strings(draw: st.DrawFn) -> str:
    registry = draw(_registries)
    components = draw(st.lists(_component, min_size=1, max_size=4))
    if registry is None and len(components) > 1:
        # Without a registry, a first component containing '.' would be read as a host.
        components[0] = components[0].replace(".", "-")
    path = "/".join(components)
    tag, digest = draw(_tags), draw(_digests)
    text = f"{registry}/{path}" if registry else path
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"
    return text


@given(_image_strings())
def test_parse_round_trips(text: str) -> None:
    ref = parse_image(text)
    assert str(ref) == text
    assert parse_image(str(ref)) == ref
    # The normalised (registry, path) is stable: joining it again gives the same key.
    assert join_repository(ref.registry, ref.path) == ref.repository


@given(_image_strings(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True))
def test_with_tag_changes_only_the_tag(text: str, tag: str) -> None:
    ref = parse_image(text)
    moved = parse_image(ref.with_tag(tag))
    assert (moved.name, moved.repository, moved.tag, moved.digest) == (
        ref.name,
        ref.repository,
        tag,
        None,
    )


@given(st.text(max_size=40))
def test_parse_never_raises_anything_but_invalid_reference(text: str) -> None:
    assume(text)
    try:
        ref = parse_image(text)
    except InvalidImageReference:
        return
    assert str(ref) == text
