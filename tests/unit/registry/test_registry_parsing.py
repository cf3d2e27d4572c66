"""Pure parts of the registry adapter: Secrets, image names, challenges. No server."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.images import (
    DOCKER_HUB,
    RegistryCredentials,
    normalise_registry_host,
    parse_dockerconfigjson,
    split_image,
)
from promotion_operator.registry import RegistryClient, parse_www_authenticate

PASSWORD = "hunter2-Very$ecret"


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _config(auths: object) -> str:
    return json.dumps({"auths": auths})


# -- dockerconfigjson ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("registry.example.com", "registry.example.com"),
        ("registry.example.com:5000", "registry.example.com:5000"),
        ("https://registry.example.com/v1/", "registry.example.com"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("Registry.Example.COM", "registry.example.com"),
        ("https://index.docker.io/v1/", DOCKER_HUB),
        ("docker.io", DOCKER_HUB),
        ("localhost:5000/", "localhost:5000"),
    ],
)
def test_dockerconfigjson_keys_are_normalised_to_host_and_port(key: str, host: str) -> None:
    parsed = parse_dockerconfigjson(_config({key: {"auth": _auth("ci", PASSWORD)}}))
    assert parsed == {host: RegistryCredentials("ci", PASSWORD)}


def test_dockerconfigjson_accepts_username_and_password_fields_and_bytes() -> None:
    data = _config({"r.example.com": {"username": "ci", "password": PASSWORD}}).encode()
    assert parse_dockerconfigjson(data) == {"r.example.com": RegistryCredentials("ci", PASSWORD)}


def test_dockerconfigjson_password_may_contain_colons() -> None:
    parsed = parse_dockerconfigjson(_config({"r.example.com": {"auth": _auth("ci", "a:b:c")}}))
    assert parsed["r.example.com"].password == "a:b:c"


def test_dockerconfigjson_with_several_hosts_and_extra_fields() -> None:
    data = json.dumps(
        {
            "auths": {
                "a.example.com": {"auth": _auth("one", "p1"), "email": "x@example.com"},
                "b.example.com:443": {"username": "two", "password": "p2", "auth": ""},
            },
            "credHelpers": {},
        }
    )
    assert parse_dockerconfigjson(data) == {
        "a.example.com": RegistryCredentials("one", "p1"),
        "b.example.com:443": RegistryCredentials("two", "p2"),
    }


def test_empty_auths_means_no_credentials() -> None:
    assert parse_dockerconfigjson(_config({})) == {}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\xff\xfe", "not UTF-8"),
        ("{not json", "not valid JSON"),
        ("[]", '"auths"'),
        (json.dumps({"r.example.com": {"auth": _auth("ci", PASSWORD)}}), '"auths"'),
        (_config(["r.example.com"]), '"auths"'),
        (_config({"r.example.com": "ci:" + PASSWORD}), "is not an object"),
        (_config({"r.example.com": {"auth": "%%%" + PASSWORD}}), "not base64"),
        (
            _config({"r.example.com": {"auth": base64.b64encode(PASSWORD.encode()).decode()}}),
            "username:password",
        ),
        (_config({"r.example.com": {"auth": _auth("", PASSWORD)}}), "username:password"),
        (_config({"r.example.com": {"username": "ci"}}), 'neither "auth"'),
        (_config({"r.example.com": {"identitytoken": PASSWORD}}), "identity tokens"),
        (_config({"": {"auth": _auth("ci", PASSWORD)}}), "no host"),
    ],
)
def test_bad_dockerconfigjson_is_a_permanent_secret_error_without_values(
    data: bytes | str, says: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        parse_dockerconfigjson(data)
    error = caught.value
    assert error.reason is Reason.SECRET_INVALID
    assert not error.retryable
    assert says in error.message
    assert "registry Secret is invalid" in error.message
    for text in (str(error), repr(error), error.message):
        assert PASSWORD not in text
        assert _auth("ci", PASSWORD) not in text


def test_dockerconfigjson_error_names_the_host_to_fix() -> None:
    with pytest.raises(PermanentError, match=r"entry for r\.example\.com:5000"):
        parse_dockerconfigjson(_config({"https://r.example.com:5000/v1/": {"auth": "@@"}}))


@given(
    user=st.text(st.characters(blacklist_characters=":", blacklist_categories=["Cs"]), min_size=1),
    password=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1),
)
def test_auth_field_round_trips_any_username_and_password(user: str, password: str) -> None:
    parsed = parse_dockerconfigjson(_config({"r.example.com": {"auth": _auth(user, password)}}))
    assert parsed == {"r.example.com": RegistryCredentials(user, password)}


def test_credentials_repr_hides_the_password() -> None:
    creds = RegistryCredentials("ci", PASSWORD)
    assert PASSWORD not in repr(creds)
    assert PASSWORD not in str(creds)
    assert "ci" in repr(creds)


def test_client_repr_hides_credentials() -> None:
    client = RegistryClient({"https://r.example.com/v1/": RegistryCredentials("ci", PASSWORD)})
    assert PASSWORD not in repr(client)
    assert "r.example.com" in repr(client)


# -- image names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("registry.example.com:5000/team/app", ("registry.example.com:5000", "team/app")),
        ("registry.example.com/team/sub/app", ("registry.example.com", "team/sub/app")),
        ("nginx", (DOCKER_HUB, "library/nginx")),
        ("bitnami/nginx", (DOCKER_HUB, "bitnami/nginx")),
        ("docker.io/library/nginx", (DOCKER_HUB, "library/nginx")),
        ("index.docker.io/team/app", (DOCKER_HUB, "team/app")),
        ("localhost/x", ("localhost", "x")),
        ("localhost:5000/x", ("localhost:5000", "x")),
        ("127.0.0.1:5000/team/tvhub-frontend", ("127.0.0.1:5000", "team/tvhub-frontend")),
        ("ghcr.io/org/app.name_with__parts", ("ghcr.io", "org/app.name_with__parts")),
        ("Registry.Example.com/team/app", ("registry.example.com", "team/app")),
        ("[::1]:5000/team/app", ("[::1]:5000", "team/app")),
    ],
)
def test_split_image(image: str, expected: tuple[str, str]) -> None:
    assert split_image(image) == expected


@pytest.mark.parametrize(
    "image",
    [
        "",
        "Team/App",
        "registry.example.com/team/app:v1",
        "nginx:1.27",
        "registry.example.com/team/app@sha256:" + "0" * 64,
        "registry.example.com/",
        "registry.example.com/team//app",
        "registry.example.com/team/-app",
        "-bad.example.com/app",
        "registry.example.com:port/app",
    ],
)
def test_split_image_rejects_malformed_names(image: str) -> None:
    with pytest.raises(PermanentError) as caught:
        split_image(image)
    assert caught.value.reason is Reason.INVALID_SPEC


@pytest.mark.parametrize("tag", ["", "-v1", "v1/../x", "v1?x=1", "a" * 129, "v 1"])
def test_check_tag_rejects_a_malformed_tag_before_any_request(tag: str) -> None:
    client = RegistryClient(timeout=0.001)
    with pytest.raises(PermanentError) as caught:
        client.check_tag("registry.invalid/team/app", tag)
    assert caught.value.reason is Reason.INVALID_SPEC


def test_normalise_registry_host_strips_scheme_and_path() -> None:
    assert normalise_registry_host(" https://R.example.com:443/v2/ ") == "r.example.com:443"


# -- WWW-Authenticate --------------------------------------------------------------------


def test_parse_bearer_challenge() -> None:
    challenge = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull",error="insufficient_scope"'
    )
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/nginx:pull",
        "error": "insufficient_scope",
    }


def test_parse_basic_challenge_and_odd_spacing() -> None:
    challenge = parse_www_authenticate('Basic  realm = "my \\"quoted\\" realm" , charset=UTF-8')
    assert challenge is not None
    assert challenge.scheme == "basic"
    assert challenge.params == {"realm": 'my "quoted" realm', "charset": "UTF-8"}


def test_parse_empty_challenge() -> None:
    assert parse_www_authenticate("") is None
