"""RollbackGuard: a Promotion never moves an Environment back unless it says so.

A re-created Promotion of an old version (Argo CD re-syncing a pruned file from
`promotions/`, a restore from backup, a copy-paste) is a new request; without this check it
would move production back. With `spec.rollback: true` the move is allowed, and a version
an earlier promotion of this Environment pushed needs no upstream proof again: dev has
usually moved on, and that promotion is the proof (the upstream checks then do not apply).

The rule is decided twice: here, in the checks, on the remote head as this process last
left it (no fetch when it knows it), and again by `push_guard` on the commit the push
builds on when that is another one (someone pushed in between, a retry after a rejected
push). The push is fast-forward only, so the second answer is about exactly what the
remote held: no window in which a newer version can slip under an older one.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

from promotion_operator.domain.errors import CheckName, PermanentError, Reason, RetryableError
from promotion_operator.domain.images import pinned_version
from promotion_operator.domain.overlay import read_image_tags
from promotion_operator.domain.rollback import Rollback, rollback_of
from promotion_operator.lifecycle.checks.base import EARLY, Check, CheckContext, Outcome
from promotion_operator.lifecycle.objects import Environment, Promotion
from promotion_operator.lifecycle.ports import Repository, open_repository


class RollbackGuard(Check):
    """Refuses a version older than the Environment's with WouldRollBack, unless allowed.

    Reads the overlay and the promotions that moved it to or from this version at one
    commit: one `git log` over the whole history, never a Python walk. That commit is the
    remote head this process last fetched or pushed when it knows it is current (no round
    trip), else a lockless fetch; a refusal is final, so it is always decided on a fetch.
    Records an outcome only when the version is older (a forward promotion shows nothing).
    """

    name = CheckName.ROLLBACK_GUARD
    needs = (CheckName.VERSION_PATTERN,)

    def prepare(self, ctx: CheckContext) -> None:
        """Start the lockless fetch, so it overlaps the registry's answers (a WAN's round
        trips each). When this process knows the remote head, the check decides on that
        and the fetch (one per clone at a time) is only a head start for the push."""
        repo = open_repository(ctx.config, ctx.ports, ctx.env)
        known = repo.known_head()
        if known is None:
            ctx.prepared[self.name] = (repo, EARLY.submit(repo.snapshot))
            return
        ctx.prepared[self.name] = (repo, _Known(known))
        # not waited for: a head start for the push, should someone have pushed since
        repo.prefetch(EARLY.submit)

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Failed for an unasked rollback; passed (and maybe vouched) for an asked one."""
        early = self.early(ctx)
        repo = early[0] if early else open_repository(ctx.config, ctx.ports, ctx.env)
        read = early[1] if early else None
        if read is not None:
            head, fetched = _collect(repo, read), not isinstance(read, _Known)
        elif known := repo.known_head():
            head, fetched = known, False
        else:
            head, fetched = _fetch(repo), True
        current, found = decide(repo, head, ctx.env, ctx.version)
        if found is not None and not ctx.promotion.spec.rollback and not fetched:
            head = _fetch(repo)  # refuse only on the remote as it is now
            current, found = decide(repo, head, ctx.env, ctx.version)
        ctx.rollback_checked = head
        if found is None:
            return []
        if not ctx.promotion.spec.rollback:
            return [Outcome.failed(ctx.version, refusal(ctx.env, ctx.version, current, found))]
        env = ctx.env.name
        vouch = found.vouch
        if vouch is None:
            return [
                Outcome.passed(
                    ctx.version,
                    f"rollback to {ctx.version}, which no promotion of {env} pushed before: "
                    "the normal checks apply",
                )
            ]
        ctx.vouch = vouch
        return [
            Outcome.passed(
                ctx.version,
                f"rollback to {ctx.version}, vouched for by commit {vouch.sha[:12]} "
                f"({vouch.when}) of Promotion {vouch.promotion}, requested by "
                f"{vouch.requested_by}: the upstream checks do not apply",
            )
        ]


class _Known(Future[str]):
    """A remote head this process knows without a fetch (`Repository.known_head`)."""

    def __init__(self, head: str) -> None:
        super().__init__()
        self.set_result(head)


def _collect(repo: Repository, read: Future[str]) -> str:
    try:
        return read.result()
    except RetryableError:
        return _fetch(repo)


def _fetch(repo: Repository) -> str:
    try:
        return repo.snapshot()
    except RetryableError:
        # the status refresh may be fetching into the same ref this instant (git refuses
        # a second ref lock); one more try costs a fetch, a retry round ~2 s
        return repo.snapshot()


def _version(text: str | None, env: Environment) -> str | None:
    return pinned_version(read_image_tags(text, env.spec.image_names())) if text else None


def decide(
    repo: Repository, commit: str, env: Environment, version: str
) -> tuple[str | None, Rollback | None]:
    """The version the overlay pins at `commit`, and why moving to `version` is a rollback
    there (None when it is not)."""
    path = env.overlay_file
    current = _version(repo.read_many(commit, [path]).get(path), env)
    return current, rollback_of(version, current, repo.promotions_of(commit, path, version))


def refusal(env: Environment, version: str, current: str | None, found: Rollback) -> PermanentError:
    """The WouldRollBack error: what the Environment runs, why, and how to go on."""
    return PermanentError(
        Reason.WOULD_ROLL_BACK,
        f"{env.name} runs {current or 'another version'} and {found.why}: moving "
        f"to {version} would roll it back. Set spec.rollback: true to "
        "roll back on purpose; nothing was pushed",
    )


def push_guard(
    repo: Repository,
    promotion: Promotion,
    env: Environment,
    *,
    checked: str | None,
    vouched: bool,
) -> Callable[[str], None]:
    """The rollback rule once more, for the overlay text the edit is about to change.

    Called under the repository lock with the worktree at the commit the push builds on
    (in a batch, the remote head its commits go on: none before this one in the batch
    touches this overlay, `GitRepository._plan`); nothing to do when that is the commit
    RollbackGuard decided on (`checked`). Otherwise
    the branch moved since the checks: an unasked rollback fails WouldRollBack (nothing
    is pushed), and a rollback whose upstream checks were skipped on the proof of an
    earlier promotion (`vouched`) needs that proof at this commit too, or the round
    ends waiting and the next one verifies again.
    """
    version = promotion.spec.version

    def check(text: str) -> None:
        head = repo.current_head()
        if head == checked:
            return
        current = _version(text, env)
        if current == version:
            return  # already there: nothing will be pushed (AlreadyAtVersion)
        history = repo.promotions_of(head, env.overlay_file, version)
        found = rollback_of(version, current, history)
        if found is not None and not promotion.spec.rollback:
            raise refusal(env, version, current, found)
        if vouched and (found is None or found.vouch is None):
            raise RetryableError(
                Reason.GIT_PUSH_REJECTED,
                f"branch {env.spec.git.branch} moved since the checks: the rollback to "
                f"{version} is verified again",
            )

    return check
