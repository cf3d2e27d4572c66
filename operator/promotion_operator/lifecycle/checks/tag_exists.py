"""TagExists: every image of the Environment has the version's tag in its registry."""

from __future__ import annotations

from promotion_operator.domain.errors import CheckName, PermanentError, RetryableError
from promotion_operator.lifecycle.checks.base import Check, CheckContext, Outcome


class TagExists(Check):
    """One outcome per image: the digest when found, waiting while CI may still push."""

    name = CheckName.TAG_EXISTS
    needs = (CheckName.VERSION_PATTERN,)

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Ask the registry for each image's tag."""
        outcomes: list[Outcome] = []
        for image in ctx.env.spec.image_names():
            target = f"{image}:{ctx.version}"
            try:
                outcomes.append(Outcome.passed(target, ctx.registry.check_tag(image, ctx.version)))
            except RetryableError as error:
                outcomes.append(Outcome.waiting(target, error))
            except PermanentError as error:
                outcomes.append(Outcome.failed(target, error))
                break  # refused credentials or a bad name: the other images would say the same
        return outcomes
