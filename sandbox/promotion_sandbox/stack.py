"""The operator at work on a GitOps world: what the demo and the benchmark drive.

A namespace holding the world's objects (registry Secret, dev Argo CD Application, the dev
and prod Environments, and any prod-like ones), the operator as a process watching it, and
a phase watch on its Promotions. The tests build the same from the same parts as fixtures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.watch import PhaseWatch
from promotion_sandbox.world import World, promotion


@dataclass(frozen=True)
class Stack:
    """The running parts, and the two moves a user makes: CI deploys to dev, ask to promote."""

    kube: Kube
    world: World
    namespace: str
    operator: OperatorProcess
    watch: PhaseWatch
    environments: tuple[str, ...]

    def wait_observed(self, *, timeout: float = 60) -> float:
        """Wait until the operator has read every Environment's overlay; return seconds."""
        return self.operator.wait_observed(self.namespace, self.environments, timeout=timeout)

    def dev_runs(self, version: str) -> None:
        """Argo CD reports dev Healthy and Synced with every image at `version`."""
        self.kube.apply(self.world.dev_application(self.namespace, version))

    def promote(self, name: str, version: str, **spec: Any) -> str:
        """Apply a Promotion of tvhub-prod (or `environment=`) to `version`; kubectl's output."""
        return self.kube.apply(promotion(self.namespace, name, version, **spec)).stdout.strip()


@contextlib.contextmanager
def running_stack(
    kube: Kube,
    world: World,
    namespace: str,
    workdir: Path,
    *,
    soak: str | None = None,
    extra_overlays: Sequence[str] = (),
    environment_refresh: float = 1.0,
    max_backoff: float = 2.0,
    echo: Callable[[str], None] | None = None,
    world_objects: Sequence[dict[str, Any]] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[Stack]:
    """Create `namespace`, apply the world's objects, run the operator and the phase watch.

    `world_objects` replaces the world's own objects (`World.objects`, with `soak`), e.g.
    with Environments on a real Argo CD (`ArgoCDWorld.environment_objects`).
    `extra_overlays` are overlay folders of the world's repository that get a prod-like
    Environment each. `echo` receives kubectl's report of what it applied. The operator
    logs to `workdir/operator.log`, keeps its clones in `workdir/operator-cache` and gets
    `extra_args`. Everything started is stopped on exit; the namespace and the world are
    left as they are.
    """
    kube.create_namespace(namespace)
    objects = [
        *(world.objects(namespace, soak=soak) if world_objects is None else world_objects),
        *(world.prod_like_environment(namespace, path) for path in extra_overlays),
    ]
    applied = kube.apply(*objects).stdout.strip()
    if echo is not None:
        echo(applied)
    operator = OperatorProcess(
        kube,
        workdir,
        [namespace],
        environment_refresh=environment_refresh,
        max_backoff=max_backoff,
        log=workdir / "operator.log",
        cache=workdir / "operator-cache",
        extra_args=extra_args,
    )
    environments = tuple(o["metadata"]["name"] for o in objects if o["kind"] == "Environment")
    with operator, PhaseWatch(kube, namespace) as watch:
        yield Stack(kube, world, namespace, operator, watch, environments)
