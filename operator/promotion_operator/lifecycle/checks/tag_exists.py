"""TagExists: every image of the Environment has the version's tag in its registry."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from promotion_operator.domain.errors import CheckName, PermanentError, RetryableError
from promotion_operator.domain.models import CheckState
from promotion_operator.lifecycle.checks.base import Check, CheckContext, Outcome

PARALLEL = 8  # registry requests at once per check (after the first): round trips over a WAN


class TagExists(Check):
    """One outcome per image: the digest when found, waiting while CI may still push."""

    name = CheckName.TAG_EXISTS
    needs = (CheckName.VERSION_PATTERN,)

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Ask the registry for each image's tag: the first alone, then up to PARALLEL at
        once. The first answer teaches the client the registry's auth (a token, Basic), and
        credentials it refuses are sent once, not once per image (account lockouts). When
        every image's registry has taken the client's auth before (a kept client, the
        next round or promotion), all are asked at once: one round trip less."""
        images = ctx.env.spec.image_names()

        def ask(image: str) -> Outcome:
            target = f"{image}:{ctx.version}"
            try:
                return Outcome.passed(target, ctx.registry.check_tag(image, ctx.version))
            except RetryableError as error:
                return Outcome.waiting(target, error)
            except PermanentError as error:
                return Outcome.failed(target, error)

        if not images:
            return []
        settled = len(images) > 1 and all(ctx.registry.settled(image) for image in images)
        answers = [] if settled else [ask(images[0])]
        rest = images[len(answers) :]
        if rest and not (answers and answers[0].state is CheckState.FAILED):
            with ThreadPoolExecutor(min(PARALLEL, len(rest))) as pool:
                answers += pool.map(ask, rest)
        outcomes: list[Outcome] = []
        for outcome in answers:
            outcomes.append(outcome)
            if outcome.state is CheckState.FAILED:
                break  # refused credentials or a bad name: the other images would say the same
        return outcomes
