"""`kubectl promote history ENV`: Promotions joined with the commits that carry their
trailers (when, from -> to, who, why, commit, phase), newest first.

The commits are read from the Environment's branch with the operator's git adapter (a
cached clone under ~/.cache/promotion-operator/plugin); when git cannot be read, the
Promotions alone are shown, with a warning.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from promotion_operator.domain.errors import PromotionError
from promotion_operator.domain.models import EnvironmentSpec
from promotion_operator.domain.planning import Trailer
from promotion_operator.gitops import GitRepository
from promotion_operator.plugin.credentials import git_auth
from promotion_operator.plugin.kube import KubeError
from promotion_operator.plugin.render import history_table
from promotion_operator.plugin.session import PluginError, Session, kube_options, with_session
from promotion_operator.plugin.views import Commit, history_rows, parse_commit

CACHE = Path("~/.cache/promotion-operator/plugin/git")


@click.command("history")
@click.argument("environment")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.option("--limit", default=50, show_default=True, help="Newest entries to show.")
@click.option(
    "--allow-local-git",
    is_flag=True,
    help="Allow file:// and http:// remotes (the operator's flag of the same name).",
)
@kube_options
@with_session
def command(
    session: Session, environment: str, output: str, limit: int, *, allow_local_git: bool
) -> None:
    """Show what was promoted to ENVIRONMENT, when, by whom and why."""
    kube = session.kube
    try:
        env = kube.get("environments", environment)
        spec = EnvironmentSpec.model_validate(env.get("spec") or {})
        promotions = kube.list("promotions", environment=environment)
    except KubeError as error:
        raise PluginError(str(error)) from None
    except ValueError as error:
        raise PluginError(f"Environment {environment} has an invalid spec: {error}") from None
    commits = read_commits(session, spec, limit=limit, allow_local_git=allow_local_git)
    rows = history_rows(environment, promotions, commits)[:limit]
    if output == "json":
        click.echo(json.dumps([row.as_json() for row in rows], indent=2))
        return
    session.out.print(history_table(rows, env=environment))


def read_commits(
    session: Session, spec: EnvironmentSpec, *, limit: int, allow_local_git: bool
) -> list[Commit]:
    """The promotion commits on the Environment's branch, newest first ([] on failure)."""
    try:
        repo = GitRepository(
            spec.git.url,
            spec.git.branch,
            cache_dir=CACHE.expanduser(),
            auth=git_auth(session, spec),
            allow_file=allow_local_git,
        )
        records = repo.log_with_trailer(Trailer.UID, limit=limit * 4)
    except PromotionError as error:
        session.warn(f"git history not read ({error.reason}: {error.message})")
        return []
    found = (parse_commit(r.sha, r.committed_at, r.message) for r in records)
    return [c for c in found if c is not None]
