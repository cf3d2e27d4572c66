"""The two-speed loop on REAL Argo CD: CI bumps dev, Argo CD syncs it onto a cluster that
rolls Deployments out (kube-controller-manager, kube-scheduler, kwok), the operator checks
the real dev Application, commits to prod, asks Argo CD to refresh, and sees prod run it.
Also: dev mid-rollout or after a failed sync blocks a Promotion, an Application with
several sources, and Promotions kept in git and synced by Argo CD with the health check
and `ignoreDifferences` that docs/gitops.md gives (read from that page).

One `ArgoCDWorld` for the module (it takes about 10 s to start); each test releases a
version of its own and leaves dev running it cleanly, so the tests do not depend on each
other's order.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from promotion_operator import REQUESTED_BY_ANNOTATION
from promotion_sandbox.gitops_world import (
    ArgoCDWorld,
    at_revision,
    control_plane_pki,
    synced_application,
)
from promotion_sandbox.gitserver import commit_files
from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.world import (
    NEW_VERSION,
    PROD_OVERLAY,
    UNTESTED_VERSION,
    World,
    promotion,
)
from support.operator import wait_for, wait_phase

pytestmark = pytest.mark.e2e

RELEASED = "v20250902-c0ffee1"
HALF_RELEASED = "v20250909-d00dfee"
STUCK = "v20250910-5eed001"
BROKEN = "v20250911-bad5eed"
RECOVERED = "v20250912-a11a11a"
MULTI = "v20250913-5005ce5"
FROM_GIT = "v20250915-9170bbb"
HEALTH_KEY = "resource.customizations.health.promotion.gitops.dev_Promotion"
# a rollout that never becomes available: the new pods fit no node
UNSCHEDULABLE = """  - target: {kind: Deployment, name: tvhub-frontend}
    patch: |-
      - op: add
        path: /spec/template/spec/nodeSelector
        value: {promotion-operator.test/no-such-node: "true"}
"""
# a manifest the API server refuses: Argo CD's sync fails
INVALID = """  - target: {kind: Deployment, name: tvhub-backend}
    patch: |-
      - op: replace
        path: /spec/replicas
        value: -1
"""


def gitops_doc(root: Path, marker: str) -> Any:
    """The YAML of the block in docs/gitops.md that contains `marker`: the tests install
    exactly what the guide tells users to install."""
    text = (root / "docs" / "gitops.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL) if marker in b]
    assert len(blocks) == 1, f"docs/gitops.md has {len(blocks)} YAML blocks with {marker!r}"
    return yaml.safe_load(blocks[0])


@dataclass(frozen=True)
class Scene:
    """Real Argo CD over a repository of its own, and an operator watching `namespace`
    where the dev and prod Environments point at the real Applications."""

    kube: Kube
    argocd: ArgoCDWorld
    namespace: str
    operator: OperatorProcess
    docs_root: Path

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
        root = request.config.rootpath
        argocd_cm = gitops_doc(root, HEALTH_KEY)["data"]
        argocd = stack.enter_context(
            ArgoCDWorld(kube, gitops, workdir, pki=pki, repo_root=root, settings=argocd_cm)
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
        yield Scene(kube, argocd, namespace, operator, root)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or ()}


def environment(
    namespace: str, name: str, common: dict[str, Any], *, overlay: str, **spec: Any
) -> dict[str, Any]:
    """An Environment with the `common` spec, overlay folder `overlay` and `spec` added."""
    return {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {**common, "overlay": {"path": overlay}, **spec},
    }


def release_cleanly(scene: Scene, version: str) -> str:
    """CI releases `version` to dev with no patches; wait until Argo CD runs it there."""
    commit = scene.argocd.ci_release(version)
    scene.argocd.wait_runs("tvhub-dev", commit, dict.fromkeys(scene.world.images(), version))
    return commit


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

    # 5. the push to prod moved dev's revision too (one repository) and started no dev sync:
    #    Argo CD shows dev Synced at the new commit, its last sync of the older one; the
    #    operator still reads dev as Healthy (a dry run re-runs the checks)
    argocd.refresh("tvhub-dev")
    dev = wait_for(
        "dev compared against the prod commit",
        lambda: (
            at_revision((a := argocd.application("tvhub-dev"))["status"]["sync"], done["commit"])
            and a
        ),
        logs=scene.logs,
    )
    assert dev["status"]["operationState"]["syncResult"]["revision"] == released
    assert dev["status"]["sync"]["status"] == "Synced"
    kube.apply(promotion(ns, "recheck", RELEASED, dryRun=True))
    again = wait_phase(kube, scene.operator, ns, "recheck", "Succeeded")
    assert {c["name"]: c["status"] for c in again["checks"]}["UpstreamHealthy"] == "Passed"


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


def test_dev_mid_rollout_or_after_a_failed_sync_blocks_the_promotion(scene: Scene) -> None:
    kube, argocd, ns, world = scene.kube, scene.argocd, scene.namespace, scene.world
    images = world.images()
    try:
        # 1. Argo CD synced the release, but the frontend's new pods never become available:
        #    Synced, health Progressing, old and new tag listed together
        stuck = argocd.ci_release(STUCK, patches=UNSCHEDULABLE)
        app = wait_for(
            "dev Synced and Progressing on the stuck rollout",
            lambda: (
                (a := argocd.application("tvhub-dev"))["status"]["sync"]["status"] == "Synced"
                and at_revision(a["status"]["sync"], stuck)
                and a["status"]["health"]["status"] == "Progressing"
                and a
            ),
            logs=scene.logs,
        )
        assert f"{images[0]}:{STUCK}" in app["status"]["summary"]["images"]
        kube.apply(promotion(ns, "stuck", STUCK, timeout="5s"))
        failed = wait_phase(kube, scene.operator, ns, "stuck", "Failed", timeout=90)
        assert conditions(failed)["Ready"] == ("False", "UpstreamNotHealthy")
        assert "upstream tvhub-dev is Progressing" in failed["message"], failed["message"]

        # 2. the next release is refused by the API server: Argo CD's sync fails and is
        #    retried (5 times by default, phase Running meanwhile) while the previous
        #    objects keep running
        broken = argocd.ci_release(BROKEN, patches=INVALID)
        app = wait_for(
            "dev's sync to fail and be retried",
            lambda: (
                (op := (a := argocd.application("tvhub-dev"))["status"].get("operationState"))
                and op.get("retryCount", 0) > 0
                and at_revision(op["operation"]["sync"], broken)
                and a
            ),
            logs=scene.logs,
            timeout=90,
        )
        assert app["status"]["sync"]["status"] == "OutOfSync"
        assert "failed to apply" in app["status"]["operationState"]["message"]
        kube.apply(promotion(ns, "broken", BROKEN, timeout="5s"))
        failed = wait_phase(kube, scene.operator, ns, "broken", "Failed", timeout=90)
        assert conditions(failed)["Ready"] == ("False", "UpstreamNotHealthy")
        assert "upstream tvhub-dev is Degraded" in failed["message"], failed["message"]
        assert "failed to apply" in failed["message"]
        degraded = scene.environment_status("tvhub-dev")
        assert degraded["health"] == "Degraded"
        assert not {STUCK, BROKEN} & set(
            re.findall(r"newTag: (\S+)", world.remote_file(PROD_OVERLAY))
        )
    finally:
        # the retries would hold back the next release for minutes
        argocd.terminate_operation("tvhub-dev")
        release_cleanly(scene, RECOVERED)


def test_an_application_with_several_sources(scene: Scene) -> None:
    kube, argocd, ns, world = scene.kube, scene.argocd, scene.namespace, scene.world
    # dev's overlay plus a folder of its own, from one repository; a prod overlay to promote
    commit_files(
        world.repo,
        {
            "k8s/extras/kustomization.yaml": "resources:\n  - settings.yaml\n",
            "k8s/extras/settings.yaml": "apiVersion: v1\nkind: ConfigMap\n"
            "metadata: {name: tvhub-settings}\ndata: {theme: dark}\n",
            "k8s/overlays/multi-prod/kustomization.yaml": world.remote_file(PROD_OVERLAY),
        },
        message="a second source for dev, a prod overlay for it",
    )
    head = release_cleanly(scene, MULTI)
    app = synced_application("tvhub-multi", argocd.namespace, argocd.repo_url, "k8s/overlays/dev")
    source = app["spec"].pop("source")
    app["spec"]["sources"] = [source, {**source, "path": "k8s/extras"}]
    argocd.add_application(app)
    argocd.wait_runs("tvhub-multi", head, dict.fromkeys(world.images(), MULTI))
    status = argocd.application("tvhub-multi")["status"]
    assert status["sync"]["revisions"] == [head, head]
    assert "revision" not in status["sync"]

    # the prod Environment's git, images and registry; health and upstream set per copy
    common = {
        k: v
        for k, v in kube.get("environment", "tvhub-prod", ns)["spec"].items()
        if k not in ("health", "upstream", "overlay")
    }
    multi = {"application": "tvhub-multi", "namespace": argocd.namespace}
    kube.apply(
        environment(ns, "multi-dev", common, overlay="k8s/overlays/dev", health={"argocd": multi}),
        environment(
            ns, "multi-prod", common, overlay="k8s/overlays/multi-prod", upstream="multi-dev"
        ),
    )
    kube.apply(promotion(ns, "multi", MULTI, environment="multi-prod"))
    done = wait_phase(kube, scene.operator, ns, "multi", "Succeeded", timeout=90)
    checks = {c["name"]: c["status"] for c in done["checks"]}
    assert checks["UpstreamHealthy"] == checks["UpstreamVersion"] == "Passed"
    overlay = world.remote_file("k8s/overlays/multi-prod/kustomization.yaml")
    assert overlay.count(f"newTag: {MULTI}") == 2


def test_promotions_kept_in_git_and_synced_by_argocd(scene: Scene) -> None:
    kube, argocd, ns, world = scene.kube, scene.argocd, scene.namespace, scene.world
    # the Promotions Application exactly as docs/gitops.md gives it (ignoreDifferences
    # included), on this world's repository and namespace
    app = gitops_doc(scene.docs_root, "ignoreDifferences:")
    assert app["metadata"]["name"] == "tvhub-promotions"
    app["spec"]["source"]["repoURL"] = argocd.repo_url
    app["spec"]["destination"]["namespace"] = ns
    argocd.add_application(app)

    def promotions_app(health: str, revision: str) -> dict[str, Any] | None:
        a = argocd.application("tvhub-promotions")
        status = a.get("status") or {}
        ok = (
            (status.get("sync") or {}).get("status") == "Synced"
            and at_revision(status["sync"], revision)
            and (status.get("health") or {}).get("status") == health
        )
        return a if ok else None

    def long_lived(version: str, **spec: Any) -> str:
        document = promotion(ns, "tvhub-prod", version, reason="from a pull request", **spec)
        del document["metadata"]["namespace"]
        text = yaml.safe_dump(document, sort_keys=False)
        commit = world.commit_file("promotions/tvhub-prod.yaml", text, message=f"promote {version}")
        argocd.refresh("tvhub-promotions")
        return commit

    # 1. CI pushed the images, dev does not run them yet; a PR merges the Promotion
    world.push_version(FROM_GIT)
    merged = long_lived(FROM_GIT)
    waiting = wait_for(
        "Argo CD to sync the Promotion and show it Progressing",
        lambda: promotions_app("Progressing", merged),
        logs=scene.logs,
        timeout=90,
    )
    [resource] = waiting["status"]["resources"]
    assert (resource["kind"], resource["health"]["status"]) == ("Promotion", "Progressing")
    wait_for(
        "the synced Promotion waiting for dev to run the version",
        lambda: (
            (s := kube.get("promotion", "tvhub-prod", ns).get("status") or {}).get("phase")
            == "Verifying"
            and f"does not run {FROM_GIT}" in s.get("message", "")
        ),
        logs=scene.logs,
    )

    # 2. dev runs it: the operator promotes; Argo CD's health check reports Healthy
    release_cleanly(scene, FROM_GIT)
    done = wait_phase(kube, scene.operator, ns, "tvhub-prod", "Succeeded", timeout=90)
    assert world.remote_file(PROD_OVERLAY).count(f"newTag: {FROM_GIT}") == 2
    message = world.remote_messages()[0]
    assert "Requested-By: argocd-controller" in message, message

    # 3. no drift: the operator's status and annotations on the synced object leave the app
    #    Synced (at the operator's own commit too) and Argo CD never re-synced to heal them
    argocd.refresh("tvhub-promotions")
    healthy = wait_for(
        "the Promotions app Synced and Healthy at the operator's commit",
        lambda: promotions_app("Healthy", done["commit"]),
        logs=scene.logs,
    )
    live = kube.get("promotion", "tvhub-prod", ns)
    # the operator's own watch adds nothing to the object (no kopf progress record): the
    # Application stays Synced because only status moved
    annotations = live["metadata"].get("annotations") or {}
    assert not [
        key
        for key in annotations
        if key.startswith("promotion.gitops.dev/") and key != REQUESTED_BY_ANNOTATION
    ], annotations
    assert live["status"]["phase"] == "Succeeded"
    assert [h["revision"] for h in healthy["status"]["history"]] == [merged]
    assert healthy["status"]["resources"][0]["health"]["status"] == "Healthy"

    # 4. a PR changes the version to an older one dev never ran: a new generation, which the
    # rollback guard refuses (a re-synced old file cannot roll prod back); Degraded
    changed = long_lived(UNTESTED_VERSION, timeout="5s")
    wait_phase(kube, scene.operator, ns, "tvhub-prod", "Failed", timeout=90)
    degraded = wait_for(
        "the Promotions app Degraded",
        lambda: promotions_app("Degraded", changed),
        logs=scene.logs,
    )
    [resource] = degraded["status"]["resources"]
    assert resource["health"]["status"] == "Degraded"
    assert "would roll it back" in resource["health"]["message"]
    assert [h["revision"] for h in degraded["status"]["history"]] == [merged, changed]
