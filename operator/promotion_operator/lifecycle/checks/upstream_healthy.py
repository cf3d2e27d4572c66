"""UpstreamHealthy: the upstream Environment is Healthy right now."""

from __future__ import annotations

from promotion_operator.domain.errors import CheckName, Reason, RetryableError
from promotion_operator.domain.models import HealthStatus
from promotion_operator.lifecycle.checks.base import CheckContext, Outcome, UpstreamCheck


class UpstreamHealthy(UpstreamCheck):
    """Waits while the upstream is Progressing, Degraded or Unknown."""

    name = CheckName.UPSTREAM_HEALTHY
    needs = (CheckName.VERSION_PATTERN,)

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
