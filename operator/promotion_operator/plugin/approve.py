"""`kubectl promote approve PROMOTION [--comment ...]`: one PromotionApproval of the
Promotion's current generation and version, then what the Approval check makes of it.

The approval names no approver: the chart's admission policy stamps the authenticated user
(impersonated with `--as`/`--as-group`, as kubectl), and refuses one that names somebody else.
"""

from __future__ import annotations

import time

import click
from rich.text import Text

from promotion_operator.domain.models import parse_duration
from promotion_operator.plugin.kube import KubeError
from promotion_operator.plugin.render import clean
from promotion_operator.plugin.session import PluginError, Session, kube_options, with_session
from promotion_operator.plugin.views import (
    Object,
    approval_body,
    approval_counted,
    is_current_generation_finished,
    outcome_reason,
)


@click.command("approve")
@click.argument("promotion")
@click.option("--comment", "-c", default=None, help="For humans (≤1024 characters).")
@click.option(
    "--timeout",
    default="90s",
    show_default=True,
    help="How long to wait for the operator's next check round to count it (0s: do not wait).",
)
@kube_options
@with_session
def command(session: Session, promotion: str, comment: str | None, timeout: str) -> None:
    """Approve the current generation of PROMOTION (four eyes: not your own)."""
    try:
        wait = parse_duration(timeout).total_seconds()
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--timeout") from None
    kube = session.kube
    try:
        target = kube.get("promotions", promotion)
    except KubeError as error:
        raise PluginError(str(error)) from None
    refusal = _refusal(target) or _ungated(session, target)
    if refusal:
        raise PluginError(f"promotions/{promotion} {refusal}: there is nothing to approve")
    try:
        made = kube.create_approval(approval_body(target, comment))
    except KubeError as error:
        raise PluginError(str(error)) from None
    spec = made.get("spec") or {}
    approver = (spec.get("approver") or {}).get("username")
    made_name = (made.get("metadata") or {}).get("name")
    session.out.print(
        Text.assemble(
            ("approved ", "green"),
            clean(
                f"{promotion} generation {spec.get('generation')} ({spec.get('version')})"
                + (f" as {approver}" if approver else "")
                + f": promotionapprovals/{made_name}"
            ),
        )
    )
    if not approver:
        session.warn(
            "the API server did not stamp spec.approver (the chart's approvalPolicy is off "
            "in this cluster?): this approval will not count"
        )
        return
    _report(session, promotion, str(approver), wait)


def _refusal(promotion: Object) -> str | None:
    """Why a Promotion cannot be approved (None: it can)."""
    if (promotion.get("spec") or {}).get("dryRun"):
        return "is a dry run (approvals never hold one)"
    if is_current_generation_finished(promotion):
        phase = (promotion.get("status") or {}).get("phase")
        return f"is finished ({phase}: {outcome_reason(promotion)})"
    return None


def _ungated(session: Session, promotion: Object) -> str | None:
    """Why approving makes no sense because the Environment asks for no approvals (None
    when it does, or when it cannot be read: the approval is then made all the same)."""
    environment = str((promotion.get("spec") or {}).get("environment") or "")
    try:
        env = session.kube.get("environments", environment)
    except KubeError:
        return None
    if (env.get("spec") or {}).get("approval") is None:
        return f"is of Environment {environment}, which asks for no approvals (spec.approval)"
    return None


def _report(session: Session, name: str, approver: str, wait: float) -> None:
    """Print the Approval check's message once it reflects this approval (a watch, at most
    `wait` seconds: the operator counts approvals at each check round)."""
    kube = session.kube
    until = time.monotonic() + wait
    try:
        current = kube.get("promotions", name)
        seen = approval_counted(current, approver)
        if seen is None and wait > 0:
            version = str((current.get("metadata") or {}).get("resourceVersion") or "")
            for obj in kube.watch_promotion(name, version, until=until):
                current = obj
                if (seen := approval_counted(obj, approver)) is not None:
                    break
    except KubeError as error:
        raise PluginError(str(error)) from None
    if seen is not None:
        session.out.print(Text.assemble(("Approval: ", "bold"), clean(seen)))
        return
    session.out.print(
        f"the operator has not looked at it yet (it reads approvals at each check round); "
        f"`kubectl promote status` shows it later. Now: "
        f"{(current.get('status') or {}).get('message') or 'no status yet'}"
    )
