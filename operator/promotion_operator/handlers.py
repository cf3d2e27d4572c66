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
from promotion_operator.lifecycle.context import OperatorConfig, now

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


# Environments are refreshed by one loop over an in-memory index rather than a kopf
# daemon or timer per object: those make kopf put a finalizer on every Environment, and
# then an Environment could not be deleted (or pruned by Argo CD) while the operator is down.
_known_environments: dict[tuple[str, str], dict[str, Any]] = {}
_REFRESH_CONCURRENCY = 8


def _refresh_environment(obj: dict[str, Any]) -> None:
    environments.refresh(_config, Cluster(), obj, now())


@kopf.on.event(API_GROUP, API_VERSION, "environments")
def environment_seen(body: kopf.Body, **kwargs: Any) -> None:
    """Track the latest version of every Environment for the refresh loop."""
    meta = body.get("metadata", {})
    key = (meta.get("namespace", ""), meta.get("name", ""))
    if kwargs.get("type") == "DELETED" or meta.get("deletionTimestamp"):
        _known_environments.pop(key, None)
    else:
        _known_environments[key] = dict(body)


@kopf.on.create(API_GROUP, API_VERSION, "environments")
@kopf.on.update(API_GROUP, API_VERSION, "environments", field="spec")
def environment_changed(body: kopf.Body, **_: Any) -> None:
    """Refresh at once on a new or changed Environment, rather than at the next round."""
    _refresh_environment(dict(body))


async def _refresh_all() -> None:
    """Every `environment_refresh` seconds, refresh every known Environment's status."""
    limit = asyncio.Semaphore(_REFRESH_CONCURRENCY)

    async def refresh(obj: dict[str, Any]) -> None:
        async with limit:
            try:
                await asyncio.to_thread(_refresh_environment, obj)
            except Exception:  # a bad look is reported next time; the loop must go on
                log.exception("refreshing Environment %s failed", obj["metadata"].get("name"))

    while True:
        await asyncio.gather(*(refresh(obj) for obj in list(_known_environments.values())))
        await asyncio.sleep(_config.environment_refresh)


@kopf.on.startup()
async def _start_refresh(memo: kopf.Memo, **_: Any) -> None:
    memo["environment_refresh"] = asyncio.create_task(_refresh_all())


@kopf.on.cleanup()
async def _stop_refresh(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("environment_refresh")
    if isinstance(task, asyncio.Task):
        task.cancel()
