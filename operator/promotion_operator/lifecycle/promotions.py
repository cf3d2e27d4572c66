"""A Promotion's lifecycle: Pending -> Verifying -> Promoting -> Succeeded | Failed | Superseded.

`reconcile` is idempotent: it reads the object, does the next step(s) for the current
generation and writes status. It returns how long to wait before the next look, or None
when this generation is finished. The remote branch is the proof of a push: before
committing, a commit carrying this Promotion's UID and generation is looked for, so a crash
at any point never yields a second commit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from promotion_operator.domain.errors import (
    ConditionType,
    PermanentError,
    PromotionError,
    Reason,
    RetryableError,
)
from promotion_operator.domain.images import pinned_version
from promotion_operator.domain.models import Check, Phase, PromotionStatus, dump
from promotion_operator.domain.overlay import read_image_tags, set_image_tags, unified_diff
from promotion_operator.domain.planning import (
    Trailer,
    awaits_deployment,
    commit_message,
    history_to_prune,
    identity_trailers,
    is_finished,
)
from promotion_operator.domain.times import parse_time, precise_timestamp
from promotion_operator.gitops import Reader
from promotion_operator.k8s import NotFoundError, Object
from promotion_operator.lifecycle.checks import CheckContext, verify
from promotion_operator.lifecycle.checks.rollback_guard import push_guard
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.deployment import (
    POLL_SECONDS as DEPLOYMENT_POLL,
)
from promotion_operator.lifecycle.deployment import (
    await_deployment,
    expect_deployment,
)
from promotion_operator.lifecycle.newest import newer_promotion
from promotion_operator.lifecycle.notices import notice_of
from promotion_operator.lifecycle.objects import Environment, Promotion, load_environment
from promotion_operator.lifecycle.ports import Ports, Repository, open_repository
from promotion_operator.lifecycle.status import StatusWriter
from promotion_operator.metrics import STAGE_SECONDS, set_in_flight

log = logging.getLogger(__name__)

# Fault injection for the crash-safety tests: the process exits at the named point.
CRASH_AT_ENV = "PROMOTION_OPERATOR_CRASH_AT"


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_AT_ENV) == name:
        log.warning("crash point %s reached: exiting as asked by %s", name, CRASH_AT_ENV)
        os._exit(75)


def _start_generation(writer: StatusWriter, moment: dt.datetime) -> None:
    promotion = writer.promotion
    writer.status = PromotionStatus(
        phase=Phase.PENDING,
        observed_generation=promotion.generation,
        started_at=precise_timestamp(moment),
        requested_by=promotion.requested_by(),
        message=f"promotion of {promotion.spec.environment} to {promotion.spec.version} accepted",
    )
    writer.condition(
        ConditionType.READY, status=False, reason=Reason.PENDING, message="waiting to be verified"
    )
    writer.write(event_reason=Reason.PENDING)


_CLOCK_SKEW = dt.timedelta(minutes=1)


class _NewerPromotionError(Exception):
    """A newer Promotion appeared between our commit and its push: abandon the push."""

    def __init__(self, newer: str) -> None:
        super().__init__(newer)
        self.newer = newer


@dataclass
class OverlayEditor:
    """Edits the environment's overlay in the synced clone; remembers the last diff.

    Called again after a rejected push, on the fresh tree, so `diff` always describes what
    was committed last.
    """

    env: Environment
    version: str
    guard: Callable[[str], None] | None = None  # may refuse the text about to change
    diff: str = ""
    ran: bool = False
    previous: str | None = None  # the version the overlay pinned before the last edit

    def __call__(self, read: Reader) -> Mapping[str, str] | None:
        """Return {path: new text}, or None when the overlay already holds the version."""
        path = self.env.overlay_file
        old = read(path)
        if self.guard is not None:
            self.guard(old)
        self.previous, self.ran = _version_of(old, self.env), True
        edit = set_image_tags(
            old,
            dict.fromkeys(self.env.spec.image_names(), self.version),
            add_missing=self.env.spec.overlay.add_missing_images,
        )
        self.diff = unified_diff(path, old, edit.text) if edit.changed else ""
        return {path: edit.text} if edit.changed else None


def _version_of(overlay: str, env: Environment) -> str | None:
    """The version an overlay pins for the Environment's images (None when they differ)."""
    return pinned_version(read_image_tags(overlay, env.spec.image_names()))


def _since(promotion: Promotion) -> dt.datetime | None:
    """Where the search for this Promotion's commit may start: an hour before the object
    was created (the server's clock, which status cannot forge; the hour absorbs skew)."""
    if not promotion.created_at:
        return None
    return parse_time(promotion.created_at) - dt.timedelta(hours=1)


def promote(
    config: OperatorConfig,
    ports: Ports,
    promotion: Promotion,
    env: Environment,
    writer: StatusWriter,
    *,
    audit: Sequence[tuple[Trailer, str]] = (),
    checked: str | None = None,
    vouched: bool = False,
) -> None:
    """Edit, commit and push under the repository lock; set the final status. `audit` is
    what the checks recorded for the commit's trailers; `checked` the commit the rollback
    guard decided on, and `vouched` whether that decision skipped the upstream checks
    (the edit decides again on any other commit: `push_guard`)."""
    repo = open_repository(config, ports, env)
    version = promotion.spec.version
    # A dry run's diff must be against the remote as it is: it fetches, and reads the
    # tree under the lock. A promotion takes the lock only in its batch push: the lookup
    # below needs only this operator's own pushes, which a known-current clone holds (a
    # new leader's first look fetches), and reads them without the lock. The previous
    # version for the commit message is read by the edit itself, on the tree it edits.
    with repo.lock() if promotion.spec.dry_run else contextlib.nullcontext():
        if promotion.spec.dry_run:
            repo.sync()
        found = repo.find_commit(
            identity_trailers(promotion.uid, promotion.generation),
            since=_since(promotion),
            refresh=False,
        )
        if found is not None:
            # pushed before a crash or a lost status write: the remote is the proof
            _recover(ports, repo, env, writer, promotion, found)
            return
        rollback_rule = push_guard(repo, promotion, env, checked=checked, vouched=vouched)

        def guard(text: str) -> None:
            try:
                rollback_rule(text)
            except PromotionError:
                # a newer Promotion of this Environment (in this very batch, say) wins
                # over the verdict on this one: it is Superseded, not refused
                if (newer := newer_promotion(ports, promotion)) is not None:
                    raise _NewerPromotionError(newer) from None
                raise

        editor = OverlayEditor(env, version, guard)
        if promotion.spec.dry_run:
            editor(repo.read_file)
            writer.status.previous_version = editor.previous
            writer.status.diff = editor.diff or None
            writer.condition(
                ConditionType.COMMITTED,
                status=False,
                reason=Reason.DRY_RUN,
                message="dry run: nothing pushed",
            )
            writer.finish(
                Phase.SUCCEEDED, Reason.DRY_RUN, f"dry run: {env.name} would move to {version}"
            )
            return

        def message() -> str:
            # built after each edit, from the text it edited: a push rejected on a moved
            # branch is re-edited on the new head, and its message follows
            return commit_message(
                namespace=promotion.namespace,
                name=promotion.name,
                uid=promotion.uid,
                generation=promotion.generation,
                environment=env.name,
                old=editor.previous,
                new=version,
                reason=promotion.spec.reason,
                requested_by=writer.status.requested_by or promotion.requested_by(),
                audit=audit,
            )

        def before_push() -> None:
            _crash_point("after-commit")
            # checked again before every push attempt: a retry after a rejected push must
            # never land an older version over a newer request
            newer = newer_promotion(ports, promotion)
            if newer is not None:
                raise _NewerPromotionError(newer)

    # outside the lock: the edit joins the branch's next batch push (one push for a burst)
    try:
        pushed = repo.commit_and_push(editor, message, before_push=before_push, batch=True)
    except _NewerPromotionError as superseded:
        _supersede(writer, superseded.newer)
        return
    _crash_point("after-push")
    if editor.ran:
        writer.status.previous_version = editor.previous
    if not pushed.changed or pushed.commit is None:
        writer.status.diff = None
        writer.condition(
            ConditionType.COMMITTED,
            status=False,
            reason=Reason.ALREADY_AT_VERSION,
            message=f"overlay already at {version}",
        )
        expect_deployment(ports, env, writer, version)
        writer.finish(
            Phase.SUCCEEDED, Reason.ALREADY_AT_VERSION, f"{env.name} already at {version}"
        )
        return
    _succeed_with_commit(ports, env, writer, promotion, pushed.commit, editor.diff)


def _recover(
    ports: Ports,
    repo: Repository,
    env: Environment,
    writer: StatusWriter,
    promotion: Promotion,
    commit: str,
) -> None:
    """Status from a commit found on the remote: its parent gives the previous version."""
    path = env.overlay_file
    before = repo.file_at(f"{commit}^", path) or ""
    after = repo.file_at(commit, path) or ""
    if before:
        writer.status.previous_version = _version_of(before, env)
    _succeed_with_commit(ports, env, writer, promotion, commit, unified_diff(path, before, after))


def _succeed_with_commit(
    ports: Ports,
    env: Environment,
    writer: StatusWriter,
    promotion: Promotion,
    commit: str,
    diff: str,
) -> None:
    writer.status.commit = commit
    writer.status.short_commit = commit[:7]
    writer.status.diff = diff or None
    writer.condition(
        ConditionType.COMMITTED,
        status=True,
        reason=Reason.PROMOTED,
        message=f"pushed {commit[:12]}",
    )
    expect_deployment(ports, env, writer, promotion.spec.version)
    writer.finish(
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        f"{promotion.spec.environment} promoted to {promotion.spec.version} in {commit[:12]}",
    )


def _supersede(writer: StatusWriter, newer: str) -> None:
    writer.condition(
        ConditionType.VERIFIED,
        status=writer.phase == Phase.PROMOTING,
        reason=Reason.SUPERSEDED,
        message=f"superseded by {newer}",
    )
    writer.finish(Phase.SUPERSEDED, Reason.SUPERSEDED, f"superseded by the newer Promotion {newer}")


def _fail(writer: StatusWriter, error: PromotionError) -> None:
    if writer.phase != Phase.PROMOTING:  # past Promoting, the checks did pass
        writer.condition(
            ConditionType.VERIFIED, status=False, reason=error.reason, message=error.message
        )
    writer.finish(Phase.FAILED, error.reason, error.message, warning=True)


def backoff(config: OperatorConfig, attempt: int) -> float:
    """Exponential backoff for not-yet-true checks, capped."""
    return float(min(config.backoff_max, config.backoff_initial * (2 ** min(attempt, 16))))


def reconcile(
    config: OperatorConfig,
    ports: Ports,
    obj: Object,
    *,
    attempt: int = 0,
    moment: dt.datetime | None = None,
) -> float | None:
    """Advance the Promotion's current generation; return seconds to wait, or None when done."""
    moment = moment or dt.datetime.now(dt.UTC)
    try:
        promotion = Promotion.parse(obj)
    except ValueError as error:
        log.error("cannot parse Promotion: %s", error)
        return None
    if is_finished(obj):
        return None
    writer = StatusWriter(ports.cluster, promotion, moment)
    delay = _round(config, ports, promotion, writer, attempt, moment)
    ended = writer.phase is not None and writer.phase.finished
    changed = not promotion.current or promotion.status.phase != writer.phase
    if ended and changed and not promotion.spec.dry_run:
        ports.notifier.submit(notice_of(promotion, writer.status))  # queued, never waited on
    if delay is None and awaits_deployment(dump(writer.status)):
        delay = DEPLOYMENT_POLL  # pushed: next, watch the Environment run it
    elif delay is None and writer.phase is not None and writer.phase.finished:
        prune_history(config, ports, promotion.namespace, promotion.spec.environment)
    set_in_flight(promotion.namespace, promotion.name, active=delay is not None)
    return delay


def _round(
    config: OperatorConfig,
    ports: Ports,
    promotion: Promotion,
    writer: StatusWriter,
    attempt: int,
    moment: dt.datetime,
) -> float | None:
    try:
        if not promotion.current or not _plausible_start(writer.status.started_at, moment):
            _start_generation(writer, moment)
        elif writer.phase == Phase.SUCCEEDED:  # pushed; Deployed is still Unknown
            return await_deployment(config, ports, promotion, writer, moment)
        return _advance(config, ports, promotion, writer, attempt, moment)
    except NotFoundError:
        return None  # deleted while we worked: nothing to report on
    except RetryableError as error:
        try:
            return _wait(config, promotion, writer, error, attempt, moment)
        except PromotionError as final:
            if writer.phase == Phase.PROMOTING and _pushed_after_all(
                config, ports, promotion, writer
            ):
                return None
            _fail(writer, final)
            return None
    except PromotionError as error:
        _fail(writer, error)
        return None


def _pushed_after_all(
    config: OperatorConfig, ports: Ports, promotion: Promotion, writer: StatusWriter
) -> bool:
    """At the deadline of an unclear push, look for the commit once more before failing:
    a push whose answer was lost may well have landed."""
    try:
        env = load_environment(ports.cluster, promotion.namespace, promotion.spec.environment)
        return _recover_if_pushed(config, ports, promotion, env, writer)
    except (PromotionError, NotFoundError):
        return False


def prune_history(config: OperatorConfig, ports: Ports, namespace: str, environment: str) -> int:
    """Delete the Environment's finished Promotions beyond the newest `keep_finished`.

    Opt-in (`--keep-finished`); objects a GitOps tool manages are never deleted (the tool
    would only re-create them). Best effort: a failure is logged and retried at the next
    finish. Returns how many were deleted.
    """
    if config.keep_finished <= 0:
        return 0
    deleted = 0
    try:
        objects = ports.cluster.list_promotions(namespace, environment)
        for obj in history_to_prune(objects, config.keep_finished):
            meta = obj["metadata"]
            ports.cluster.delete_promotion(namespace, meta["name"], meta["uid"])
            deleted += 1
    except (PromotionError, NotFoundError) as error:
        log.warning("pruning the history of Environment %s/%s: %s", namespace, environment, error)
    return deleted


def _advance(
    config: OperatorConfig,
    ports: Ports,
    promotion: Promotion,
    writer: StatusWriter,
    attempt: int,
    moment: dt.datetime,
) -> float | None:
    env = load_environment(ports.cluster, promotion.namespace, promotion.spec.environment)
    if writer.phase == Phase.PROMOTING and _recover_if_pushed(
        config, ports, promotion, env, writer
    ):
        return None  # pushed before a crash or a lost status write: the remote is the proof
    newer = newer_promotion(ports, promotion)
    if newer is not None:
        _supersede(writer, newer)
        return None
    # A push happens only in a round whose checks passed, whatever status says: a status
    # written by anyone else ("Promoting", say) is never proof that they did.
    records: list[Check] = []
    writer.status.checks = records  # filled as the checks run: a failing one shows too
    ctx = CheckContext(config, ports, promotion, env, moment)
    with STAGE_SECONDS.labels("verify").time():
        verification = verify(ctx, records)
    writer.status.approved_by = [v for k, v in ctx.audit if k == Trailer.APPROVED_BY] or None
    if verification.waiting is not None:
        if writer.phase == Phase.PROMOTING:
            writer.status.phase = Phase.VERIFYING  # true no longer: back to waiting
        return _wait(
            config,
            promotion,
            writer,
            verification.waiting,
            attempt,
            moment,
            retry_after=verification.retry_after,
        )
    if writer.phase != Phase.PROMOTING:
        writer.condition(
            ConditionType.VERIFIED,
            status=True,
            reason=Reason.CHECKS_PASSED,
            message="every check passed",
        )
        writer.status.phase = Phase.PROMOTING
        writer.status.message = (
            f"promoting {promotion.spec.environment} to {promotion.spec.version}"
        )
        writer.condition(
            ConditionType.READY,
            status=False,
            reason=Reason.PROMOTING,
            message=writer.status.message,
        )
        writer.write(event_reason=Reason.PROMOTING)
    with STAGE_SECONDS.labels("git").time():
        promote(
            config,
            ports,
            promotion,
            env,
            writer,
            audit=ctx.audit,
            checked=ctx.rollback_checked,
            vouched=ctx.vouch is not None,
        )
    return None


def _recover_if_pushed(
    config: OperatorConfig,
    ports: Ports,
    promotion: Promotion,
    env: Environment,
    writer: StatusWriter,
) -> bool:
    """Finish from the remote when it already holds this generation's commit."""
    repo = open_repository(config, ports, env)
    with repo.lock():
        repo.sync()
        found = repo.find_commit(
            identity_trailers(promotion.uid, promotion.generation),
            since=_since(promotion),
            refresh=False,
        )
        if found is None:
            return False
        _recover(ports, repo, env, writer, promotion, found)
    return True


def _plausible_start(started_at: str | None, moment: dt.datetime) -> bool:
    """Whether status.startedAt can be ours: a time, not in the future. Anything else was
    written by someone else (a future one would disable the timeout and win newest-wins),
    and the generation starts afresh from now."""
    if not started_at:
        return False
    try:
        return parse_time(started_at) <= moment + _CLOCK_SKEW
    except ValueError:
        return False


def _deadline(promotion: Promotion, writer: StatusWriter, moment: dt.datetime) -> dt.datetime:
    started = parse_time(writer.status.started_at) if writer.status.started_at else moment
    return started + promotion.spec.timeout_delta()


def _wait(
    config: OperatorConfig,
    promotion: Promotion,
    writer: StatusWriter,
    waiting: RetryableError,
    attempt: int,
    moment: dt.datetime,
    *,
    retry_after: float | None = None,
) -> float:
    """Record what is not true yet and return the delay; past the timeout, raise.

    The final failure keeps the reason of what was awaited (TagMissing, Soaking, ...):
    that, not the fact of a timeout, is what the user has to fix.
    """
    deadline = _deadline(promotion, writer, moment)
    if moment >= deadline:
        raise PermanentError(
            waiting.reason,
            f"timed out after {promotion.spec.timeout}: {waiting.message}",
        )
    promoting = writer.phase == Phase.PROMOTING
    before = writer.status.message
    if promoting:
        writer.status.message = f"retrying: {waiting.message}"
        writer.condition(
            ConditionType.READY, status=False, reason=waiting.reason, message=waiting.message
        )
        # one Warning per new problem, not one per retry round
        changed = before != writer.status.message
        writer.write(event_reason=waiting.reason if changed else None, warning=changed)
    else:
        first = writer.phase != Phase.VERIFYING
        writer.status.phase = Phase.VERIFYING
        writer.status.message = f"waiting: {waiting.message}"
        writer.condition(
            ConditionType.VERIFIED, status=False, reason=waiting.reason, message=waiting.message
        )
        writer.condition(
            ConditionType.READY,
            status=False,
            reason=Reason.VERIFYING,
            message=writer.status.message,
        )
        writer.write(event_reason=Reason.VERIFYING if first else None)
    until_deadline = (deadline - moment).total_seconds()
    delay = backoff(config, attempt)
    if retry_after is not None:
        delay = min(delay, max(retry_after, 1.0))
    return max(1.0, min(delay, until_deadline + 0.5))
