"""Registry clients live across verification rounds, and a check asks its images at once."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import cast

import pytest

from promotion_operator.domain.errors import PermanentError, Reason, RetryableError
from promotion_operator.domain.images import RegistryCredentials
from promotion_operator.domain.models import CheckState
from promotion_operator.lifecycle.checks.base import CheckContext
from promotion_operator.lifecycle.checks.tag_exists import TagExists
from promotion_operator.lifecycle.ports import RegistryClients

HOST = "registry.example.com"


def test_the_same_credentials_get_the_same_client_so_what_it_learnt_is_kept() -> None:
    clients = RegistryClients()
    first = clients({HOST: RegistryCredentials("ci", "pw")}, insecure=False)
    again = clients({HOST: RegistryCredentials("ci", "pw")}, insecure=False)
    assert again is first


def test_other_credentials_or_insecure_mode_never_share_a_client() -> None:
    clients = RegistryClients()
    base = clients({HOST: RegistryCredentials("ci", "pw")}, insecure=False)
    assert clients({HOST: RegistryCredentials("ci", "other")}, insecure=False) is not base
    assert clients({HOST: RegistryCredentials("other", "pw")}, insecure=False) is not base
    assert clients({HOST: RegistryCredentials("ci", "pw")}, insecure=True) is not base
    assert clients({}, insecure=False) is not base


def test_the_cache_keeps_only_the_newest_clients() -> None:
    clients = RegistryClients(size=2)
    oldest = clients({HOST: RegistryCredentials("a", "pw")}, insecure=False)
    kept = clients({HOST: RegistryCredentials("b", "pw")}, insecure=False)
    assert clients({HOST: RegistryCredentials("b", "pw")}, insecure=False) is kept
    clients({HOST: RegistryCredentials("c", "pw")}, insecure=False)  # evicts "a", the least used
    assert clients({HOST: RegistryCredentials("b", "pw")}, insecure=False) is kept
    assert clients({HOST: RegistryCredentials("a", "pw")}, insecure=False) is not oldest


class _Registry:
    """Answers per image. Every image after the first waits at `barrier` until all of them
    are being asked: it breaks (BrokenBarrierError) if they are asked one by one."""

    def __init__(
        self,
        answers: dict[str, Exception | str],
        barrier: threading.Barrier,
        *,
        settled: bool = False,
    ) -> None:
        self.answers, self.barrier, self.known = answers, barrier, settled
        self.first = next(iter(answers))
        self.asked: list[str] = []

    def settled(self, image: str) -> bool:
        return self.known and image in self.answers

    def check_tag(self, image: str, tag: str) -> str:
        self.asked.append(image)
        if image != self.first or self.known:  # settled: the first waits with the others
            self.barrier.wait()
        answer = self.answers[image]
        if isinstance(answer, Exception):
            raise answer
        return f"sha256:{image}-{tag}"


def _context(answers: dict[str, Exception | str], *, settled: bool = False) -> CheckContext:
    images = list(answers)
    parties = len(images) if settled else max(len(images) - 1, 1)
    return cast(
        "CheckContext",
        SimpleNamespace(
            env=SimpleNamespace(spec=SimpleNamespace(image_names=lambda: images)),
            version="v20250819-f3b8541",
            registry=_Registry(answers, threading.Barrier(parties, timeout=10), settled=settled),
        ),
    )


def test_a_registry_that_took_the_credentials_before_is_asked_everything_at_once() -> None:
    """A kept client that has been answered by this registry sends the first image with
    the others (the barrier breaks unless all of them are asked together)."""
    images = [f"{HOST}/team/c{index}" for index in range(3)]
    answers: dict[str, Exception | str] = dict.fromkeys(images, "found")
    outcomes = TagExists().run(_context(answers, settled=True))
    assert [o.state for o in outcomes] == [CheckState.PASSED] * 3
    assert [o.target for o in outcomes] == [f"{i}:v20250819-f3b8541" for i in images]


def test_the_images_after_the_first_are_asked_at_once_and_outcomes_keep_the_order() -> None:
    images = [f"{HOST}/team/c{index}" for index in range(5)]
    missing = RetryableError(Reason.TAG_MISSING, "not yet")
    answers: dict[str, Exception | str] = {image: "found" for image in images}
    answers[images[2]] = missing
    outcomes = TagExists().run(_context(answers))
    assert [o.target for o in outcomes] == [f"{i}:v20250819-f3b8541" for i in images]
    states = [o.state for o in outcomes]
    assert states == [CheckState.PASSED] * 2 + [CheckState.WAITING] + [CheckState.PASSED] * 2
    assert outcomes[0].message == f"sha256:{images[0]}-v20250819-f3b8541"


def test_a_permanent_failure_ends_the_outcomes_there() -> None:
    images = [f"{HOST}/team/c{index}" for index in range(3)]
    refused = PermanentError(Reason.REGISTRY_AUTH_FAILED, "credentials refused")
    answers: dict[str, Exception | str] = {images[0]: "found", images[1]: refused}
    answers[images[2]] = "found"
    outcomes = TagExists().run(_context(answers))
    assert [o.state for o in outcomes] == [CheckState.PASSED, CheckState.FAILED]
    assert outcomes[1].message == "credentials refused"


def test_credentials_refused_for_the_first_image_are_not_sent_again() -> None:
    images = [f"{HOST}/team/c{index}" for index in range(4)]
    refused = PermanentError(Reason.REGISTRY_AUTH_FAILED, "credentials refused")
    answers: dict[str, Exception | str] = dict.fromkeys(images, "found")
    answers[images[0]] = refused
    context = _context(answers)
    outcomes = TagExists().run(context)
    assert [o.state for o in outcomes] == [CheckState.FAILED]
    assert cast("_Registry", context.registry).asked == [images[0]]


def test_an_old_client_is_replaced_so_it_relearns_what_the_registry_says() -> None:
    now = [0.0]
    clients = RegistryClients(max_age=600, clock=lambda: now[0])
    credentials = {HOST: RegistryCredentials("ci", "pw")}
    first = clients(credentials, insecure=True)
    now[0] = 599.0
    assert clients(credentials, insecure=True) is first
    now[0] = 600.0
    assert clients(credentials, insecure=True) is not first


@pytest.mark.parametrize("count", [0, 1])
def test_zero_or_one_image_needs_no_threads(count: int) -> None:
    images = [f"{HOST}/team/c{index}" for index in range(count)]
    answers: dict[str, Exception | str] = dict.fromkeys(images, "found")
    context = (
        _context(answers)
        if count
        else cast(
            "CheckContext",
            SimpleNamespace(env=SimpleNamespace(spec=SimpleNamespace(image_names=list))),
        )
    )
    outcomes = TagExists().run(context)
    assert [o.state for o in outcomes] == [CheckState.PASSED] * count
