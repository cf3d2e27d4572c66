"""PromotionWindow: no freeze, and the moment is inside the promotion windows.

Windows come from the Environment (`spec.windows`, and with `health.argocd.syncWindows`
the sync windows of its Argo CD Application's AppProject) and from the cluster-scoped
PromotionPolicies that cover its namespace; a policy's `freeze` stops every Promotion
there (stop the line). While closed, the Promotion waits with the time the windows open
and is looked at again then.
"""

from __future__ import annotations

import datetime as dt

from pydantic import ValidationError

from promotion_operator.domain.errors import CheckName, Reason, RetryableError
from promotion_operator.domain.models import ArgoCDHealth, PromotionPolicySpec
from promotion_operator.domain.planning import Trailer
from promotion_operator.domain.times import parse_time, timestamp
from promotion_operator.domain.windows import Schedule, WindowState, argocd_sync_windows, evaluate
from promotion_operator.k8s import NotFoundError, Object
from promotion_operator.lifecycle.checks.base import Check, CheckContext, Outcome
from promotion_operator.lifecycle.observe import require_readable


class PromotionWindow(Check):
    """Waits while a policy freezes promotions or a window is closed."""

    name = CheckName.WINDOW
    needs = (CheckName.VERSION_PATTERN,)

    def applies(self, ctx: CheckContext) -> bool:
        """When the Environment has windows (its own or Argo CD's) or a PromotionPolicy
        covers its namespace."""
        return (
            bool(ctx.env.spec.windows)
            or _argocd(ctx) is not None
            or any(_covers(obj, ctx) for obj in ctx.promotion_policies)
        )

    def target(self, ctx: CheckContext) -> str:
        """The Environment the windows guard."""
        return ctx.env.name

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Passed when open (or overridden); waiting until the next opening otherwise."""
        target = self.target(ctx)
        policies: list[tuple[str, PromotionPolicySpec]] = []
        for obj in ctx.promotion_policies:
            if not _covers(obj, ctx):
                continue
            name = str((obj.get("metadata") or {}).get("name", "?"))
            try:
                spec = PromotionPolicySpec.model_validate(obj.get("spec") or {})
            except ValidationError as error:
                # fail closed: a platform team's gate that cannot be read still holds
                invalid = RetryableError(
                    Reason.INVALID_SPEC, f"PromotionPolicy {name} is invalid, fix it: {error}"
                )
                return [Outcome.waiting(target, invalid)]
            policies.append((name, spec))
        frozen = [(name, spec) for name, spec in policies if spec.freeze]
        if frozen:
            name, spec = frozen[0]
            why = f": {spec.message}" if spec.message else ""
            return [
                Outcome.waiting(
                    target,
                    RetryableError(
                        Reason.PROMOTIONS_FROZEN,
                        f"promotions are frozen by PromotionPolicy {name}{why} (the platform "
                        f"team lifts it with `kubectl patch promotionpolicy {name} --type=merge "
                        """-p '{"spec":{"freeze":false}}'`)""",
                    ),
                )
            ]
        override = ctx.promotion.spec.override_window
        mine = [w.schedule_of(f"Environment {ctx.env.name}") for w in ctx.env.spec.windows or ()]
        try:
            mine += _sync_windows(ctx)
        except (ValueError, NotFoundError) as error:
            unreadable = RetryableError(
                Reason.INVALID_SPEC,
                f"cannot read the Argo CD sync windows of {ctx.env.name} "
                f"(health.argocd.syncWindows): {error or 'not found'}",
            )
            return [Outcome.waiting(target, unreadable)]
        theirs = [
            (spec.allow_override, w.schedule_of(f"PromotionPolicy {name}"))
            for name, spec in policies
            for w in spec.windows or ()
        ]
        binding = [] if override else mine
        binding += [s for overridable, s in theirs if not (override and overridable)]
        state = evaluate(binding, ctx.moment)
        if not state.open:
            return [_closed(ctx, target, state).for_dry_run(dry_run=ctx.promotion.spec.dry_run)]
        if override:
            unbound = evaluate(mine + [s for _, s in theirs], ctx.moment)
            if not unbound.open:
                ctx.audit.append((Trailer.WINDOW_OVERRIDE, unbound.blocking))
                overridden = f"overridden (spec.overrideWindow): {unbound.blocking}"
                return [Outcome.passed(target, overridden)]
        return [Outcome.passed(target, "open" if binding else "no windows")]


def _argocd(ctx: CheckContext) -> ArgoCDHealth | None:
    health = ctx.env.spec.health
    argocd = health.argocd if health is not None else None
    return argocd if argocd is not None and argocd.sync_windows else None


def _sync_windows(ctx: CheckContext) -> list[Schedule]:
    """The sync windows of the AppProject of the Environment's Argo CD Application that
    apply to it: a push while they block would not be synced."""
    argocd = _argocd(ctx)
    if argocd is None:
        return []
    require_readable(ctx.config, ctx.env, "health.argocd.namespace", argocd.namespace)
    app = ctx.ports.cluster.get_argocd_application(argocd.namespace, argocd.application)
    spec = app.get("spec") or {}
    project = str(spec.get("project") or "default")
    appproject = ctx.ports.cluster.get_argocd_project(argocd.namespace, project)
    destination = spec.get("destination") or {}
    return argocd_sync_windows(
        project,
        (appproject.get("spec") or {}).get("syncWindows") or [],
        application=argocd.application,
        namespace=str(destination.get("namespace") or ""),
        clusters=(str(destination.get("server") or ""), str(destination.get("name") or "")),
    )


def _covers(policy: Object, ctx: CheckContext) -> bool:
    """Whether a PromotionPolicy covers the Promotion's namespace (no list: every one)."""
    namespaces = (policy.get("spec") or {}).get("namespaces")
    return namespaces is None or ctx.promotion.namespace in namespaces


def _closed(ctx: CheckContext, target: str, state: WindowState) -> Outcome:
    if state.opens_at is not None:
        when = f"opens at {timestamp(state.opens_at)}"
        retry_after: float | None = (state.opens_at - ctx.moment).total_seconds()
        deadline = _deadline(ctx)
        if deadline is not None and state.opens_at > deadline:
            when += f", after this Promotion's timeout ({timestamp(deadline)}): raise spec.timeout"
    else:
        until = state.searched_until
        when = f"does not open before {timestamp(until)}" if until else "never opens again"
        retry_after = (until - ctx.moment).total_seconds() if until else None
    hint = ""
    if state.blocking.startswith("Environment ") and not ctx.promotion.spec.override_window:
        hint = " (spec.overrideWindow: true promotes anyway, with the approvals required)"
    closed = RetryableError(
        Reason.WINDOW_CLOSED, f"promotion window closed by {state.blocking}; {when}{hint}"
    )
    return Outcome.waiting(target, closed, retry_after=retry_after)


def _deadline(ctx: CheckContext) -> dt.datetime | None:
    promotion = ctx.promotion
    if not promotion.current or not promotion.status.started_at:
        return None
    return parse_time(promotion.status.started_at) + promotion.spec.timeout_delta()
