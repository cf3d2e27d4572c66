"""RegistryClient against the real registry: anonymous, Basic, Bearer token, TLS, outages."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from promotion_operator.domain.errors import PermanentError, PromotionError, Reason, RetryableError
from promotion_operator.domain.images import RegistryCredentials, parse_dockerconfigjson
from promotion_operator.registry import RegistryClient
from promotion_sandbox.procs import free_port
from promotion_sandbox.registry import LocalRegistry

pytestmark = pytest.mark.integration


def _assert_no_secret(error: PromotionError | RegistryClient, creds: RegistryCredentials) -> None:
    basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    texts = [str(error), repr(error)]
    if isinstance(error, PromotionError):
        texts += [error.message, *map(str, error.args)]
    for text in texts:
        assert creds.password not in text
        assert basic not in text
        assert "eyJ" not in text  # the start of every JWT


def _client(registry: LocalRegistry, creds: RegistryCredentials | None = None) -> RegistryClient:
    return RegistryClient({registry.host: creds} if creds else None, insecure=True, timeout=5)


# -- anonymous ---------------------------------------------------------------------------


def test_existing_tag_returns_the_pushed_digest(anonymous_registry: LocalRegistry) -> None:
    digest = anonymous_registry.push_image("team/tvhub-frontend", "v20250819-f3b8541")
    image = f"{anonymous_registry.host}/team/tvhub-frontend"
    assert _client(anonymous_registry).check_tag(image, "v20250819-f3b8541") == digest
    assert digest.startswith("sha256:")


def test_each_tag_has_its_own_digest(anonymous_registry: LocalRegistry) -> None:
    one = anonymous_registry.push_image("team/app", "v1")
    two = anonymous_registry.push_image("team/app", "v2")
    assert one != two
    assert _client(anonymous_registry).check_tag(f"{anonymous_registry.host}/team/app", "v2") == two


def test_missing_tag_is_retryable_tag_missing(anonymous_registry: LocalRegistry) -> None:
    anonymous_registry.push_image("team/app", "v1")
    image = f"{anonymous_registry.host}/team/app"
    with pytest.raises(RetryableError) as caught:
        _client(anonymous_registry).check_tag(image, "v20990101-0000000")
    assert caught.value.reason is Reason.TAG_MISSING
    assert caught.value.retryable
    assert caught.value.message == (
        f"tag v20990101-0000000 of {image} not found in registry {anonymous_registry.host}"
    )


def test_missing_repository_is_tag_missing(anonymous_registry: LocalRegistry) -> None:
    with pytest.raises(RetryableError) as caught:
        _client(anonymous_registry).check_tag(f"{anonymous_registry.host}/team/nothing", "v1")
    assert caught.value.reason is Reason.TAG_MISSING


def test_credentials_are_harmless_on_an_anonymous_registry(
    anonymous_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    digest = anonymous_registry.push_image("team/app", "v1")
    client = _client(anonymous_registry, robot)
    assert client.check_tag(f"{anonymous_registry.host}/team/app", "v1") == digest


def test_registry_server_error_is_retryable(tmp_path: Path) -> None:
    with LocalRegistry(tmp_path) as registry:
        registry.push_image("team/app", "v1")
        registry.break_tag("team/app", "v1")
        with pytest.raises(RetryableError) as caught:
            _client(registry).check_tag(f"{registry.host}/team/app", "v1")
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert "HTTP 500" in caught.value.message


# -- Basic auth (htpasswd) ---------------------------------------------------------------


def test_basic_auth_with_the_right_credentials(
    htpasswd_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    digest = htpasswd_registry.push_image(
        "team/app", "v1", username=robot.username, password=robot.password
    )
    client = _client(htpasswd_registry, robot)
    image = f"{htpasswd_registry.host}/team/app"
    assert not client.settled(image)
    assert client.check_tag(image, "v1") == digest
    assert client.settled(image)  # took the credentials: the next round asks all at once
    assert client.check_tag(image, "v1") == digest  # Basic remembered for the host


def test_basic_auth_with_credentials_from_a_dockerconfigjson(
    htpasswd_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    digest = htpasswd_registry.push_image(
        "team/app", "v1", username=robot.username, password=robot.password
    )
    secret = json.dumps(
        {
            "auths": {
                f"http://{htpasswd_registry.host}/v1/": {
                    "auth": base64.b64encode(f"{robot.username}:{robot.password}".encode()).decode()
                }
            }
        }
    )
    client = RegistryClient(parse_dockerconfigjson(secret), insecure=True, timeout=5)
    assert client.check_tag(f"{htpasswd_registry.host}/team/app", "v1") == digest


def test_basic_auth_then_missing_tag_is_tag_missing(
    htpasswd_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    with pytest.raises(RetryableError) as caught:
        _client(htpasswd_registry, robot).check_tag(f"{htpasswd_registry.host}/team/app", "v404")
    assert caught.value.reason is Reason.TAG_MISSING


def test_basic_auth_with_a_wrong_password_is_refused(
    htpasswd_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    wrong = RegistryCredentials(robot.username, robot.password + "-wrong")
    client = _client(htpasswd_registry, wrong)
    with pytest.raises(PermanentError) as caught:
        client.check_tag(f"{htpasswd_registry.host}/team/app", "v1")
    assert not client.settled(f"{htpasswd_registry.host}/team/app")  # refused: one at a time
    error = caught.value
    assert error.reason is Reason.REGISTRY_AUTH_FAILED
    assert not error.retryable
    assert "refused the credentials" in error.message
    assert f'"auths" entry for "{htpasswd_registry.host}"' in error.message
    assert ".dockerconfigjson" in error.message
    _assert_no_secret(error, wrong)
    _assert_no_secret(error, robot)


def test_basic_auth_without_credentials_says_they_are_missing(
    htpasswd_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    with pytest.raises(PermanentError) as caught:
        _client(htpasswd_registry).check_tag(f"{htpasswd_registry.host}/team/app", "v1")
    error = caught.value
    assert error.reason is Reason.REGISTRY_AUTH_FAILED
    assert f"no credentials were given for {htpasswd_registry.host}" in error.message
    assert "add an" in error.message
    _assert_no_secret(error, robot)


def test_credentials_for_another_host_count_as_missing(
    htpasswd_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    client = RegistryClient({"registry.example.com": robot}, insecure=True, timeout=5)
    with pytest.raises(PermanentError, match="no credentials were given") as caught:
        client.check_tag(f"{htpasswd_registry.host}/team/app", "v1")
    _assert_no_secret(caught.value, robot)
    _assert_no_secret(client, robot)


# -- Bearer tokens -----------------------------------------------------------------------


def test_token_auth_with_the_right_credentials_and_cached_token(
    token_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    digest = token_registry.push_image(
        "team/app", "v1", username=robot.username, password=robot.password
    )
    client = _client(token_registry, robot)
    image = f"{token_registry.host}/team/app"
    before = token_registry.token_requests
    assert client.check_tag(image, "v1") == digest
    assert client.check_tag(image, "v1") == digest
    assert token_registry.token_requests == before + 1  # one token for (host, scope)


def test_token_is_fetched_again_after_it_expires(
    token_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    token_registry.push_image("team/app", "v1", username=robot.username, password=robot.password)
    client = _client(token_registry, robot)
    now = [1000.0]
    client._clock = lambda: now[0]
    image = f"{token_registry.host}/team/app"
    before = token_registry.token_requests
    client.check_tag(image, "v1")
    now[0] += 10_000  # far past expires_in
    client.check_tag(image, "v1")
    assert token_registry.token_requests == before + 2


def test_token_per_repository_scope(
    token_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    for repository in ("team/frontend", "team/backend"):
        token_registry.push_image(
            repository, "v1", username=robot.username, password=robot.password
        )
    client = _client(token_registry, robot)
    before = token_registry.token_requests
    for repository in ("team/frontend", "team/backend", "team/frontend"):
        client.check_tag(f"{token_registry.host}/{repository}", "v1")
    assert token_registry.token_requests == before + 2


def test_token_auth_then_missing_tag_is_tag_missing(
    token_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    with pytest.raises(RetryableError) as caught:
        _client(token_registry, robot).check_tag(f"{token_registry.host}/team/app", "v404")
    assert caught.value.reason is Reason.TAG_MISSING


def test_token_auth_with_wrong_credentials_is_refused(
    token_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    wrong = RegistryCredentials(robot.username, "not-" + robot.password)
    with pytest.raises(PermanentError) as caught:
        _client(token_registry, wrong).check_tag(f"{token_registry.host}/team/app", "v1")
    error = caught.value
    assert error.reason is Reason.REGISTRY_AUTH_FAILED
    assert "token server" in error.message
    assert "refused the credentials" in error.message
    _assert_no_secret(error, wrong)


def test_token_auth_without_credentials_says_they_are_missing(
    token_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    # The token server hands anonymous callers a token that grants nothing; the registry
    # then answers 401 again, as Docker Hub does for a private repository.
    token_registry.push_image("team/app", "v1", username=robot.username, password=robot.password)
    with pytest.raises(PermanentError) as caught:
        _client(token_registry).check_tag(f"{token_registry.host}/team/app", "v1")
    error = caught.value
    assert error.reason is Reason.REGISTRY_AUTH_FAILED
    assert "no credentials were given" in error.message
    _assert_no_secret(error, robot)


# -- TLS ---------------------------------------------------------------------------------


def test_tls_is_verified_unless_insecure(tls_registry: LocalRegistry) -> None:
    tls_registry.push_image("team/app", "v1")
    client = RegistryClient(timeout=5)
    with pytest.raises(PermanentError) as caught:
        client.check_tag(f"{tls_registry.host}/team/app", "v1")
    error = caught.value
    assert error.reason is Reason.REGISTRY_UNAVAILABLE
    assert not error.retryable
    assert "certificate does not verify" in error.message
    assert "insecure: true" in error.message
    assert "local registry" in error.message


def test_tls_with_insecure_skips_verification_without_warnings(
    tls_registry: LocalRegistry,
) -> None:
    digest = tls_registry.push_image("team/app", "v1")
    client = RegistryClient(insecure=True, timeout=5)
    # filterwarnings=error: an InsecureRequestWarning escaping here would fail the test.
    assert client.check_tag(f"{tls_registry.host}/team/app", "v1") == digest


def test_tls_verifies_against_a_trusted_ca(tls_registry: LocalRegistry) -> None:
    digest = tls_registry.push_image("team/app", "v1")
    assert tls_registry.ca_cert is not None
    client = RegistryClient(ca_bundle=tls_registry.ca_cert, timeout=5)
    assert client.check_tag(f"{tls_registry.host}/team/app", "v1") == digest


def test_bearer_flow_over_verified_tls(
    tls_token_registry: LocalRegistry, robot: RegistryCredentials
) -> None:
    registry = tls_token_registry
    digest = registry.push_image("team/app", "v1", username=robot.username, password=robot.password)
    assert registry.ca_cert is not None
    client = RegistryClient({registry.host: robot}, ca_bundle=registry.ca_cert, timeout=5)
    assert client.check_tag(f"{registry.host}/team/app", "v1") == digest
    wrong = RegistryClient(
        {registry.host: RegistryCredentials(robot.username, "x")},
        ca_bundle=registry.ca_cert,
        timeout=5,
    )
    with pytest.raises(PermanentError) as caught:
        wrong.check_tag(f"{registry.host}/team/app", "v1")
    assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED


def test_plain_http_registry_is_never_used_without_insecure(
    anonymous_registry: LocalRegistry,
) -> None:
    anonymous_registry.push_image("team/app", "v1")
    with pytest.raises(PermanentError) as caught:
        RegistryClient(timeout=5).check_tag(f"{anonymous_registry.host}/team/app", "v1")
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert "does not speak TLS" in caught.value.message
    assert "insecure: true" in caught.value.message


# -- outages -----------------------------------------------------------------------------


@pytest.mark.parametrize("insecure", [False, True])
def test_nothing_listening_is_retryable(insecure: bool) -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(RetryableError) as caught:
        RegistryClient(insecure=insecure, timeout=5).check_tag(f"{host}/team/app", "v1")
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert "connection refused" in caught.value.message
    assert host in caught.value.message


def test_stopped_registry_is_retryable(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path)
    with registry:
        registry.push_image("team/app", "v1")
        client = _client(registry)
        client.check_tag(f"{registry.host}/team/app", "v1")
    with pytest.raises(RetryableError) as caught:
        client.check_tag(f"{registry.host}/team/app", "v1")
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("insecure", [False, True])
def test_a_registry_that_never_answers_times_out_retryably(
    silent_server: str, insecure: bool
) -> None:
    client = RegistryClient(insecure=insecure, timeout=0.3)
    with pytest.raises(RetryableError) as caught:
        client.check_tag(f"{silent_server}/team/app", "v1")
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert "timed out" in caught.value.message
