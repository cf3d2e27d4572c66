"""RegistryClient.list_tags against the real registry: paging, auth, caps, a missing repo."""

from __future__ import annotations

import pytest

from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.images import RegistryCredentials
from promotion_operator.registry import RegistryClient
from promotion_sandbox.registry import LocalRegistry

pytestmark = pytest.mark.integration

TAGS = ["v20250801-aaaaaaa", "v20250802-bbbbbbb", "v20250803-ccccccc", "latest", "v1.2.3"]


def _push_all(
    registry: LocalRegistry, repository: str, creds: RegistryCredentials | None = None
) -> None:
    login = {"username": creds.username, "password": creds.password} if creds else {}
    for tag in TAGS:
        registry.push_image(repository, tag, **login)


def test_every_tag_is_listed_across_pages(
    anonymous_registry: LocalRegistry,
) -> None:
    _push_all(anonymous_registry, "team/paged")
    client = RegistryClient(insecure=True, timeout=5)
    # 5 tags: three pages
    tags, complete = client.list_tags(f"{anonymous_registry.host}/team/paged", page_size=2)
    assert sorted(tags) == sorted(TAGS)
    assert complete


def test_the_tag_cap_stops_reading_and_says_so(
    anonymous_registry: LocalRegistry,
) -> None:
    _push_all(anonymous_registry, "team/capped")
    client = RegistryClient(insecure=True, timeout=5)
    tags, complete = client.list_tags(
        f"{anonymous_registry.host}/team/capped", max_tags=3, page_size=2
    )
    assert len(tags) == 3
    assert set(tags) <= set(TAGS)
    assert not complete


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_tags_are_listed_with_credentials_and_refused_without(
    auth: str,
    htpasswd_registry: LocalRegistry,
    token_registry: LocalRegistry,
    robot: RegistryCredentials,
) -> None:
    registry = htpasswd_registry if auth == "htpasswd" else token_registry
    _push_all(registry, f"team/listed-{auth}", robot)
    image = f"{registry.host}/team/listed-{auth}"
    client = RegistryClient({registry.host: robot}, insecure=True, timeout=5)
    tags, _ = client.list_tags(image, page_size=2)
    assert sorted(tags) == sorted(TAGS)
    with pytest.raises(PermanentError) as caught:
        RegistryClient(insecure=True, timeout=5).list_tags(image)
    assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED
    assert "no credentials were given" in caught.value.message


def test_a_repository_that_does_not_exist_is_a_clear_error(
    anonymous_registry: LocalRegistry,
) -> None:
    with pytest.raises(PermanentError) as caught:
        RegistryClient(insecure=True, timeout=5).list_tags(
            f"{anonymous_registry.host}/team/never-pushed"
        )
    assert caught.value.reason is Reason.TAG_MISSING
    assert "team/never-pushed" in caught.value.message
