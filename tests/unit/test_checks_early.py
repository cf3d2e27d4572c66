"""`verify` starts a check's slow read as soon as its needs passed, before the checks ahead."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from types import SimpleNamespace
from typing import cast

import pytest

from promotion_operator.domain.errors import CheckName, PermanentError, Reason, RetryableError
from promotion_operator.domain.models import Check as CheckRecord
from promotion_operator.domain.models import CheckState
from promotion_operator.lifecycle.checks import verify
from promotion_operator.lifecycle.checks.base import EARLY, Check, CheckContext, Outcome
from promotion_operator.lifecycle.ports import Repository

REPO = cast("Repository", object())


class _Pattern(Check):
    name = CheckName.VERSION_PATTERN

    def __init__(self, *, waiting: bool = False) -> None:
        self.waiting = waiting

    def run(self, ctx: CheckContext) -> list[Outcome]:
        if self.waiting:
            return [Outcome.waiting(ctx.version, RetryableError(Reason.VERIFYING, "not yet"))]
        return [Outcome.passed(ctx.version)]


class _Slow(Check):
    """Passes only if the early read started while this check was still running."""

    name = CheckName.TAG_EXISTS
    needs = (CheckName.VERSION_PATTERN,)

    def __init__(self, started: threading.Event) -> None:
        self.started = started

    def run(self, ctx: CheckContext) -> list[Outcome]:
        overlapped = self.started.wait(timeout=10)
        return [Outcome.passed(ctx.version, "overlapped" if overlapped else "")]


class _Early(Check):
    name = CheckName.ROLLBACK_GUARD
    needs = (CheckName.VERSION_PATTERN,)

    def __init__(self, started: threading.Event) -> None:
        self.started, self.prepared = started, 0

    def prepare(self, ctx: CheckContext) -> None:
        self.prepared += 1

        def read() -> str:
            self.started.set()
            return "head-commit"

        ctx.prepared[self.name] = (REPO, EARLY.submit(read))

    def run(self, ctx: CheckContext) -> list[Outcome]:
        early = self.early(ctx)
        assert early is not None and early[0] is REPO
        read = early[1]
        return [Outcome.passed(ctx.version, read.result() if read else "read inline")]


def _context() -> CheckContext:
    return cast("CheckContext", SimpleNamespace(version="v20250819-f3b8541", prepared={}))


def test_a_prepared_read_overlaps_the_checks_ahead_of_it() -> None:
    started = threading.Event()
    early = _Early(started)
    records: list[CheckRecord] = []
    result = verify(_context(), records, (_Pattern(), _Slow(started), early))
    assert result.waiting is None
    assert [(r.name, r.status, r.message) for r in records] == [
        (CheckName.VERSION_PATTERN, CheckState.PASSED, ""),
        (CheckName.TAG_EXISTS, CheckState.PASSED, "overlapped"),
        (CheckName.ROLLBACK_GUARD, CheckState.PASSED, "head-commit"),
    ]
    assert early.prepared == 1


def test_no_read_starts_while_what_it_needs_has_not_passed() -> None:
    started = threading.Event()
    early = _Early(started)
    records: list[CheckRecord] = []
    result = verify(_context(), records, (_Pattern(waiting=True), early))
    assert result.waiting is not None
    assert early.prepared == 0
    assert not started.is_set()
    assert [r.name for r in records] == [CheckName.VERSION_PATTERN]


def test_a_read_still_queued_when_its_check_runs_is_cancelled_and_done_inline() -> None:
    queued: Future[str] = Future()  # never picked up by a worker: the pool is busy
    ctx = _context()
    ctx.prepared[CheckName.ROLLBACK_GUARD] = (REPO, queued)
    assert _Early(threading.Event()).early(ctx) == (REPO, None)
    assert queued.cancelled()
    assert ctx.prepared == {}


def test_a_round_that_fails_cancels_the_reads_no_check_collected() -> None:
    queued: Future[str] = Future()
    ctx = _context()
    ctx.prepared[CheckName.ROLLBACK_GUARD] = (REPO, queued)
    refused = PermanentError(Reason.INVALID_SPEC, "bad")

    class _Fails(Check):
        name = CheckName.VERSION_PATTERN

        def run(self, ctx: CheckContext) -> list[Outcome]:
            return [Outcome.failed(ctx.version, refused)]

    with pytest.raises(PermanentError):
        verify(ctx, [], (_Fails(),))
    assert queued.cancelled()
    assert ctx.prepared == {}
