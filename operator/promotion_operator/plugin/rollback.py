"""`kubectl promote rollback ENV [--to VERSION] --reason ...`: the promote flow with
`spec.rollback: true`, to the previous successfully promoted version by default."""

from __future__ import annotations

import click

from promotion_operator.plugin import flow, gitops
from promotion_operator.plugin.kube import KubeError
from promotion_operator.plugin.promote import request_options
from promotion_operator.plugin.session import PluginError, Session, kube_options, with_session
from promotion_operator.plugin.views import rollback_target


@click.command("rollback")
@click.argument("environment")
@click.option("--to", "version", default=None, help="The version (default: the previous one).")
@request_options("Write the rollback Promotion into this git checkout's promotions/ folder.")
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
