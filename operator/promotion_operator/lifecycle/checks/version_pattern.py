"""VersionPattern: the version matches the Environment's versionPattern."""

from __future__ import annotations

from promotion_operator.domain.errors import CheckName, PermanentError, Reason
from promotion_operator.domain.patterns import version_matches
from promotion_operator.lifecycle.checks.base import Check, CheckContext, Outcome


class VersionPattern(Check):
    """A version outside the pattern can never be promoted to this Environment."""

    name = CheckName.VERSION_PATTERN

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Passed when the pattern matches the version (RE2: linear time, whatever a tenant
        wrote); failed otherwise."""
        pattern = ctx.env.spec.version_pattern
        if version_matches(pattern, ctx.version):
            return [Outcome.passed(ctx.version)]
        return [
            Outcome.failed(
                ctx.version,
                PermanentError(
                    Reason.VERSION_MISMATCH_PATTERN,
                    f"version {ctx.version!r} does not match Environment {ctx.env.name}'s "
                    f"versionPattern {pattern!r}",
                ),
            )
        ]
