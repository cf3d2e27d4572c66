"""End-to-end fixtures: the operator as a real process, a GitOps world on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from promotion_sandbox.world import World
from support.kube import Kube
from support.operator import OperatorProcess


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
    from promotion_sandbox.gitserver import init_bare_repo
    from promotion_sandbox.world import gitops_files

    mine = World.__new__(World)
    mine.workdir = tmp_path
    mine.registry = world.registry
    mine.repo = tmp_path / "git" / "tvhub-gitops.git"
    init_bare_repo(mine.repo, gitops_files(world.registry.host), message="initial layout")
    return mine


@pytest.fixture(scope="session")
def operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """One operator for the session, watching the namespaces named e2e-*."""
    proc = OperatorProcess(kube, tmp_path_factory.mktemp("operator"), ["e2e-*"]).start()
    yield proc
    proc.stop()


@pytest.fixture
def e2e_namespace(kube: Kube, operator: OperatorProcess) -> Iterator[str]:
    """A namespace the session operator watches."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)
