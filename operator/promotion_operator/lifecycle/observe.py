"""Looking at an Environment live: its health sources combined, and how long it is healthy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.models import EnvironmentStatus, HealthStatus
from promotion_operator.domain.patterns import version_matches
from promotion_operator.domain.times import parse_time, timestamp
from promotion_operator.health import (
    Observation,
    combine,
    observe_argocd,
    observe_deployments,
    observe_http,
)
from promotion_operator.k8s import ClusterAPI, NotFoundError
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.objects import Environment


def observe(
    config: OperatorConfig,
    cluster: ClusterAPI,
    env: Environment,
    images: Sequence[str] | None = None,
) -> Observation:
    """Look at the environment through each configured health source and combine them.

    `images` defaults to the environment's own; a downstream check passes its own list.
    A source in a namespace the Environment may not read is a PermanentError.
    """
    sources = env.spec.health
    images = list(images) if images is not None else env.spec.image_names()
    if sources is None:
        return Observation(HealthStatus.UNKNOWN, message="no health source configured")
    for field, source in (("argocd", sources.argocd), ("deployments", sources.deployments)):
        if source is not None:
            _allowed(config, env, f"health.{field}.namespace", source.namespace)
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
    return _only_versions(env, combine(observations))


def _only_versions(env: Environment, observation: Observation) -> Observation:
    """Live tags reach status only when they look like versions of this Environment: a
    health source (an HTTP body, say) must not copy arbitrary text into status."""
    pattern = env.spec.version_pattern
    odd = [
        image
        for image, tag in observation.images.items()
        if tag and not version_matches(pattern, tag)
    ]
    if not odd:
        return observation
    images = {image: None if image in odd else tag for image, tag in observation.images.items()}
    note = f"the live tag of {', '.join(odd)} does not match versionPattern"
    message = "; ".join(m for m in (observation.message, note) if m)
    return Observation(observation.health, images, message)


def require_readable(config: OperatorConfig, env: Environment, field: str, namespace: str) -> None:
    """Raise HealthNamespaceForbidden unless `env` may read `namespace` (its own, or one of
    the operator's --health-namespace list)."""
    _allowed(config, env, field, namespace)


def _allowed(config: OperatorConfig, env: Environment, field: str, namespace: str) -> None:
    if namespace == env.namespace or namespace in config.health_namespaces:
        return
    allowed = ", ".join(sorted({env.namespace, *config.health_namespaces}))
    raise PermanentError(
        Reason.HEALTH_NAMESPACE_FORBIDDEN,
        f"Environment {env.name}: {field} {namespace!r} is not allowed: health sources may "
        f"read only {allowed} (the operator's --health-namespace list)",
    )


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
