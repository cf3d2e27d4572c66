"""The two-speed loop on REAL Argo CD: CI bumps dev, Argo CD syncs it onto a cluster that
rolls Deployments out (kube-controller-manager, kube-scheduler, kwok), the operator checks
the real dev Application, commits to prod, asks Argo CD to refresh, and sees prod run it.

One `ArgoCDWorld` for the module (it takes about 10 s to start); each test releases a
version of its own, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from promotion_sandbox.gitops_world import ArgoCDWorld, control_plane_pki
from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.world import NEW_VERSION, PROD_OVERLAY, World, promotion
from support.operator import wait_for, wait_phase

pytestmark = pytest.mark.e2e

RELEASED = "v20250902-c0ffee1"
HALF_RELEASED = "v20250909-d00dfee"


@dataclass(frozen=True)
class Scene:
    """Real Argo CD over a repository of its own, and an operator watching `namespace`
    where the dev and prod Environments point at the real Applications."""

    kube: Kube
    argocd: ArgoCDWorld
    namespace: str
    operator: OperatorProcess

    @property
    def world(self) -> World:
        return self.argocd.world

    def environment_status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = (
            self.kube.get("environment", name, self.namespace).get("status") or {}
        )
        return status

    def logs(self) -> str:
        return f"{self.operator.logs()[-3000:]}\n{self.argocd.logs()}"


@pytest.fixture(scope="module")
def scene(
    request: pytest.FixtureRequest,
    kube: Kube,
    world: World,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scene]:
    """Argo CD, its Applications synced, the Environments and the operator, for the module."""
    pki = control_plane_pki(kube)
    if pki is None:
        pytest.skip(
            "the argocd tier runs its controllers on the sandbox control plane's keys; "
            f"PROMOTION_OPERATOR_TEST_KUBECONFIG={os.environ.get('PROMOTION_OPERATOR_TEST_KUBECONFIG')}"
            " names another cluster"
        )
    gitops = world.fork(tmp_path_factory.mktemp("argocd-git"))
    workdir = tmp_path_factory.mktemp("argocd")
    with contextlib.ExitStack() as stack:
        argocd = stack.enter_context(
            ArgoCDWorld(kube, gitops, workdir, pki=pki, repo_root=request.config.rootpath)
        )
        namespace = stack.enter_context(kube.namespace("argo"))
        kube.apply(*argocd.environment_objects(namespace))
        operator = stack.enter_context(
            OperatorProcess(
                kube,
                workdir,
                [namespace],
                extra_args=(f"--health-namespace={argocd.namespace}",),
                log=workdir / "operator.log",
            )
        )
        yield Scene(kube, argocd, namespace, operator)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or ()}


def test_ci_to_prod_through_real_argocd(scene: Scene) -> None:
    kube, argocd, ns, world = scene.kube, scene.argocd, scene.namespace, scene.world
    images = world.images()

    # 1. CI pushes the version and bumps dev; real Argo CD syncs dev and rolls it out
    released = argocd.ci_release(RELEASED)
    dev = argocd.wait_runs("tvhub-dev", released, dict.fromkeys(images, RELEASED))
    assert sorted(dev["status"]["summary"]["images"]) == sorted(f"{i}:{RELEASED}" for i in images)
    deployments = kube.kubectl(
        "get",
        "deployments",
        "-n",
        "tvhub-dev",
        "-o",
        "jsonpath={range .items[*]}{.spec.template.spec.containers[0].image} "
        "{.status.availableReplicas}{'\\n'}{end}",
    ).stdout.split("\n")
    assert sorted(line for line in deployments if line) == sorted(
        f"{i}:{RELEASED} 1" for i in images
    )

    # 2. the dev Environment reads the real Application: Healthy, LIVE = the version
    dev_env = wait_for(
        "dev Environment Healthy on the released version",
        lambda: (
            (s := scene.environment_status("tvhub-dev")).get("health") == "Healthy"
            and s.get("liveVersion") == RELEASED
            and s
        ),
        logs=scene.logs,
    )
    assert dev_env["version"] == RELEASED
    table = kube.kubectl("get", "environments", "-n", ns).stdout
    assert re.search(rf"tvhub-dev\s+{RELEASED}\s+{RELEASED}\s+Healthy", table), table

    # 3. a Promotion of prod passes its checks against the real Application and commits
    prod_before = argocd.application("tvhub-prod")["status"]["sync"]["revision"]
    kube.apply(promotion(ns, "to-released", RELEASED, reason="checked in dev"))
    done = wait_phase(kube, scene.operator, ns, "to-released", "Succeeded")
    assert done["commit"] == world.remote_head() != prod_before
    assert world.remote_file(PROD_OVERLAY).count(f"newTag: {RELEASED}") == 2
    assert conditions(done)["Verified"] == ("True", "ChecksPassed")
    checks = {c["name"]: c["status"] for c in done["checks"]}
    assert checks["UpstreamHealthy"] == checks["UpstreamVersion"] == "Passed"

    # 4. the operator's refresh makes Argo CD sync prod at once (its own poll takes ~3 min),
    #    and the Promotion sees prod run the version: Deployed
    deployed = wait_for(
        "the Deployed condition to be True",
        lambda: (
            (s := kube.get("promotion", "to-released", ns).get("status") or {})
            and conditions(s).get("Deployed", ("", ""))[0] == "True"
            and s
        ),
        logs=scene.logs,
        timeout=90,
    )
    assert conditions(deployed)["Deployed"] == ("True", "Deployed")
    assert deployed["phase"] == "Succeeded"
    prod = argocd.wait_runs("tvhub-prod", done["commit"], dict.fromkeys(images, RELEASED))
    assert prod["status"]["sync"]["status"] == "Synced"
    live = kube.kubectl(
        "get",
        "deployment",
        "tvhub-frontend",
        "-n",
        "tvhub-prod",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ).stdout
    assert live == f"{world.images()[0]}:{RELEASED}"
    prod_env = wait_for(
        "prod Environment LIVE on the released version",
        lambda: (s := scene.environment_status("tvhub-prod")).get("liveVersion") == RELEASED and s,
        logs=scene.logs,
    )
    assert prod_env["health"] == "Healthy"


def test_dev_running_the_tag_on_one_image_only_blocks_the_promotion(scene: Scene) -> None:
    kube, argocd, ns, world = scene.kube, scene.argocd, scene.namespace, scene.world
    frontend, backend = world.images()
    backend_tag = re.findall(
        rf"name: {re.escape(backend)}\n\s+newTag: (\S+)",
        world.remote_file("k8s/overlays/dev/kustomization.yaml"),
    )[0]
    assert backend_tag in (NEW_VERSION, RELEASED)

    # CI pushed both images but the dev bump moved the frontend only; Argo CD syncs that
    bumped = argocd.ci_release(HALF_RELEASED, images=[frontend])
    argocd.wait_runs("tvhub-dev", bumped, {frontend: HALF_RELEASED, backend: backend_tag})

    kube.apply(promotion(ns, "half", HALF_RELEASED, timeout="10s"))
    failed = wait_phase(kube, scene.operator, ns, "half", "Failed", timeout=90)
    assert conditions(failed)["Ready"] == ("False", "UpstreamVersionMismatch")
    assert world.remote_head() == bumped
    assert HALF_RELEASED not in world.remote_file(PROD_OVERLAY)
