"""The handlers' mapping of lifecycle answers to the retry model."""

from __future__ import annotations

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
