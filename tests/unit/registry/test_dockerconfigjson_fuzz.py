"""Fuzzing the dockerconfigjson parser: a tenant writes the Secret, the operator reads it.

Whatever the bytes, the parser returns credentials or raises `SecretInvalid` with a
message that quotes nothing from the Secret: never another exception (which the lifecycle
would not sort, leaving a Promotion stuck), never a leaked password.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.images import RegistryCredentials, parse_dockerconfigjson
from support.fuzz import fuzz

SECRET = "s3cret-Pa55-never-shown"
HOST_BITS = st.sampled_from(
    [
        "registry.example.com", "127.0.0.1:5000", "https://", "http://", "[", "]", "::1",
        "[::1]", ":", "/", "//", "?", "#", "@", "%", "docker.io", "index.docker.io", " ",
        "\x00", "é", "\ud7ff", "v1/", "user:pw@",
    ]
)  # fmt: skip
HOSTS = st.lists(HOST_BITS, max_size=6).map("".join) | st.text(max_size=30)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


AUTH_VALUES = (
    st.just(b64(f"ci:{SECRET}"))
    | st.text(max_size=12).map(lambda t: b64(t + SECRET))
    | st.text(alphabet="ABCDabcd0123+/=", max_size=16)
    | st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode())
)
ENTRIES = st.fixed_dictionaries(
    {},
    optional={
        "auth": AUTH_VALUES | JSON_VALUES,
        "username": st.just("ci") | JSON_VALUES,
        "password": st.just(SECRET) | JSON_VALUES,
        "email": st.text(max_size=10),
        "identitytoken": st.just(SECRET),
    },
)
DOCUMENTS = st.one_of(
    st.dictionaries(HOSTS, ENTRIES | JSON_VALUES, max_size=4).map(lambda a: {"auths": a}),
    st.dictionaries(st.sampled_from(["auths", "credsStore", "x"]), JSON_VALUES, max_size=3),
    JSON_VALUES,
)


def parse_or_secret_invalid(data: bytes | str) -> dict[str, RegistryCredentials] | None:
    """Parse; a refusal must be SecretInvalid and must not repeat the secret."""
    try:
        return parse_dockerconfigjson(data)
    except PermanentError as error:
        assert error.reason is Reason.SECRET_INVALID
        assert error.message.startswith("registry Secret is invalid: ")
        assert SECRET not in error.message
        assert b64(f"ci:{SECRET}") not in error.message
        return None


@pytest.mark.fuzz
@fuzz
@given(DOCUMENTS)
@example({"auths": {"http://[": {"auth": b64(f"ci:{SECRET}")}}})  # urlsplit: ValueError
@example({"auths": {"0": {"auth": "\x80"}}})  # found by the deep run: b64decode ValueError
def test_fuzz_documents(document: object) -> None:
    parsed = parse_or_secret_invalid(json.dumps(document))
    for host, credentials in (parsed or {}).items():
        assert host == host.strip().lower()
        assert credentials.username and credentials.password
        assert SECRET not in repr(credentials)


@pytest.mark.fuzz
@fuzz
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzz_bytes(data: bytes | str) -> None:
    parse_or_secret_invalid(data)


@pytest.mark.parametrize(
    "data",
    [
        "[" * 100_000 + "]" * 100_000,  # json's recursion: RecursionError
        '{"auths": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001,
        '{"auths": {"http://[": {"auth": "Y2k6eA=="}}}',  # not a URL: ValueError
        '{"auths": {"https://[::1": {"username": "u", "password": "p"}}}',
        '{"auths": {"0": {"auth": "\\u0080"}}}',  # b64decode of non-ASCII: ValueError
    ],
    ids=[
        "nested-arrays",
        "nested-objects",
        "unclosed-ipv6-bracket",
        "unclosed-ipv6-https",
        "auth-not-ascii",
    ],
)
def test_found_by_fuzzing_refused_as_secret_invalid(data: str) -> None:
    assert parse_or_secret_invalid(data) is None
