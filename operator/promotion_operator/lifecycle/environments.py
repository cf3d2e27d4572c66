"""Environment status: what git says, what runs, whether it is healthy, since when."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from promotion_operator.domain.conditions import set_condition
from promotion_operator.domain.errors import PromotionError, Reason
from promotion_operator.domain.models import EnvironmentStatus, HealthStatus, dump
from promotion_operator.domain.overlay import read_image_tags
from promotion_operator.health import (
    Observation,
    combine,
    observe_argocd,
    observe_deployments,
    observe_http,
)
from promotion_operator.k8s import Cluster, NotFoundError
from promotion_operator.lifecycle.context import (
    Environment,
    OperatorConfig,
    overlay_file,
    parse_time,
    repository,
    timestamp,
)

log = logging.getLogger(__name__)


def observe(cluster: Cluster, env: Environment, images: Sequence[str] | None = None) -> Observation:
    """Look at the environment through each configured health source and combine them.

    `images` defaults to the environment's own; a downstream check passes its own list.
    """
    sources = env.spec.health
    images = list(images) if images is not None else env.spec.image_names()
    if sources is None:
        return Observation(HealthStatus.UNKNOWN, message="no health source configured")
    observations: list[Observation] = []
    if sources.argocd is not None:
        ref = sources.argocd
        try:
            app = cluster.get_argocd_application(ref.namespace, ref.application)
            observations.append(observe_argocd(app, images, ref.application))
        except NotFoundError:
            observations.append(
                Observation(
                    HealthStatus.UNKNOWN,
                    message=f"Argo CD Application {ref.namespace}/{ref.application} not found",
                )
            )
    if sources.deployments is not None:
        deployments = cluster.list_deployments(
            sources.deployments.namespace, sources.deployments.selector
        )
        observations.append(observe_deployments(deployments, images))
    if sources.http is not None:
        observations.append(observe_http(sources.http, images))
    return combine(observations)


def healthy_since(
    previous: EnvironmentStatus, observation: Observation, moment: dt.datetime
) -> str | None:
    """Keep the start of the current healthy run of the same version; reset otherwise."""
    if observation.health != HealthStatus.HEALTHY or observation.live_version is None:
        return None
    same_run = (
        previous.health == HealthStatus.HEALTHY
        and previous.live_version == observation.live_version
        and previous.healthy_since is not None
    )
    return previous.healthy_since if same_run else timestamp(moment)


def healthy_for(env: Environment, observation: Observation, moment: dt.datetime) -> dt.timedelta:
    """How long the environment has run what it runs now, healthily (zero if just seen)."""
    since = healthy_since(env.status, observation, moment)
    if since is None:
        return dt.timedelta(0)
    return moment - parse_time(since)


def refresh_status(
    config: OperatorConfig, cluster: Cluster, env: Environment, moment: dt.datetime
) -> EnvironmentStatus:
    """Compute and write the Environment's status; never raises for a bad spec."""
    status = env.status.model_copy()
    status.observed_generation = env.generation
    stamp = timestamp(moment)
    git_problem: PromotionError | None = None
    try:
        repo = repository(config, cluster, env)
        repo.sync()
        tags = read_image_tags(repo.read_file(overlay_file(env)), env.spec.image_names())
        status.images = tags
        values = set(tags.values())
        status.version = next(iter(values)) if len(values) == 1 else None
    except PromotionError as error:
        git_problem = error
    observation = observe(cluster, env)
    status.healthy_since = healthy_since(env.status, observation, moment)
    status.health = observation.health
    status.live_version = observation.live_version
    status.conditions = set_condition(
        status.conditions,
        type_="Ready",
        status=git_problem is None,
        reason=Reason.OBSERVED if git_problem is None else git_problem.reason,
        message="" if git_problem is None else git_problem.message,
        now=stamp,
        generation=env.generation,
    )
    status.conditions = set_condition(
        status.conditions,
        type_="Healthy",
        status=observation.health == HealthStatus.HEALTHY,
        reason=observation.health.value,
        message=observation.message,
        now=stamp,
        generation=env.generation,
    )
    messages = [m for m in (git_problem and git_problem.message, observation.message) if m]
    status.message = "; ".join(messages) or None
    patch = dump(status)
    for key in ("version", "liveVersion", "healthySince", "message"):
        patch.setdefault(key, None)
    cluster.patch_status("environments", env.namespace, env.name, patch)
    return status


def refresh(
    config: OperatorConfig, cluster: Cluster, obj: dict[str, Any], moment: dt.datetime
) -> None:
    """Refresh an Environment object's status; a spec the models refuse is reported there."""
    try:
        env = Environment.parse(obj)
    except PromotionError as error:
        meta = obj["metadata"]
        status = EnvironmentStatus.model_validate(obj.get("status") or {})
        status.conditions = set_condition(
            status.conditions,
            type_="Ready",
            status=False,
            reason=error.reason,
            message=error.message,
            now=timestamp(moment),
            generation=meta.get("generation"),
        )
        status.message = error.message
        cluster.patch_status("environments", meta["namespace"], meta["name"], dump(status))
        return
    refresh_status(config, cluster, env, moment)
