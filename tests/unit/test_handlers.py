"""The handlers' mapping of lifecycle answers to the retry model."""

from __future__ import annotations

from typing import Any

import pytest

from promotion_operator import handlers
from promotion_operator.domain.errors import Reason, RetryableError
from promotion_operator.lifecycle import promotions
from promotion_operator.lifecycle.config import OperatorConfig


def test_a_failed_status_write_is_retried_soon_not_after_the_error_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fault campaign: while kube-apiserver restarted, a status write failed inside
    reconcile and the Promotion waited kopf's default 60 s before it was looked at again."""

    def reconcile(*_args: Any, **_kwargs: Any) -> float | None:
        raise RetryableError(
            Reason.KUBERNETES_API_ERROR, "cannot patch promotions/p status: API server unreachable"
        )

    monkeypatch.setattr(promotions, "reconcile", reconcile)
    config = OperatorConfig(backoff_initial=2.0)

    work = handlers.promotion_work(config, ports=None)  # type: ignore[arg-type]
    delay = work({"metadata": {"namespace": "ns", "name": "p"}}, 0)

    assert delay == 2.0
