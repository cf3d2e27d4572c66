"""Every kopf handler, and the only module that imports kopf.

Handlers are thin: they call the lifecycle and map its answer to kopf's retry model.
Progress and diff-base are kept in annotations under our own prefix, and the lifecycle's
state lives in `.status` keyed by `observedGeneration`, so kopf never writes spec-like
fields that a GitOps tool syncing Promotions from git would see as drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from promotion_operator import API_GROUP, API_VERSION, logs
from promotion_operator.domain.errors import RetryableError
from promotion_operator.domain.planning import is_finished
from promotion_operator.k8s import Cluster, Object, flush_events, in_cluster
from promotion_operator.lifecycle import environments, promotions
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.controller import PromotionController
from promotion_operator.lifecycle.ports import Ports, live_ports

log = logging.getLogger(__name__)

_REFRESH_CONCURRENCY = 8
_WARM_UP_INTERVAL = 2.0
_CHANGE_GATHER = 0.2
_EVENT_FLUSH = 5.0  # seconds a stopping operator waits for its queued Events


def _config(memo: kopf.Memo) -> OperatorConfig:
    """The configuration the cli put in the operator memo (resource memos copy it)."""
    config = memo.get("config")
    return config if isinstance(config, OperatorConfig) else OperatorConfig()


def _ports(config: OperatorConfig) -> Ports:
    return live_ports(config, Cluster())


class StatusDiffBase(kopf.DiffBaseStorage):
    """kopf's "last handled configuration", read from the object instead of written to it.

    Our objects say themselves what was handled: a Promotion whose current generation is
    finished, an Environment whose `status.observedGeneration` equals its generation
    (neither has a kopf changing handler today; this keeps kopf from ever writing one). The
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
            handled = _describes_generation(body)
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


# Promotions are not watched through kopf: kopf keeps a memory and a worker per object,
# and a year of finished Promotions cost ~390 MiB and a 30 s start. The operator's own
# paginated LIST and watch (lifecycle/controller.py) keeps only the unfinished ones.
def promotion_work(config: OperatorConfig, ports: Ports) -> Callable[[Object, int], float | None]:
    """What the controller calls for a Promotion that is due: one `reconcile`, named on
    every log line it causes; its answer is the delay before the next look (None: done)."""

    def work(body: Object, attempt: int) -> float | None:
        meta = body.get("metadata") or {}
        with logs.handling("Promotion", meta.get("namespace"), meta.get("name")):
            try:
                return promotions.reconcile(config, ports, body, attempt=attempt)
            except RetryableError as error:
                # the status write itself failed (the API server restarting): look again
                # soon, not after the longer backoff for an unexpected error
                log.warning("will look again: %s", error.message)
                return config.backoff_initial

    return work


def _start_promotions(memo: kopf.Memo) -> PromotionController:
    config = _config(memo)
    work = promotion_work(config, _ports(config))
    namespaces = memo.get("namespaces") or None
    controller = PromotionController(Cluster(), work, namespaces=namespaces, workers=16)
    controller.start()
    return controller


# Environments are refreshed by one loop over kopf's index rather than a kopf daemon or
# timer per object: those make kopf put a finalizer on every Environment, and then an
# Environment could not be deleted (or pruned by Argo CD) while the operator is down.
# Nor is there a kopf create/update handler: kopf patches every object it runs a
# changing handler for (its progress bookkeeping), so a start with a thousand new
# Environments meant a thousand PATCHes at once, each on a TLS connection of its own
# (kopf's pool has no limit) with asyncio's 256 KiB read buffer: ~250 MiB of heap that
# stayed. The index sees every event and writes nothing.
@kopf.index(API_GROUP, API_VERSION, "environments")
async def environment_index(
    namespace: str | None, name: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest body of every Environment, for the refresh loop (kopf drops deleted ones).

    A new or changed Environment (its status does not yet describe its generation) is
    refreshed at once rather than at the next round: the refresh loop wakes and does a
    round of just the changed ones (one fetch per repository, however many changed: at
    start-up that is every Environment without a status).
    """
    key, latest = (namespace or "", name or ""), dict(body)
    if not _describes_generation(latest):
        wake = memo.get("environment_wake")
        changed = memo.get("environment_changed")
        if isinstance(wake, asyncio.Event) and isinstance(changed, dict):
            changed[key] = latest
            wake.set()
    return {key: latest}


def _describes_generation(body: Mapping[str, Any]) -> bool:
    """Whether an Environment's status was written for its current generation."""
    status = body.get("status") or {}
    return status.get("observedGeneration") == (body.get("metadata") or {}).get("generation")


def _load_libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc; no ldconfig run as find_library does
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def _key_of(body: dict[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


_LIBC = _load_libc()
_TRIM_AFTER = 100  # Environments in a round: smaller rounds free too little to matter


def _trim_heap() -> None:
    """Hand the heap a large round freed back to the kernel (glibc keeps it otherwise:
    the parsed bodies, git output and HTTP buffers of a round of 1,000 Environments are
    freed at its end but stay resident). Nothing on other C libraries (musl)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


async def _refresh_all(
    config: OperatorConfig,
    index: kopf.Index[Any, Any],
    wake: asyncio.Event,
    changed: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """Every `environment_refresh` seconds, refresh every indexed Environment's status;
    in between, at once, the Environments that were created or changed.

    The index fills from the first LIST after start-up; until it has stopped growing, the
    next full round comes after `_WARM_UP_INTERVAL`, so every Environment gets a status
    soon after a start rather than one interval later.
    """
    ports = _ports(config)
    clock = asyncio.get_running_loop().time
    previous = -1
    next_full = clock()
    swept = clock()
    while True:
        started = clock()
        if started - swept >= config.cache_sweep:
            swept = started
            await asyncio.to_thread(environments.sweep_clone_cache, config)
        if started >= next_full:
            # the changed ones too: kopf indexes a body after this handler saw it
            latest = {_key_of(body): body for store in list(index.values()) for body in store}
            latest.update(changed)
            changed.clear()
            bodies = list(latest.values())
            interval = _WARM_UP_INTERVAL if len(bodies) != previous else config.environment_refresh
            previous = len(bodies)
            next_full = started + max(1.0, interval)
        else:
            bodies = list(changed.values())
            changed.clear()
        wake.clear()
        if bodies:
            try:
                await environments.refresh_round(
                    config, ports, bodies, concurrency=_REFRESH_CONCURRENCY
                )
            except Exception:  # the API server away mid-round: the loop must go on
                log.exception("an Environment refresh round failed; the next one retries")
            if len(bodies) >= _TRIM_AFTER:
                await asyncio.to_thread(_trim_heap)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=max(0.0, next_full - clock()))
        await asyncio.sleep(_CHANGE_GATHER)  # let a burst of changes share one round


@kopf.on.startup()
async def _start_refresh(memo: kopf.Memo, **kwargs: Any) -> None:
    # kopf hands every index to operator handlers as a kwarg named after it; the live
    # index object keeps following the watch after start-up
    index: kopf.Index[Any, Any] = kwargs["environment_index"]
    wake = memo["environment_wake"] = asyncio.Event()
    changed: dict[tuple[str, str], dict[str, Any]] = {}
    memo["environment_changed"] = changed
    memo["environment_refresh"] = asyncio.create_task(
        _refresh_all(_config(memo), index, wake, changed)
    )
    memo["promotion_controller"] = await asyncio.to_thread(_start_promotions, memo)


@kopf.on.cleanup()
async def _stop_refresh(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("environment_refresh")
    if isinstance(task, asyncio.Task):
        task.cancel()
    controller = memo.get("promotion_controller")
    if isinstance(controller, PromotionController):
        controller.stop()
        await asyncio.to_thread(controller.drain, _EVENT_FLUSH)  # rounds still running
    await asyncio.to_thread(flush_events, _EVENT_FLUSH)  # the last transitions' Events
