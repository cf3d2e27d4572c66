"""UpstreamHealthy: the upstream Environment is Healthy right now."""

from __future__ import annotations

from promotion_operator.domain.errors import CheckName, Reason, RetryableError
from promotion_operator.domain.models import HealthStatus
from promotion_operator.lifecycle.checks.base import Check, CheckContext, Outcome


class UpstreamHealthy(Check):
    """Waits while the upstream is Progressing, Degraded or Unknown."""

    name = CheckName.UPSTREAM_HEALTHY
    needs = (CheckName.VERSION_PATTERN,)

    def applies(self, ctx: CheckContext) -> bool:
        """Only for an Environment with an upstream."""
        return bool(ctx.env.spec.upstream)

    def target(self, ctx: CheckContext) -> str:
        """The upstream's name."""
        return ctx.env.spec.upstream or ""

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Passed when the upstream's combined health is Healthy."""
        name = self.target(ctx)
        observation = ctx.upstream.observation
        if observation.health == HealthStatus.HEALTHY:
            return [Outcome.passed(name)]
        detail = f": {observation.message}" if observation.message else ""
        return [
            Outcome.waiting(
                name,
                RetryableError(
                    Reason.UPSTREAM_NOT_HEALTHY,
                    f"upstream {name} is {observation.health.value}{detail}",
                ),
            )
        ]
