"""Approval: enough people other than the requester approved this generation (four eyes)."""

from __future__ import annotations

from promotion_operator.domain.approvals import tally_approvals
from promotion_operator.domain.errors import CheckName, Reason, RetryableError
from promotion_operator.domain.planning import Trailer
from promotion_operator.lifecycle.checks.base import Check, CheckContext, Outcome


class Approval(Check):
    """Waits until `approval.required` allowed people approved; records them for the commit."""

    name = CheckName.APPROVAL
    needs = (CheckName.VERSION_PATTERN,)

    def applies(self, ctx: CheckContext) -> bool:
        """Only for an Environment that asks for approvals."""
        return ctx.env.spec.approval is not None

    def target(self, ctx: CheckContext) -> str:
        """The generation being approved."""
        return f"{ctx.promotion.name} generation {ctx.promotion.generation}"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """List this Promotion's approvals (a field selector, never the whole namespace)
        and count those that may count."""
        policy = ctx.env.spec.approval
        assert policy is not None  # noqa: S101 - applies() said so
        promotion = ctx.promotion
        requesters = {promotion.requested_by()}
        if promotion.current and promotion.status.requested_by:
            requesters.add(promotion.status.requested_by)
        tally = tally_approvals(
            policy,
            ctx.ports.cluster.list_approvals(promotion.namespace, promotion.name),
            requesters=requesters,
            generation=promotion.generation,
            version=ctx.version,
            created_at=promotion.created_at,
        )
        ctx.audit.extend((Trailer.APPROVED_BY, who) for who in tally.counted)
        summary = tally.describe(policy.required)
        if len(tally.counted) >= policy.required:
            return [Outcome.passed(self.target(ctx), summary)]
        awaiting = RetryableError(
            Reason.AWAITING_APPROVAL,
            f"{summary}; an allowed approver other than the requester runs "
            f"`kubectl promote approve {promotion.name} -n {promotion.namespace}` (or creates "
            f"a PromotionApproval of promotion {promotion.name}, generation "
            f"{promotion.generation}, version {ctx.version})",
        )
        dry_run = ctx.promotion.spec.dry_run
        return [Outcome.waiting(self.target(ctx), awaiting).for_dry_run(dry_run=dry_run)]
