"""`kubectl promote [to] ENV VERSION --reason ...`: dry run, confirm, promote, follow; or,
with `--gitops PATH`, the Promotion manifest written and committed in a git checkout."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from promotion_operator.plugin import flow, gitops
from promotion_operator.plugin.session import Session, kube_options, with_session

TIMEOUT_HELP = "spec.timeout of the Promotion (e.g. 10m; the operator's default is 30m)."

F = TypeVar("F", bound=Callable[..., object])


def request_options(gitops_help: str) -> Callable[[F], F]:
    """The options every command that requests a Promotion takes (promote, rollback):
    --reason, --yes, --timeout, --gitops PATH and --push."""
    options = (
        click.option("--reason", "-r", required=True, help="Why (goes into the commit)."),
        click.option("--yes", "-y", is_flag=True, help="Do not ask; needed without a terminal."),
        click.option("--timeout", default=None, help=TIMEOUT_HELP),
        click.option(
            "--gitops",
            "checkout",
            default=None,
            type=click.Path(file_okay=False),
            help=gitops_help,
        ),
        click.option("--push", is_flag=True, help="With --gitops: push the commit."),
    )

    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


@click.command("to")
@click.argument("environment")
@click.argument("version")
@request_options(
    "Write the Promotion into this git checkout's promotions/ folder and commit it "
    "(Argo CD applies it) instead of creating it."
)
@kube_options
@with_session
def command(
    session: Session,
    environment: str,
    version: str,
    reason: str,
    *,
    yes: bool,
    timeout: str | None,
    checkout: str | None,
    push: bool,
) -> None:
    """Promote ENVIRONMENT to VERSION: show the dry run, ask, then follow it live."""
    request = flow.Request(environment, version, reason, timeout=timeout)
    if checkout is not None:
        gitops.write_and_commit(session, request, checkout, push=push)
        return
    if push:
        raise click.UsageError("--push needs --gitops PATH")
    raise SystemExit(flow.run(session, request, yes=yes))
