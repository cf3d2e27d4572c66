"""A Promotion end to end: the operator process, the real API server, git remote and registry."""

from __future__ import annotations

from typing import Any

import pytest

from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.watch import PhaseWatch
from promotion_sandbox.world import (
    NEW_VERSION,
    OLD_VERSION,
    PROD_OVERLAY,
    UNTESTED_VERSION,
    World,
    promotion,
)
from support.operator import events_of, status_of, wait_for, wait_phase

pytestmark = pytest.mark.e2e
PROD = PROD_OVERLAY


def setup_world(kube: Kube, world: World, namespace: str, **options: str) -> None:
    kube.apply(*world.objects(namespace, **options))


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_promotes_a_version_running_in_dev(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns)
    before = fresh_world.remote_head()
    kube.apply(promotion(ns, "to-new", NEW_VERSION, reason="color button fix, checked in dev"))
    status = wait_phase(kube, operator, ns, "to-new", "Succeeded")

    overlay = fresh_world.remote_file(PROD)
    assert overlay.count(f"newTag: {NEW_VERSION}") == 2
    assert OLD_VERSION not in overlay
    assert "# prod: newTag bumped by the promotion operator only" in overlay
    head = fresh_world.remote_head()
    assert status["commit"] == head != before
    assert status["shortCommit"] == head[:7]
    assert status["previousVersion"] == OLD_VERSION
    assert f"+    newTag: {NEW_VERSION}" in str(status["diff"])
    assert f"-    newTag: {OLD_VERSION}" in str(status["diff"])
    assert conditions(status) == {
        "Ready": ("True", "Promoted"),
        "Verified": ("True", "ChecksPassed"),
        "Committed": ("True", "Promoted"),
    }
    checks = status["checks"]
    assert isinstance(checks, list)
    assert {c["name"] for c in checks} == {
        "VersionPattern",
        "TagExists",
        "UpstreamHealthy",
        "UpstreamVersion",
    }
    assert all(c["status"] == "Passed" for c in checks)
    assert len([c for c in checks if c["name"] == "TagExists"]) == 2

    message = fresh_world.remote_messages()[0]
    assert message.startswith(f"promote tvhub-prod: {OLD_VERSION} -> {NEW_VERSION}")
    assert "Reason: color button fix, checked in dev" in message
    uid = kube.get("promotion", "to-new", ns)["metadata"]["uid"]
    assert f"Promotion: {ns}/to-new" in message
    assert f"Promotion-UID: {uid}" in message
    assert "Requested-By: kubectl" in message
    assert len(fresh_world.remote_messages()) == 2

    kube.kubectl("wait", "--for=condition=Ready", "promotion/to-new", "-n", ns, "--timeout=5s")
    expected = {"Pending", "Promoting", "Promoted"}
    assert expected <= set(events_of(kube, ns, "to-new", including=expected))
    table = kube.kubectl("get", "promotions", "-n", ns).stdout
    assert "to-new" in table and "Succeeded" in table and head[:7] in table


def test_environment_status_is_a_dashboard(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns)

    def dev_status() -> dict[str, object] | None:
        status = kube.get("environment", "tvhub-dev", ns).get("status") or {}
        return status if status.get("health") == "Healthy" else None

    status = wait_for("dev status", dev_status, logs=operator.logs)
    assert status["version"] == NEW_VERSION
    assert status["liveVersion"] == NEW_VERSION
    assert status["healthySince"]
    prod = wait_for(
        "prod version",
        lambda: (kube.get("environment", "tvhub-prod", ns).get("status") or {}).get("version"),
        logs=operator.logs,
    )
    assert prod == OLD_VERSION
    table = kube.kubectl("get", "environments", "-n", ns).stdout
    assert NEW_VERSION in table and "Healthy" in table
    # no finalizer: an Environment can be deleted (or pruned) even with the operator gone
    assert not kube.get("environment", "tvhub-dev", ns)["metadata"].get("finalizers")
    kube.kubectl("delete", "environment", "tvhub-dev", "-n", ns, "--timeout=20s")


def test_version_not_running_in_dev_waits_then_fails(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns)
    before = fresh_world.remote_head()
    kube.apply(promotion(ns, "untested", UNTESTED_VERSION, timeout="8s"))
    waiting = wait_phase(kube, operator, ns, "untested", "Verifying")
    assert f"does not run {UNTESTED_VERSION}" in str(waiting["message"])
    failed = wait_phase(kube, operator, ns, "untested", "Failed", timeout=60)
    assert conditions(failed)["Ready"] == ("False", "UpstreamVersionMismatch")
    assert "timed out after 8s" in str(failed["message"])
    assert fresh_world.remote_head() == before
    assert "Verifying" in events_of(kube, ns, "untested", including={"Verifying"})


def test_soak_waits_then_proceeds(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns, soak="5s")
    with PhaseWatch(kube, ns) as watch:
        kube.apply(promotion(ns, "soaked", NEW_VERSION))
        waiting = wait_phase(kube, operator, ns, "soaked", "Verifying")
        assert "soak" in str(waiting["message"])
        done = wait_phase(kube, operator, ns, "soaked", "Succeeded")
        watch.wait("soaked", {"Succeeded"}, timeout=30)  # the watch has seen the last write
    # every step is visible on the resource, in order
    assert watch.phases("soaked") == ["Pending", "Verifying", "Promoting", "Succeeded"]
    soak = [c for c in done["checks"] if c["name"] == "Soak"]
    assert soak and soak[0]["status"] == "Passed"


def test_dry_run_computes_the_diff_and_pushes_nothing(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns)
    before = fresh_world.remote_head()
    kube.apply(promotion(ns, "dry", NEW_VERSION, dryRun=True))
    status = wait_phase(kube, operator, ns, "dry", "Succeeded")
    assert f"+    newTag: {NEW_VERSION}" in str(status["diff"])
    assert "commit" not in status
    assert conditions(status)["Ready"] == ("True", "DryRunSucceeded")
    assert fresh_world.remote_head() == before


def test_already_at_version_is_success_without_commit(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns, dev_version=OLD_VERSION)
    before = fresh_world.remote_head()
    kube.apply(promotion(ns, "same", OLD_VERSION))
    status = wait_phase(kube, operator, ns, "same", "Succeeded")
    assert conditions(status)["Ready"] == ("True", "AlreadyAtVersion")
    assert "commit" not in status
    assert fresh_world.remote_head() == before


def test_newest_wins(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns)
    kube.apply(promotion(ns, "older", UNTESTED_VERSION, timeout="10m"))
    wait_phase(kube, operator, ns, "older", "Verifying")
    kube.apply(promotion(ns, "newer", NEW_VERSION))
    wait_phase(kube, operator, ns, "newer", "Succeeded")
    older = wait_phase(kube, operator, ns, "older", "Superseded", timeout=30)
    assert "newer" in str(older["message"])
    # dev now runs the older request's version: it must still never land
    kube.apply(fresh_world.dev_application(ns, UNTESTED_VERSION))
    assert UNTESTED_VERSION not in fresh_world.remote_file(PROD)
    assert len(fresh_world.remote_messages()) == 2


def test_a_dry_run_never_supersedes_a_real_request(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns)
    kube.apply(promotion(ns, "real", UNTESTED_VERSION, timeout="10m"))
    wait_phase(kube, operator, ns, "real", "Verifying")
    kube.apply(promotion(ns, "look", NEW_VERSION, dryRun=True))
    wait_phase(kube, operator, ns, "look", "Succeeded")
    # dev starts running the real request's version: it proceeds, nothing superseded it
    kube.apply(fresh_world.dev_application(ns, UNTESTED_VERSION))
    done = wait_phase(kube, operator, ns, "real", "Succeeded")
    assert done["commit"] == fresh_world.remote_head()
    assert fresh_world.remote_file(PROD).count(f"newTag: {UNTESTED_VERSION}") == 2


def test_long_lived_promotion_promotes_each_generation(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns)
    kube.apply(promotion(ns, "prod", NEW_VERSION))
    first = wait_phase(kube, operator, ns, "prod", "Succeeded")
    kube.apply(fresh_world.dev_application(ns, UNTESTED_VERSION))
    kube.apply(promotion(ns, "prod", UNTESTED_VERSION))
    second = dict(
        wait_for(
            "generation 2 to succeed",
            lambda: (
                (s := status_of(kube, ns, "prod")).get("observedGeneration") == 2
                and s.get("phase") == "Succeeded"
                and s
            ),
            logs=operator.logs,
        )
    )
    assert second["commit"] != first["commit"]
    assert second["previousVersion"] == NEW_VERSION
    assert fresh_world.remote_file(PROD).count(f"newTag: {UNTESTED_VERSION}") == 2
    messages = fresh_world.remote_messages()
    assert "Promotion-Generation: 2" in messages[0]
    assert "Promotion-Generation: 1" in messages[1]
    assert len(messages) == 3


def test_a_commit_made_behind_the_operators_back_is_the_previous_version(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    # The operator's clone is known current after its own push and is not fetched again
    # before the next promotion's edit: the rejected push must re-read the overlay, and
    # the commit message and status must name what the branch really held.
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns)
    kube.apply(promotion(ns, "first", NEW_VERSION))
    wait_phase(kube, operator, ns, "first", "Succeeded")
    text = fresh_world.remote_file(PROD).replace(f"newTag: {NEW_VERSION}", "newTag: hotfix-1")
    fresh_world.commit_file(PROD, text, message="hotfix by hand")
    kube.apply(fresh_world.dev_application(ns, UNTESTED_VERSION))
    kube.apply(promotion(ns, "second", UNTESTED_VERSION))
    second = wait_phase(kube, operator, ns, "second", "Succeeded")
    assert second["previousVersion"] == "hotfix-1"
    newest = fresh_world.remote_messages()[0]
    assert f"hotfix-1 -> {UNTESTED_VERSION}" in newest.splitlines()[0]
    assert "hotfix by hand" in fresh_world.remote_messages()[1]
    removed = [line for line in second["diff"].splitlines() if line.startswith("-")]
    assert any("newTag: hotfix-1" in line for line in removed)


def test_reapply_and_delete_change_nothing_in_git(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    setup_world(kube, fresh_world, ns)
    kube.apply(promotion(ns, "once", NEW_VERSION, reason="first"))
    wait_phase(kube, operator, ns, "once", "Succeeded")
    head = fresh_world.remote_head()
    # same spec again, then a metadata-only change: neither is a new request
    kube.apply(promotion(ns, "once", NEW_VERSION, reason="first"))
    kube.kubectl("annotate", "promotion/once", "-n", ns, "note=touched")
    kube.kubectl("delete", "promotion/once", "-n", ns)
    # a later request is a barrier: once it is handled, the events before it were too
    kube.apply(promotion(ns, "probe", NEW_VERSION, dryRun=True))
    wait_phase(kube, operator, ns, "probe", "Succeeded")
    assert fresh_world.remote_head() == head
    assert len(fresh_world.remote_messages()) == 2
