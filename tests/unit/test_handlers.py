"""The handlers' mapping of lifecycle answers to the retry model."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from promotion_operator import handlers
from promotion_operator.domain.errors import Reason, RetryableError
from promotion_operator.lifecycle.config import OperatorConfig
from support.fake_cluster import FakeCluster, FakeRegistry, FakeRepository, fake_ports

PROMOTION = {
    "apiVersion": "promotion.gitops.dev/v1alpha1",
    "kind": "Promotion",
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "uid": "uid-1",
        "generation": 1,
        "creationTimestamp": "2025-08-19T12:00:00Z",
    },
    "spec": {"environment": "prod", "version": "v20250819-f3b8541"},
}


def test_a_failed_status_write_is_retried_soon_not_after_the_error_backoff() -> None:
    """The fault campaign: while kube-apiserver restarted, a status write failed inside
    reconcile and the Promotion waited kopf's default 60 s before it was looked at again."""
    cluster = FakeCluster(
        promotions={("ns", "p"): PROMOTION},
        fail_status_writes_with=RetryableError(
            Reason.KUBERNETES_API_ERROR, "cannot patch promotions/p status: API server unreachable"
        ),
    )
    ports = fake_ports(cluster, FakeRegistry(), FakeRepository())
    work = handlers.promotion_work(OperatorConfig(backoff_initial=2.0), ports)

    delay = work(PROMOTION, 0)

    assert delay == 2.0
    assert cluster.status_writes == 0


def test_the_environment_index_wakes_the_refresh_for_new_and_changed_environments_only() -> None:
    wake, changed = asyncio.Event(), dict[Any, Any]()
    index: Any = handlers.environment_index
    memo = kopf.Memo(environment_wake=wake, environment_changed=changed)

    def body(generation: int, observed: int | None) -> kopf.Body:
        status = {} if observed is None else {"observedGeneration": observed}
        raw: Any = {"metadata": {"name": "prod", "generation": generation}, "status": status}
        return kopf.Body(raw)

    # described by its status: indexed, nothing to do at once (no write, no wake)
    assert asyncio.run(index("ns", "prod", body(3, 3), memo)) == {("ns", "prod"): dict(body(3, 3))}
    assert not wake.is_set() and not changed
    # a new Environment (no status yet) and a changed spec (a new generation): refreshed now
    for generation, observed in ((1, None), (4, 3)):
        wake.clear()
        changed.clear()
        asyncio.run(index("ns", "prod", body(generation, observed), memo))
        assert wake.is_set()
        assert changed[("ns", "prod")]["metadata"]["generation"] == generation
