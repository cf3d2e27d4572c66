"""Killing the operator at the worst moments still yields exactly one commit and a right status."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.world import NEW_VERSION, OLD_VERSION, PROD_OVERLAY, World, promotion
from support.operator import status_of, wait_phase

pytestmark = pytest.mark.e2e


@pytest.fixture
def crash_namespace(new_namespace: Callable[[str], str]) -> str:
    """A namespace the session operator does not watch: each test runs its own."""
    return new_namespace("crash")


@pytest.mark.parametrize("point", ["after-commit", "after-push"])
def test_restart_converges_to_one_commit(
    kube: Kube, fresh_world: World, crash_namespace: str, tmp_path: Path, point: str
) -> None:
    ns = crash_namespace
    kube.apply(*fresh_world.objects(ns))
    crash_at = {"PROMOTION_OPERATOR_CRASH_AT": point}
    with OperatorProcess(kube, tmp_path, [ns], env=crash_at) as first:
        kube.apply(promotion(ns, "crashy", NEW_VERSION))
        assert first.wait_exit(timeout=90) == 75, first.logs()[-3000:]
    crashed = status_of(kube, ns, "crashy")
    assert crashed["phase"] == "Promoting"  # the crash left status behind the truth
    pushed = len(fresh_world.remote_messages()) == 2
    assert pushed == (point == "after-push")

    with OperatorProcess(kube, tmp_path, [ns]) as second:
        status = wait_phase(kube, second, ns, "crashy", "Succeeded")
    messages = fresh_world.remote_messages()
    assert len(messages) == 2, messages
    uid = kube.get("promotion", "crashy", ns)["metadata"]["uid"]
    assert f"Promotion-UID: {uid}" in messages[0]
    assert status["commit"] == fresh_world.remote_head()
    assert status["previousVersion"] == OLD_VERSION
    assert f"+    newTag: {NEW_VERSION}" in str(status["diff"])
    assert fresh_world.remote_file(PROD_OVERLAY).count(f"newTag: {NEW_VERSION}") == 2
