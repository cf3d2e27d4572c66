"""Verification checks: one small object per file, run in order by `verify`.

To add a check: write a `Check` subclass in its own file (see `soak.py`) and add one
instance to `CHECKS`. Order matters only through `needs`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from promotion_operator.domain.errors import CheckName, PromotionError, Reason, RetryableError
from promotion_operator.domain.models import Check as CheckRecord
from promotion_operator.domain.models import CheckState
from promotion_operator.lifecycle.checks.approval import Approval
from promotion_operator.lifecycle.checks.base import Check, CheckContext, Outcome
from promotion_operator.lifecycle.checks.rollback_guard import RollbackGuard
from promotion_operator.lifecycle.checks.soak import Soak
from promotion_operator.lifecycle.checks.tag_exists import TagExists
from promotion_operator.lifecycle.checks.upstream_healthy import UpstreamHealthy
from promotion_operator.lifecycle.checks.upstream_version import UpstreamVersion
from promotion_operator.lifecycle.checks.version_pattern import VersionPattern
from promotion_operator.lifecycle.checks.window import PromotionWindow

CHECKS: tuple[Check, ...] = (
    VersionPattern(),
    TagExists(),
    RollbackGuard(),
    UpstreamHealthy(),
    UpstreamVersion(),
    Soak(),
    Approval(),
    PromotionWindow(),
)

__all__ = ["CHECKS", "Check", "CheckContext", "Outcome", "Verification", "verify"]


@dataclass(frozen=True)
class Verification:
    """One round of checks: what is not true yet, and when to look again."""

    waiting: RetryableError | None  # the first check that is not true yet
    retry_after: float | None = None


def verify(
    ctx: CheckContext, records: list[CheckRecord], checks: Sequence[Check] = CHECKS
) -> Verification:
    """Run each applicable check once, appending to `records` as they go.

    A check runs only when every check it `needs` passed in this round. The first failed
    outcome raises its PermanentError (its record is already on `records`, so status
    shows it); waiting outcomes are collected and the first one is returned.
    """
    passed: set[CheckName] = set()
    waiting: RetryableError | None = None
    retry_after: float | None = None
    early = [check for check in checks if type(check).prepare is not Check.prepare]
    _prepare(ctx, early, passed)
    try:
        for check in checks:
            if not check.applies(ctx) or not passed.issuperset(check.needs):
                continue
            try:
                outcomes = check.run(ctx)
            except PromotionError as error:
                target = check.target(ctx)
                outcomes = [
                    Outcome.waiting(target, error)
                    if isinstance(error, RetryableError)
                    else Outcome.failed(target, error)
                ]
            records.extend(outcome.record(check.name) for outcome in outcomes)
            for outcome in outcomes:
                if outcome.state == CheckState.FAILED:
                    raise outcome.error()
            pending = [o for o in outcomes if o.state == CheckState.WAITING]
            if not pending:
                passed.add(check.name)
                _prepare(ctx, early, passed)
                continue
            if waiting is None:
                waiting = RetryableError(pending[0].reason or Reason.VERIFYING, pending[0].message)
            delays = [o.retry_after for o in pending if o.retry_after is not None]
            if retry_after is not None:
                delays.append(retry_after)
            retry_after = min(delays, default=None)
    finally:
        for _repo, read in ctx.prepared.values():  # a check that did not run: its read
            read.cancel()  # is not needed (one already under way just finishes)
        ctx.prepared.clear()
    return Verification(waiting, retry_after)


def _prepare(ctx: CheckContext, early: list[Check], passed: set[CheckName]) -> None:
    """Let each check whose needs have now passed start its slow read (once)."""
    for check in list(early):
        if passed.issuperset(check.needs) and check.applies(ctx):
            early.remove(check)
            with contextlib.suppress(PromotionError):  # `run` meets it again, and reports it
                check.prepare(ctx)
