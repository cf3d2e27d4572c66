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

from promotion_operator import API_GROUP, API_VERSION, logs
from promotion_operator.domain.errors import RetryableError
from promotion_operator.domain.planning import is_finished
from promotion_operator.domain.times import now
from promotion_operator.k8s import Cluster, in_cluster
from promotion_operator.lifecycle import environments, promotions
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.ports import Ports, live_ports
from promotion_operator.metrics import set_in_flight

log = logging.getLogger(__name__)

_REFRESH_CONCURRENCY = 8
_WARM_UP_INTERVAL = 2.0


def _config(memo: kopf.Memo) -> OperatorConfig:
    """The configuration the cli put in the operator memo (resource memos copy it)."""
    config = memo.get("config")
    return config if isinstance(config, OperatorConfig) else OperatorConfig()


def _ports(config: OperatorConfig) -> Ports:
    return live_ports(config, Cluster())


class StatusDiffBase(kopf.DiffBaseStorage):
    """kopf's "last handled configuration", read from the object instead of written to it.

    Our objects say themselves what was handled: a Promotion whose current generation is
    finished, an Environment whose `status.observedGeneration` equals its generation. The
    diff base of such an object is the object itself (no change to react to); for anything
    else (a new object, a new generation, a Promotion still at work) there is none, so
    kopf keeps its handler going. Nothing is ever stored: a year of finished Promotions
    costs no write on start-up, even ones this operator never saw, and a GitOps tool sees
    no annotation of ours as drift.
    """

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """The current essence when the object's status says it was handled, else None."""
        if body.get("kind") == "Promotion":
            handled = is_finished(body)
        else:
            status = body.get("status") or {}
            handled = status.get("observedGeneration") == body.get("metadata", {}).get("generation")
        return self.build(body=body) if handled else None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Nothing to store: the object's status is the record."""
        del body, patch, essence


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    prefix = API_GROUP
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = StatusDiffBase()
    # our own Events carry the story, one per transition; kopf's would add one per retry
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 16


@kopf.on.login()
def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a Pod, the ServiceAccount, unless a kubeconfig was given; else that kubeconfig.

    In a Pod, through the Kubernetes client's in-cluster config, as client-go does it: the
    API server is $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, which the kubelet sets
    in every container, the same one `k8s.py` connects to. (kopf's
    `login_with_service_account` dials kubernetes.default.svc, which needs cluster DNS: a
    hostNetwork Pod has none.)
    """
    if in_cluster():
        return kopf.login_via_client(**kwargs)
    return kopf.login_with_kubeconfig(**kwargs)


def _unfinished(body: kopf.Body, **_: Any) -> bool:
    """kopf's filter: a Promotion whose current generation is finished gets no handler call,
    so a year of history costs no API write and no work on start or ever after."""
    return not is_finished(body)


@kopf.on.resume(API_GROUP, API_VERSION, "promotions", when=_unfinished)
@kopf.on.create(API_GROUP, API_VERSION, "promotions", when=_unfinished)
@kopf.on.update(API_GROUP, API_VERSION, "promotions", field="spec", when=_unfinished)
def promotion_changed(
    body: kopf.Body,
    retry: int,
    memo: kopf.Memo,
    namespace: str | None,
    name: str | None,
    **_: Any,
) -> None:
    """A Promotion is new, its spec changed, or the operator restarted: advance it."""
    config = _config(memo)
    with logs.handling("Promotion", namespace, name):
        try:
            delay = promotions.reconcile(config, _ports(config), dict(body), attempt=retry)
        except RetryableError as error:
            # the status write itself failed (the API server restarting): look again soon,
            # not after kopf's default 60 s for an unexpected error
            raise kopf.TemporaryError(error.message, delay=config.backoff_initial) from error
    if delay is not None:
        raise kopf.TemporaryError("waiting for checks", delay=delay)


@kopf.on.delete(API_GROUP, API_VERSION, "promotions", optional=True)
def promotion_deleted(namespace: str | None, name: str | None, **_: Any) -> None:
    """Deleting a Promotion changes nothing in git; say so in the log."""
    set_in_flight(namespace or "", name or "", active=False)
    log.info("Promotion %s/%s deleted; git is left as it is", namespace, name)


# Environments are refreshed by one loop over kopf's index rather than a kopf daemon or
# timer per object: those make kopf put a finalizer on every Environment, and then an
# Environment could not be deleted (or pruned by Argo CD) while the operator is down.
@kopf.index(API_GROUP, API_VERSION, "environments")
def environment_index(
    namespace: str | None, name: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest body of every Environment, for the refresh loop (kopf drops deleted ones)."""
    return {(namespace or "", name or ""): dict(body)}


@kopf.on.create(API_GROUP, API_VERSION, "environments")
@kopf.on.update(API_GROUP, API_VERSION, "environments", field="spec")
def environment_changed(
    body: kopf.Body, memo: kopf.Memo, namespace: str | None, name: str | None, **_: Any
) -> None:
    """Refresh at once on a new or changed Environment, rather than at the next round."""
    config = _config(memo)
    with logs.handling("Environment", namespace, name):
        environments.refresh(config, _ports(config), dict(body), now())


async def _refresh_all(config: OperatorConfig, index: kopf.Index[Any, Any]) -> None:
    """Every `environment_refresh` seconds, refresh every indexed Environment's status.

    The index fills from the first LIST after start-up; until it has stopped growing, the
    next round comes after `_WARM_UP_INTERVAL`, so every Environment gets a status soon
    after a start rather than one interval later.
    """
    ports = _ports(config)
    clock = asyncio.get_running_loop().time
    previous = -1
    swept = clock()
    while True:
        started = clock()
        bodies = [body for store in list(index.values()) for body in store]
        await environments.refresh_round(config, ports, bodies, concurrency=_REFRESH_CONCURRENCY)
        if started - swept >= config.cache_sweep:
            swept = started
            await asyncio.to_thread(environments.sweep_clone_cache, config)
        interval = _WARM_UP_INTERVAL if len(bodies) != previous else config.environment_refresh
        previous = len(bodies)
        await asyncio.sleep(max(1.0, interval - (clock() - started)))


@kopf.on.startup()
async def _start_refresh(memo: kopf.Memo, **kwargs: Any) -> None:
    # kopf hands every index to operator handlers as a kwarg named after it; the live
    # index object keeps following the watch after start-up
    index: kopf.Index[Any, Any] = kwargs["environment_index"]
    memo["environment_refresh"] = asyncio.create_task(_refresh_all(_config(memo), index))


@kopf.on.cleanup()
async def _stop_refresh(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("environment_refresh")
    if isinstance(task, asyncio.Task):
        task.cancel()
