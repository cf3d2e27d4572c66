"""Real registries on loopback (distribution's `registry`), one per auth mode per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from promotion_operator.domain.images import RegistryCredentials
from promotion_sandbox.registry import LocalRegistry

USER = "ci-robot"
PASSWORD = "s3cret-Pa55word!"  # checked against every error message and repr
OTHER_USER = "reader"
OTHER_PASSWORD = "an0ther-pa55"
USERS = {USER: PASSWORD, OTHER_USER: OTHER_PASSWORD}


@pytest.fixture(scope="session")
def robot() -> RegistryCredentials:
    """The account that may push and pull on the registries with auth."""
    return RegistryCredentials(USER, PASSWORD)


def _running(registry: LocalRegistry) -> Iterator[LocalRegistry]:
    with registry:
        yield registry


@pytest.fixture(scope="session")
def anonymous_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """Plain HTTP, no auth."""
    yield from _running(LocalRegistry(tmp_path_factory.mktemp("registry-anonymous")))


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """Plain HTTP, Basic auth against a bcrypt htpasswd file."""
    workdir = tmp_path_factory.mktemp("registry-htpasswd")
    yield from _running(LocalRegistry(workdir, auth="htpasswd", users=USERS))


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """Plain HTTP, Bearer tokens from the sandbox token server."""
    workdir = tmp_path_factory.mktemp("registry-token")
    yield from _running(LocalRegistry(workdir, auth="token", users=USERS))


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """HTTPS with a certificate from a throw-away CA, no auth."""
    yield from _running(LocalRegistry(tmp_path_factory.mktemp("registry-tls"), tls=True))


@pytest.fixture(scope="session")
def tls_token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """HTTPS registry and HTTPS token server, Bearer tokens."""
    workdir = tmp_path_factory.mktemp("registry-tls-token")
    yield from _running(LocalRegistry(workdir, auth="token", users=USERS, tls=True))
