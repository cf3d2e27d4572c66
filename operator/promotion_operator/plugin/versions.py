"""`kubectl promote versions ENV [-o json]`: the registry's tags that may be promoted.

The tags of every image of the Environment are listed (OCI tags/list, paged, bounded by
the registry client), kept when they match the Environment's versionPattern, newest
first, and marked with what the cluster knows: running upstream, healthy since, soak
done, current in ENV, promoted before.
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import click

from promotion_operator.domain.errors import PromotionError
from promotion_operator.domain.models import EnvironmentSpec
from promotion_operator.plugin.credentials import registry_credentials
from promotion_operator.plugin.kube import KubeError
from promotion_operator.plugin.render import versions_table
from promotion_operator.plugin.session import PluginError, Session, kube_options, with_session
from promotion_operator.plugin.views import version_rows
from promotion_operator.registry import RegistryClient

MAX_TAGS = 10_000  # per image
LIST_DEADLINE = 30.0  # seconds, per image
PARALLEL = 8


@click.command("versions")
@click.argument("environment")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.option("--limit", default=20, show_default=True, help="Rows to show (0: all).")
@kube_options
@with_session
def command(session: Session, environment: str, output: str, limit: int) -> None:
    """List the versions ENVIRONMENT can be promoted to, newest first."""
    kube = session.kube
    try:
        env = kube.get("environments", environment)
        spec = EnvironmentSpec.model_validate(env.get("spec") or {})
        upstream = kube.get("environments", spec.upstream) if spec.upstream else None
        promotions = kube.list("promotions", environment=environment)
    except KubeError as error:
        raise PluginError(str(error)) from None
    except ValueError as error:
        raise PluginError(f"Environment {environment} has an invalid spec: {error}") from None
    client = RegistryClient(
        registry_credentials(session, spec),
        insecure=bool(spec.registry and spec.registry.insecure),
    )
    images = spec.image_names()

    def tags(image: str) -> tuple[list[str], bool]:
        return client.list_tags(image, max_tags=MAX_TAGS, deadline=LIST_DEADLINE)

    try:
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(images))) as pool:
            listed = dict(zip(images, pool.map(tags, images), strict=True))
    except PromotionError as error:
        raise PluginError(f"{error.reason}: {error.message}") from None
    for image, (_, complete) in listed.items():
        if not complete:
            session.warn(f"{image}: only the first {MAX_TAGS} tags were read")
    now = dt.datetime.now(dt.UTC)
    rows = version_rows(
        env, upstream, {i: found for i, (found, _) in listed.items()}, promotions, now=now
    )
    shown = rows[:limit] if limit > 0 else rows
    if output == "json":
        document = {
            "environment": environment,
            "namespace": kube.namespace,
            "upstream": spec.upstream,
            "versions": [row.as_json() for row in shown],
        }
        click.echo(json.dumps(document, indent=2))
        return
    session.out.print(versions_table(shown, env=environment, now=now))
    if len(shown) < len(rows):
        session.out.print(f"{len(rows) - len(shown)} older versions not shown (--limit 0)")
