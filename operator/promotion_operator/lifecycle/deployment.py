"""After the push: ask Argo CD to look now, then watch the Environment run the version.

"Succeeded" means the commit is on the remote. `Deployed` says whether the Environment
then ran the version healthy: Unknown while the operator waits (the generation is not
finished yet), True once its health sources show it, False when they did not within
`spec.timeout` of the push, or when a newer Promotion moved the Environment on.
"""

from __future__ import annotations

import datetime as dt
import logging

from promotion_operator.domain.errors import (
    ConditionType,
    PermanentError,
    PromotionError,
    Reason,
    RetryableError,
)
from promotion_operator.domain.models import HealthStatus
from promotion_operator.domain.times import parse_time
from promotion_operator.health import Observation
from promotion_operator.k8s import NotFoundError
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.newest import newer_promotion
from promotion_operator.lifecycle.objects import Environment, Promotion, load_environment
from promotion_operator.lifecycle.observe import observe
from promotion_operator.lifecycle.ports import Ports
from promotion_operator.lifecycle.status import StatusWriter

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
"""How often an awaited deployment is looked at (one read of the health sources)."""


def expect_deployment(ports: Ports, env: Environment, writer: StatusWriter, version: str) -> None:
    """The overlay now pins `version`: ask Argo CD to refresh, and start waiting for it.

    An Environment without health sources cannot show a deployment: no condition then.
    The refresh is best effort: without it Argo CD still finds the commit at its poll.
    """
    if env.spec.health is None:
        return
    argocd = env.spec.health.argocd
    if argocd is not None:
        try:
            ports.cluster.refresh_argocd_application(argocd.namespace, argocd.application)
        except (PromotionError, NotFoundError) as error:
            log.warning(
                "could not ask Argo CD to refresh %s/%s: %s",
                argocd.namespace,
                argocd.application,
                error,
            )
    writer.condition(
        ConditionType.DEPLOYED,
        status=None,
        reason=Reason.AWAITING_DEPLOYMENT,
        message=f"waiting for {env.name} to run {version} healthy",
    )


def await_deployment(
    config: OperatorConfig,
    ports: Ports,
    promotion: Promotion,
    writer: StatusWriter,
    moment: dt.datetime,
) -> float | None:
    """One look at the Environment; returns the seconds until the next, or None when the
    `Deployed` condition has its answer. It never changes the phase: the push stands."""
    version = promotion.spec.version
    env_name = promotion.spec.environment
    try:
        env = load_environment(ports.cluster, promotion.namespace, env_name)
        observation = observe(config, ports.cluster, env)
    except PermanentError as error:
        _decide(writer, status=False, reason=error.reason, message=error.message, warning=True)
        return None
    except (RetryableError, NotFoundError) as error:  # not seen this time: look again
        observation = Observation(HealthStatus.UNKNOWN, message=str(error))
    live = observation.live_version
    if observation.health == HealthStatus.HEALTHY and observation.runs(version):
        _decide(writer, status=True, reason=Reason.DEPLOYED, message=f"{env_name} runs {version}")
        return None
    pushed = parse_time(writer.status.finished_at) if writer.status.finished_at else moment
    if moment >= pushed + promotion.spec.timeout_delta():
        seen = observation.message or f"it runs {live or 'an unknown version'}"
        _decide(
            writer,
            status=False,
            reason=Reason.NOT_DEPLOYED,
            message=f"{env_name} did not run {version} healthy within {promotion.spec.timeout} "
            f"of the push: {seen}",
            warning=True,
        )
        return None
    if observation.health == HealthStatus.HEALTHY and live not in (None, version):
        newer = newer_promotion(ports, promotion)
        if newer is not None:
            _decide(
                writer,
                status=False,
                reason=Reason.SUPERSEDED,
                message=f"{env_name} moved on to {live} (the newer Promotion {newer})",
            )
            return None
    waiting = observation.message or f"it runs {live or 'an unknown version'}"
    writer.condition(
        ConditionType.DEPLOYED,
        status=None,
        reason=Reason.AWAITING_DEPLOYMENT,
        message=f"waiting for {env_name} to run {version} healthy: {waiting}",
    )
    writer.write()
    return POLL_SECONDS


def _decide(
    writer: StatusWriter, *, status: bool, reason: Reason, message: str, warning: bool = False
) -> None:
    writer.condition(ConditionType.DEPLOYED, status=status, reason=reason, message=message)
    writer.write()
    writer.event(reason, message, warning=warning)
