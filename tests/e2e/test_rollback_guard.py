"""The rollback guard on the real operator, API server, registry and git remote.

A Promotion of an old version re-created after prod moved on (Argo CD re-syncing a pruned
file, a restore from backup) is refused with WouldRollBack and pushes nothing; the same
version with `rollback: true` moves prod back, vouched for by the commit that first
promoted it, without asking dev (which has moved on) for proof.
"""

from __future__ import annotations

import pytest

from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.world import (
    NEW_VERSION,
    OLD_VERSION,
    PROD_OVERLAY,
    UNTESTED_VERSION,
    World,
    promotion,
)
from support.operator import events_of, wait_phase

pytestmark = pytest.mark.e2e


def test_a_recreated_old_promotion_is_refused_and_rollback_true_moves_back(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    kube.apply(*fresh_world.objects(ns))
    kube.apply(promotion(ns, "to-new", NEW_VERSION, reason="tested in dev"))
    first = wait_phase(kube, operator, ns, "to-new", "Succeeded")
    # dev moves on to the next version and prod follows it
    kube.apply(fresh_world.dev_application(ns, UNTESTED_VERSION))
    kube.apply(promotion(ns, "to-next", UNTESTED_VERSION, reason="next release"))
    wait_phase(kube, operator, ns, "to-next", "Succeeded")
    head = fresh_world.remote_head()

    # the old Promotion comes back, exactly as it was (a pruned file re-synced)
    kube.kubectl("delete", "promotion", "to-new", "-n", ns)
    kube.apply(promotion(ns, "to-new", NEW_VERSION, reason="tested in dev"))
    refused = wait_phase(kube, operator, ns, "to-new", "Failed")
    ready = next(c for c in refused["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "WouldRollBack"
    assert f"tvhub-prod runs {UNTESTED_VERSION}" in refused["message"]
    assert "spec.rollback: true" in refused["message"]
    assert fresh_world.remote_head() == head  # nothing pushed
    assert "WouldRollBack" in events_of(kube, ns, "to-new", including={"WouldRollBack"})

    # on purpose: dev no longer runs NEW_VERSION, the earlier promotion is the proof
    kube.apply(promotion(ns, "back", NEW_VERSION, rollback=True, reason="next broke checkout"))
    back = wait_phase(kube, operator, ns, "back", "Succeeded")
    assert fresh_world.remote_file(PROD_OVERLAY).count(f"newTag: {NEW_VERSION}") == 2
    assert back["previousVersion"] == UNTESTED_VERSION
    names = [c["name"] for c in back["checks"]]
    assert "RollbackGuard" in names
    assert not {"UpstreamHealthy", "UpstreamVersion"} & set(names)
    guard = next(c for c in back["checks"] if c["name"] == "RollbackGuard")
    assert first["commit"][:12] in guard["message"]
    assert f"Promotion {ns}/to-new" in guard["message"]
    assert fresh_world.remote_messages()[0].startswith(
        f"promote tvhub-prod: {UNTESTED_VERSION} -> {NEW_VERSION}"
    )


def test_a_newer_version_pushed_by_hand_after_the_operator_looked_is_not_rolled_back(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    """The operator knows the branch as its dry run fetched it (prod at the old version);
    then a human pushes a newer version by hand. Promoting the tested version, older than
    the human's, must not move prod back, whichever decision sees the human's commit
    first: the checks (when a status refresh round has fetched it by then), or the edit,
    which decides again on the commit its push builds on (after the optimistic push on
    the old head is refused). The unit tests pin each path on its own."""
    ns = e2e_namespace
    kube.apply(*fresh_world.objects(ns))
    kube.apply(promotion(ns, "look", NEW_VERSION, dryRun=True, reason="what would change"))
    wait_phase(kube, operator, ns, "look", "Succeeded")
    text = fresh_world.remote_file(PROD_OVERLAY)
    by_hand = text.replace(f"newTag: {OLD_VERSION}", f"newTag: {UNTESTED_VERSION}")
    assert by_hand != text
    head = fresh_world.commit_file(PROD_OVERLAY, by_hand, "hotfix straight to prod")

    kube.apply(promotion(ns, "to-new", NEW_VERSION, reason="tested in dev"))
    refused = wait_phase(kube, operator, ns, "to-new", "Failed")

    ready = next(c for c in refused["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "WouldRollBack"
    assert f"tvhub-prod runs {UNTESTED_VERSION}" in refused["message"]
    assert fresh_world.remote_head() == head  # nothing pushed over the human's commit
