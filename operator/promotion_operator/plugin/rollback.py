"""`kubectl promote rollback ENV [--to VERSION] --reason ...`: the promote flow with
`spec.rollback: true`, to the previous successfully promoted version by default."""

from __future__ import annotations

import click

from promotion_operator.plugin import flow, gitops
from promotion_operator.plugin.kube import KubeError
from promotion_operator.plugin.promote import TIMEOUT_HELP
from promotion_operator.plugin.session import PluginError, Session, kube_options, with_session
from promotion_operator.plugin.views import rollback_target


@click.command("rollback")
@click.argument("environment")
@click.option("--to", "version", default=None, help="The version (default: the previous one).")
@click.option("--reason", "-r", required=True, help="Why (goes into the commit).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask; needed without a terminal.")
@click.option("--timeout", default=None, help=TIMEOUT_HELP)
@click.option(
    "--gitops",
    "checkout",
    default=None,
    type=click.Path(file_okay=False),
    help="Write the rollback Promotion into this git checkout's promotions/ folder.",
)
@click.option("--push", is_flag=True, help="With --gitops: push the commit.")
@kube_options
@with_session
def command(
    session: Session,
    environment: str,
    version: str | None,
    reason: str,
    *,
    yes: bool,
    timeout: str | None,
    checkout: str | None,
    push: bool,
) -> None:
    """Move ENVIRONMENT back to the version it ran before (or to --to VERSION)."""
    if version is None:
        kube = session.kube
        try:
            env = kube.get("environments", environment)
            promotions = kube.list("promotions", environment=environment)
        except KubeError as error:
            raise PluginError(str(error)) from None
        version = rollback_target(env, promotions)
        if version is None:
            raise PluginError(
                f"no earlier successfully promoted version of {environment} is known: "
                "name one with --to VERSION"
            )
        session.err.print(f"rolling {environment} back to {version}")
    request = flow.Request(environment, version, reason, rollback=True, timeout=timeout)
    if checkout is not None:
        gitops.write_and_commit(session, request, checkout, push=push)
        return
    raise SystemExit(flow.run(session, request, yes=yes))
