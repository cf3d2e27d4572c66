"""UpstreamVersion: the upstream runs exactly this version for every image we pin."""

from __future__ import annotations

from promotion_operator.domain.errors import CheckName, Reason, RetryableError
from promotion_operator.lifecycle.checks.base import CheckContext, Outcome, UpstreamCheck


class UpstreamVersion(UpstreamCheck):
    """Waits while the upstream runs another tag of any of our images."""

    name = CheckName.UPSTREAM_VERSION
    needs = (CheckName.UPSTREAM_HEALTHY,)

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Passed when every image runs the version upstream."""
        name = self.target(ctx)
        observation = ctx.upstream.observation
        if observation.runs(ctx.version):
            return [Outcome.passed(f"{name}:{ctx.version}")]
        running = ", ".join(f"{image}:{tag or '?'}" for image, tag in observation.images.items())
        return [
            Outcome.waiting(
                name,
                RetryableError(
                    Reason.UPSTREAM_VERSION_MISMATCH,
                    f"upstream {name} does not run {ctx.version} for every image (runs {running})",
                ),
            )
        ]
