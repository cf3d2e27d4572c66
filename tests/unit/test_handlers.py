"""The kopf handlers' mapping of lifecycle answers to kopf's retry model."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from promotion_operator import handlers
from promotion_operator.domain.errors import Reason, RetryableError
from promotion_operator.lifecycle import promotions
from promotion_operator.lifecycle.config import OperatorConfig


def test_a_failed_status_write_is_retried_soon_not_after_kopfs_60_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fault campaign: while kube-apiserver restarted, a status write failed inside
    reconcile and kopf waited its default 60 s before looking again."""

    def reconcile(*_args: Any, **_kwargs: Any) -> float | None:
        raise RetryableError(
            Reason.KUBERNETES_API_ERROR, "cannot patch promotions/p status: API server unreachable"
        )

    monkeypatch.setattr(promotions, "reconcile", reconcile)
    monkeypatch.setattr(handlers, "_ports", lambda _config: None)
    config = OperatorConfig(backoff_initial=2.0)

    handler: Any = handlers.promotion_changed  # kopf types it as needing every kwarg
    with pytest.raises(kopf.TemporaryError) as caught:
        handler(
            body=kopf.Body({"metadata": {}}),
            retry=0,
            memo=kopf.Memo(config=config),
            namespace="ns",
            name="p",
        )

    assert caught.value.delay == 2.0
    assert "API server unreachable" in str(caught.value)
