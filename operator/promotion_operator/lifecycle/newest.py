"""Newest wins: of the Promotions of one Environment, only the latest request may land."""

from __future__ import annotations

from promotion_operator.domain.planning import supersedes
from promotion_operator.k8s import Object
from promotion_operator.lifecycle.objects import Promotion
from promotion_operator.lifecycle.ports import Ports


def request_time(obj: Object) -> str:
    """When this Promotion's current generation was asked for (for newest-wins ordering)."""
    status = obj.get("status") or {}
    meta = obj["metadata"]
    if status.get("observedGeneration") == meta.get("generation") and status.get("startedAt"):
        return str(status["startedAt"])
    # not picked up yet: it is newer than anything started
    return "9999-12-31T23:59:59.999999Z"


def newer_promotion(ports: Ports, promotion: Promotion) -> str | None:
    """Name of a newer, not failed Promotion for the same Environment, if any.

    Dry runs only look: they neither supersede nor get superseded.
    """
    if promotion.spec.dry_run:
        return None
    mine = (request_time(promotion.raw), promotion.created_at)
    for other in ports.cluster.list_promotions(promotion.namespace, promotion.spec.environment):
        meta = other["metadata"]
        if meta["uid"] == promotion.uid or meta.get("deletionTimestamp"):
            continue
        spec = other.get("spec") or {}
        if spec.get("environment") != promotion.spec.environment or spec.get("dryRun"):
            continue
        phase = (other.get("status") or {}).get("phase")
        theirs = (request_time(other), meta.get("creationTimestamp", ""))
        if supersedes(
            theirs, mine, other_phase=phase, other_name=meta["name"], my_name=promotion.name
        ):
            return str(meta["name"])
    return None
