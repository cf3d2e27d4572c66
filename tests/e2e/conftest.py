"""End-to-end fixtures: the operator as a real process, a GitOps world on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.world import World


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One registry for the session (each test gets its own git repository)."""
    world = World(tmp_path_factory.mktemp("world"))
    world.start()
    yield world
    world.stop()


@pytest.fixture
def fresh_world(world: World, tmp_path: Path) -> World:
    """The session registry with a fresh git repository for this test."""
    return world.fork(tmp_path)


@pytest.fixture(scope="session")
def operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """One operator for the session, watching the namespaces named e2e-*."""
    with OperatorProcess(kube, tmp_path_factory.mktemp("operator"), ["e2e-*"]) as proc:
        yield proc


@pytest.fixture
def e2e_namespace(new_namespace: Callable[[str], str], operator: OperatorProcess) -> str:
    """A namespace the session operator watches (checked to be running, for a clear failure)."""
    assert operator.running(), f"the session operator exited:\n{operator.logs()[-3000:]}"
    return new_namespace("e2e")
