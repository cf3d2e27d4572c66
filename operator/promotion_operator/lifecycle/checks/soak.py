"""Soak: the upstream has run this version healthily for at least `spec.soak`."""

from __future__ import annotations

from promotion_operator.domain.errors import CheckName, Reason, RetryableError
from promotion_operator.domain.models import parse_duration
from promotion_operator.lifecycle.checks.base import CheckContext, Outcome, UpstreamCheck
from promotion_operator.lifecycle.observe import healthy_for


class Soak(UpstreamCheck):
    """Waits out the soak, telling the lifecycle when to look again."""

    name = CheckName.SOAK
    needs = (CheckName.UPSTREAM_VERSION,)

    def applies(self, ctx: CheckContext) -> bool:
        """Only when the Environment asks for a soak (and not for a vouched rollback)."""
        return super().applies(ctx) and bool(ctx.env.spec.soak)

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Passed once the healthy run of this version is as long as the soak."""
        name = self.target(ctx)
        soak = ctx.env.spec.soak or "0s"
        needed = parse_duration(soak)
        upstream = ctx.upstream
        ran = healthy_for(upstream.env, upstream.observation, ctx.moment, ctx.config.status_key)
        if ran >= needed:
            return [Outcome.passed(name, f"healthy for {int(ran.total_seconds())}s")]
        soaking = RetryableError(
            Reason.SOAKING,
            f"upstream {name} has run {ctx.version} healthily for {int(ran.total_seconds())}s "
            f"of the {soak} soak",
        )
        return [Outcome.waiting(name, soaking, retry_after=(needed - ran).total_seconds())]
