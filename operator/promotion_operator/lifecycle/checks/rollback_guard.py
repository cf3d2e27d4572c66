"""RollbackGuard: a Promotion never moves an Environment back unless it says so.

A re-created Promotion of an old version (Argo CD re-syncing a pruned file from
`promotions/`, a restore from backup, a copy-paste) is a new request; without this check it
would move production back. With `spec.rollback: true` the move is allowed, and a version
an earlier promotion of this Environment pushed needs no upstream proof again: dev has
usually moved on, and that promotion is the proof (the upstream checks then do not apply).
"""

from __future__ import annotations

from promotion_operator.domain.errors import CheckName, PermanentError, Reason, RetryableError
from promotion_operator.domain.images import pinned_version
from promotion_operator.domain.overlay import read_image_tags
from promotion_operator.domain.rollback import rollback_of
from promotion_operator.lifecycle.checks.base import EARLY, Check, CheckContext, Outcome
from promotion_operator.lifecycle.ports import open_repository


class RollbackGuard(Check):
    """Refuses a version older than the Environment's with WouldRollBack, unless allowed.

    Reads the overlay and the promotions that moved it to or from this version from one
    lockless fetch: one `git log` over the whole history, never a Python walk. Records an
    outcome only when the version is older (a forward promotion shows nothing here).
    """

    name = CheckName.ROLLBACK_GUARD
    needs = (CheckName.VERSION_PATTERN,)

    def prepare(self, ctx: CheckContext) -> None:
        """Start the lockless fetch, so it overlaps the registry's answers (a WAN's round
        trips each)."""
        repo = open_repository(ctx.config, ctx.ports, ctx.env)
        ctx.prepared[self.name] = (repo, EARLY.submit(repo.snapshot))

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Failed for an unasked rollback; passed (and maybe vouched) for an asked one."""
        early = self.early(ctx)
        repo, read = early if early else (open_repository(ctx.config, ctx.ports, ctx.env), None)
        try:
            head = read.result() if read is not None else repo.snapshot()
        except RetryableError:
            # the status refresh may be fetching into the same ref this instant (git
            # refuses a second ref lock); one more try costs a fetch, a retry round ~2 s
            head = repo.snapshot()
        path = ctx.env.overlay_file
        text = repo.read_many(head, [path]).get(path)
        current = (
            pinned_version(read_image_tags(text, ctx.env.spec.image_names())) if text else None
        )
        found = rollback_of(ctx.version, current, repo.promotions_of(head, path, ctx.version))
        if found is None:
            return []
        env = ctx.env.name
        if not ctx.promotion.spec.rollback:
            return [
                Outcome.failed(
                    ctx.version,
                    PermanentError(
                        Reason.WOULD_ROLL_BACK,
                        f"{env} runs {current or 'another version'} and {found.why}: moving "
                        f"to {ctx.version} would roll it back. Set spec.rollback: true to "
                        "roll back on purpose; nothing was pushed",
                    ),
                )
            ]
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
