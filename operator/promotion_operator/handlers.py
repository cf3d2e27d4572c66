"""Every kopf handler, and the only module that imports kopf.

Handlers are thin: they call the lifecycle and map its answer to kopf's retry model.
Progress and diff-base are kept in annotations under our own prefix, and the lifecycle's
state lives in `.status` keyed by `observedGeneration`, so kopf never writes spec-like
fields that a GitOps tool syncing Promotions from git would see as drift.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from promotion_operator import API_GROUP, API_VERSION
from promotion_operator.k8s import Cluster
from promotion_operator.lifecycle import environments, promotions
from promotion_operator.lifecycle.context import Environment, OperatorConfig, now

log = logging.getLogger(__name__)

_config = OperatorConfig()


def configure(config: OperatorConfig) -> None:
    """Set the process-wide configuration before kopf starts."""
    global _config  # noqa: PLW0603 - set once at start-up by the cli
    _config = config


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    prefix = API_GROUP
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    # our own Events carry the story, one per transition; kopf's would add one per retry
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 16


@kopf.on.login()
def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a Pod, the ServiceAccount; elsewhere the kubeconfig the cli was given."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def _reconcile_promotion(body: kopf.Body, retry: int) -> None:
    delay = promotions.reconcile(_config, Cluster(), dict(body), attempt=retry)
    if delay is not None:
        raise kopf.TemporaryError("waiting for checks", delay=delay)


@kopf.on.resume(API_GROUP, API_VERSION, "promotions")
@kopf.on.create(API_GROUP, API_VERSION, "promotions")
@kopf.on.update(API_GROUP, API_VERSION, "promotions", field="spec")
def promotion_changed(body: kopf.Body, retry: int, **_: Any) -> None:
    """A Promotion is new, its spec changed, or the operator restarted: advance it."""
    _reconcile_promotion(body, retry)


@kopf.on.delete(API_GROUP, API_VERSION, "promotions", optional=True)
def promotion_deleted(namespace: str | None, name: str | None, **_: Any) -> None:
    """Deleting a Promotion changes nothing in git; say so in the log."""
    log.info("Promotion %s/%s deleted; git is left as it is", namespace, name)


@kopf.daemon(API_GROUP, API_VERSION, "environments", cancellation_timeout=5.0)
async def environment_status(
    body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any
) -> None:
    """Keep the Environment's status (git version, live version, health) fresh.

    One loop per Environment; the blocking work runs in a thread so that many
    Environments never exhaust kopf's worker pool.
    """
    while not stopped:
        try:
            env = Environment.parse(dict(body))
            await asyncio.to_thread(environments.refresh_status, _config, Cluster(), env, now())
        except Exception:  # a bad look is reported next time; the loop must go on
            logger.exception(
                "refreshing Environment %s failed", body.get("metadata", {}).get("name")
            )
        await stopped.wait(_config.environment_refresh)
