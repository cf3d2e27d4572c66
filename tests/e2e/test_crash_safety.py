"""Killing the operator at the worst moments still yields exactly one commit and a right status."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from promotion_sandbox.world import NEW_VERSION, OLD_VERSION, World, promotion
from support.kube import Kube
from support.operator import OperatorProcess, status_of, wait_for

pytestmark = pytest.mark.e2e
PROD = "k8s/overlays/prod/kustomization.yaml"


@pytest.fixture
def crash_namespace(kube: Kube) -> Iterator[str]:
    """A namespace the session operator does not watch: each test runs its own."""
    name = f"crash-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("point", ["after-commit", "after-push"])
def test_restart_converges_to_one_commit(
    kube: Kube, fresh_world: World, crash_namespace: str, tmp_path: Path, point: str
) -> None:
    ns = crash_namespace
    for obj in fresh_world.objects(ns):
        kube.apply(obj)
    first = OperatorProcess(kube, tmp_path, [ns], PROMOTION_OPERATOR_CRASH_AT=point).start()
    try:
        kube.apply(promotion(ns, "crashy", NEW_VERSION))
        assert first.wait_exit(timeout=90) == 75, first.logs()[-3000:]
    finally:
        first.stop()
    crashed = status_of(kube, ns, "crashy")
    assert crashed["phase"] == "Promoting"  # the crash left status behind the truth
    pushed = len(fresh_world.remote_messages()) == 2
    assert pushed == (point == "after-push")

    second = OperatorProcess(kube, tmp_path, [ns]).start()
    try:
        status = wait_for(
            "the restarted operator to finish",
            lambda: (s := status_of(kube, ns, "crashy")).get("phase") == "Succeeded" and s,
            timeout=60,
            logs=second.logs,
        )
    finally:
        second.stop()
    messages = fresh_world.remote_messages()
    assert len(messages) == 2, messages
    uid = kube.get("promotion", "crashy", ns)["metadata"]["uid"]
    assert f"Promotion-UID: {uid}" in messages[0]
    assert status["commit"] == fresh_world.remote_head()
    assert status["previousVersion"] == OLD_VERSION
    assert f"+    newTag: {NEW_VERSION}" in str(status["diff"])
    assert fresh_world.remote_file(PROD).count(f"newTag: {NEW_VERSION}") == 2
