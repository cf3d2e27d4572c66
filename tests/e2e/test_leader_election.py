"""Two replicas: only the Lease holder reconciles; a standby finishes what a dead leader began."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.world import NEW_VERSION, World, promotion
from support.operator import status_of, wait_for

pytestmark = pytest.mark.e2e
LEASE = "promotion-operator"


def _replica(kube: Kube, tmp_path: Path, namespace: str, name: str, **env: str) -> OperatorProcess:
    return OperatorProcess(
        kube,
        tmp_path / name,
        [namespace],
        env=env,
        extra_args=(
            "--leader-elect",
            f"--leader-election-namespace={namespace}",
            f"--leader-election-id={LEASE}",
        ),
    )


def _holder(kube: Kube, namespace: str) -> str:
    result = kube.kubectl(
        "get", "lease", LEASE, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}", check=False
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def _pid_of(holder: str) -> int:
    return int(holder.rsplit("-", 1)[1])


def test_a_leader_dying_mid_promotion_leaves_one_commit_and_every_promotion_finished(
    kube: Kube, fresh_world: World, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    kube.apply(*fresh_world.objects(ns))
    # the first replica leads and dies between its commit and its push
    first = _replica(kube, tmp_path, ns, "a", PROMOTION_OPERATOR_CRASH_AT="after-commit").start()
    holder = wait_for("the first replica to lead", lambda: _holder(kube, ns), logs=first.logs)
    assert first.proc is not None and _pid_of(holder) == first.proc.pid
    second = _replica(kube, tmp_path, ns, "b").start()
    try:
        kube.apply(promotion(ns, "mid-push", NEW_VERSION))
        assert first.wait_exit(timeout=90) == 75, first.logs()[-3000:]
        # a second request arrives while nobody leads
        kube.apply(promotion(ns, "while-leaderless", NEW_VERSION, dryRun=True))
        status = wait_for(
            "the standby to take over and finish",
            lambda: (s := status_of(kube, ns, "mid-push")).get("phase") == "Succeeded" and s,
            timeout=90,
            logs=second.logs,
        )
        other = wait_for(
            "the standby to finish the request made while no one led",
            lambda: (
                (s := status_of(kube, ns, "while-leaderless")).get("phase") == "Succeeded" and s
            ),
            timeout=60,
            logs=second.logs,
        )
        assert second.proc is not None
        assert _pid_of(_holder(kube, ns)) == second.proc.pid
    finally:
        second.stop()
        first.stop()
    uid = kube.get("promotion", "mid-push", ns)["metadata"]["uid"]
    carrying = [m for m in fresh_world.remote_messages() if f"Promotion-UID: {uid}" in m]
    assert len(carrying) == 1, carrying
    assert status["commit"] == fresh_world.remote_head()
    assert other["conditions"][0]["reason"] == "DryRunSucceeded"
    assert "leading Lease" in second.logs()


def test_a_standby_does_not_reconcile_and_takes_over_after_a_sigkill(
    kube: Kube, fresh_world: World, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    kube.apply(*fresh_world.objects(ns))
    first = _replica(kube, tmp_path, ns, "a").start()
    wait_for("the first replica to lead", lambda: _holder(kube, ns), logs=first.logs)
    second = _replica(kube, tmp_path, ns, "b").start()
    try:
        kube.apply(promotion(ns, "before", NEW_VERSION))
        wait_for(
            "the leader to promote",
            lambda: status_of(kube, ns, "before").get("phase") == "Succeeded",
            logs=first.logs,
        )
        assert "leading Lease" not in second.logs()  # it stood by the whole time
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        kube.apply(promotion(ns, "after", NEW_VERSION, dryRun=True))
        wait_for(
            "the standby to take over",
            lambda: status_of(kube, ns, "after").get("phase") == "Succeeded",
            timeout=60,
            logs=second.logs,
        )
        assert "leading Lease" in second.logs()
    finally:
        second.stop()
        first.stop()
    messages = fresh_world.remote_messages()
    assert sum("Promotion-UID" in m for m in messages) == 1
