"""Environment status: what git says, what runs, whether it is healthy, since when."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from promotion_operator.domain.conditions import set_condition
from promotion_operator.domain.errors import (
    ConditionType,
    PermanentError,
    PromotionError,
    Reason,
    RetryableError,
)
from promotion_operator.domain.images import pinned_version
from promotion_operator.domain.models import EnvironmentStatus, HealthStatus, dump, status_patch
from promotion_operator.domain.overlay import read_image_tags
from promotion_operator.domain.times import now, timestamp
from promotion_operator.gitops import cache
from promotion_operator.health import Observation
from promotion_operator.k8s import Object
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.objects import Environment
from promotion_operator.lifecycle.observe import healthy_since, observe, seal_of
from promotion_operator.lifecycle.ports import Ports, open_repository
from promotion_operator.metrics import REFRESH_SECONDS

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class OverlayRead:
    """What one refresh round read of an Environment's overlay: its text, or the problem."""

    text: str | None = None
    problem: PromotionError | None = None


_UNREAD = OverlayRead(
    problem=RetryableError(Reason.GIT_ERROR, "the repository could not be read this round")
)


def _key(env: Environment) -> tuple[str, str]:
    return (env.namespace, env.name)


def repository_key(env: Environment) -> tuple[str, str, str, str]:
    """Environments with the same key are read from one fetch: same namespace (its
    credentials never serve another namespace), repository, branch and Secret."""
    secret = env.spec.git.secret_ref.name if env.spec.git.secret_ref else ""
    return (env.namespace, env.spec.git.url, env.spec.git.branch, secret)


def group_by_repository(envs: Sequence[Environment]) -> list[list[Environment]]:
    """The Environments of a round, one group per fetch."""
    groups: dict[tuple[str, str, str, str], list[Environment]] = {}
    for env in envs:
        groups.setdefault(repository_key(env), []).append(env)
    return list(groups.values())


def read_overlays(
    config: OperatorConfig, ports: Ports, group: Sequence[Environment]
) -> dict[tuple[str, str], OverlayRead]:
    """One fetch for the whole group, then every overlay from the fetched commit.

    Takes no lock that promotions take (`Repository.snapshot`), so a promotion never waits
    behind a refresh round. Keyed by (namespace, name).
    """
    try:
        repo = open_repository(config, ports, group[0])
        head = repo.snapshot()
        texts = repo.read_many(head, [env.overlay_file for env in group])
    except PromotionError as error:
        return {_key(env): OverlayRead(problem=error) for env in group}
    reads: dict[tuple[str, str], OverlayRead] = {}
    for env in group:
        text = texts.get(env.overlay_file)
        if text is None:
            problem = PermanentError(
                Reason.INVALID_OVERLAY,
                f"{env.overlay_file} is not a file on branch {env.spec.git.branch}",
            )
            reads[_key(env)] = OverlayRead(problem=problem)
        else:
            reads[_key(env)] = OverlayRead(text=text)
    return reads


def refresh_status(
    config: OperatorConfig,
    ports: Ports,
    env: Environment,
    overlay: OverlayRead,
    moment: dt.datetime,
) -> EnvironmentStatus:
    """Compute the Environment's status and write it when it changed; never raises for a
    bad spec or overlay (they are reported on the status)."""
    status = env.status.model_copy()
    status.observed_generation = env.generation
    stamp = timestamp(moment)
    git_problem = overlay.problem
    if overlay.text is not None:
        try:
            tags = read_image_tags(overlay.text, env.spec.image_names())
            status.images = tags
            status.version = pinned_version(tags)
        except PromotionError as error:
            git_problem = error
    try:
        observation = observe(config, ports.cluster, env)
    except PromotionError as error:
        observation = Observation(HealthStatus.UNKNOWN, message=error.message)
        git_problem = git_problem or error
    status.healthy_since = healthy_since(env, observation, moment, config.status_key)
    status.health = observation.health
    status.live_version = observation.live_version
    status.healthy_since_seal = seal_of(env, status, config.status_key)
    status.conditions = set_condition(
        status.conditions,
        type_=ConditionType.READY,
        status=git_problem is None,
        reason=Reason.OBSERVED if git_problem is None else git_problem.reason,
        message="" if git_problem is None else git_problem.message,
        now=stamp,
        generation=env.generation,
    )
    status.conditions = set_condition(
        status.conditions,
        type_=ConditionType.HEALTHY,
        status=observation.health == HealthStatus.HEALTHY,
        reason=observation.health.value,
        message=observation.message,
        now=stamp,
        generation=env.generation,
    )
    messages = [m for m in (git_problem and git_problem.message, observation.message) if m]
    status.message = "; ".join(messages) or None
    if dump(status) != dump(env.status):  # an unchanged status costs the API server nothing
        ports.cluster.patch_status(
            "environments", env.namespace, env.name, status_patch(env.status, status)
        )
    return status


def parse_or_report(ports: Ports, obj: Object, moment: dt.datetime) -> Environment | None:
    """Parse an Environment; a spec the models refuse is reported on its status (None)."""
    try:
        return Environment.parse(obj)
    except PromotionError as error:
        meta = obj["metadata"]
        before = EnvironmentStatus.model_validate(obj.get("status") or {})
        status = before.model_copy()
        status.conditions = set_condition(
            status.conditions,
            type_=ConditionType.READY,
            status=False,
            reason=error.reason,
            message=error.message,
            now=timestamp(moment),
            generation=meta.get("generation"),
        )
        status.message = error.message
        if dump(status) != dump(before):
            ports.cluster.patch_status(
                "environments", meta["namespace"], meta["name"], status_patch(before, status)
            )
        return None


def refresh(config: OperatorConfig, ports: Ports, obj: Object, moment: dt.datetime) -> None:
    """Refresh one Environment at once (a new or changed spec), outside the round."""
    env = parse_or_report(ports, obj, moment)
    if env is not None:
        overlay = read_overlays(config, ports, [env])[_key(env)]
        refresh_status(config, ports, env, overlay, moment)


async def refresh_round(
    config: OperatorConfig, ports: Ports, bodies: Sequence[Object], *, concurrency: int
) -> None:
    """One round: one fetch per repository, then every Environment's status.

    Each step runs in a worker thread, at most `concurrency` at once, so slow git or HTTP
    never blocks the event loop and one slow source holds one slot, not the round.
    """
    with REFRESH_SECONDS.time():
        await _round(config, ports, bodies, concurrency=concurrency)


async def _round(
    config: OperatorConfig, ports: Ports, bodies: Sequence[Object], *, concurrency: int
) -> None:
    limit = asyncio.Semaphore(concurrency)
    moment = now()

    async def bounded(what: str, call: Callable[[], _T]) -> _T | None:
        async with limit:
            try:
                return await asyncio.to_thread(call)
            except PromotionError as error:  # sorted (the API server away): one line
                log.warning("refreshing %s failed: %s", what, error.message)
                return None
            except Exception:  # a bad look is reported next time; the loop must go on
                log.exception("refreshing %s failed", what)
                return None

    envs = [env for body in bodies if (env := parse_or_report(ports, body, moment)) is not None]
    reads: dict[tuple[str, str], OverlayRead] = {}
    for found in await asyncio.gather(
        *(
            bounded(f"repository of {group[0].name}", partial(read_overlays, config, ports, group))
            for group in group_by_repository(envs)
        )
    ):
        reads.update(found or {})
    await asyncio.gather(
        *(
            bounded(
                f"Environment {env.namespace}/{env.name}",
                partial(
                    refresh_status,
                    config,
                    ports,
                    env,
                    reads.get(_key(env), _UNREAD),
                    moment,
                ),
            )
            for env in envs
        )
    )


def sweep_clone_cache(config: OperatorConfig) -> None:
    """Evict cached clones unused for `cache_idle` or beyond `cache_budget` (never one in
    use); a failure is logged and the next sweep tries again."""
    try:
        swept = cache.evict(
            config.cache_dir / "git", idle=config.cache_idle, budget=config.cache_budget
        )
    except OSError:
        log.exception("sweeping the clone cache failed")
        return
    if swept.evicted:
        log.info(
            "clone cache: evicted %d clones, %d MiB kept",
            len(swept.evicted),
            swept.kept_bytes >> 20,
        )
