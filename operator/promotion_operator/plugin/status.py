"""`kubectl promote status [-A]`: every Environment, its version in git and live, its
health, the Promotion in flight and its gates (approvals, the next window). Two paged
lists, whatever the number of objects."""

from __future__ import annotations

import datetime as dt
import json

import click

from promotion_operator.plugin.kube import KubeError
from promotion_operator.plugin.render import status_table
from promotion_operator.plugin.session import PluginError, Session, kube_options, with_session
from promotion_operator.plugin.views import status_rows


@click.command("status")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace you may list.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@kube_options
@with_session
def command(session: Session, output: str, *, all_namespaces: bool) -> None:
    """Show every Environment: version in git, live version, health, Promotion in flight,
    and, where it has gates, the approvals pending and the next window."""
    kube = session.kube
    try:
        envs = kube.list("environments", all_namespaces=all_namespaces)
        promotions = kube.list("promotions", all_namespaces=all_namespaces)
    except KubeError as error:
        raise PluginError(str(error)) from None
    rows = status_rows(envs, promotions, now=dt.datetime.now(dt.UTC))
    if output == "json":
        click.echo(json.dumps([row.as_json() for row in rows], indent=2))
        return
    if not rows:
        session.out.print(f"no Environments in namespace {kube.namespace}")
        return
    session.out.print(status_table(rows, namespaces=all_namespaces))
