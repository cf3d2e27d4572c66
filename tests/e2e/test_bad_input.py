"""Bad input ends in a status that says what to fix; nothing is committed; no secret leaks.

One table: each case breaks one thing in an otherwise good world, then a Promotion must
fail with the case's reason and message, the remote must hold no new commit, and the same
operator must still carry a good Promotion to the end afterwards.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.watch import PhaseWatch
from promotion_sandbox.world import (
    NEW_VERSION,
    OLD_VERSION,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    World,
    promotion,
)
from support.operator import wait_for

pytestmark = pytest.mark.e2e

TAG_ONLY_FOR_FRONTEND = "v20250901-1234567"
WRONG_PASSWORD = "wrong-Pa55word-7731"
GIT_PASSWORD = "git-T0ken-never-shown"


@dataclass
class Scene:
    """One case's world: the cluster, the session operator, a fresh remote, a namespace."""

    kube: Kube
    operator: OperatorProcess
    world: World
    ns: str
    new_namespace: Callable[[str], str]

    def apply_world(self) -> None:
        """The good world's objects in this namespace."""
        self.kube.apply(*self.world.objects(self.ns))

    def set_prod_spec(self, **changes: Any) -> None:
        """Apply the prod Environment with `changes` (camelCase spec fields) merged in."""
        env = next(o for o in self.world.objects(self.ns) if o["metadata"]["name"] == "tvhub-prod")
        env["spec"].update(changes)
        self.kube.apply(env)

    def replace_secret(self, *args: str) -> None:
        """Delete the registry Secret and create `registry-pull` with `kubectl create` args."""
        self.kube.kubectl("delete", "secret", "registry-pull", "-n", self.ns)
        self.kube.kubectl("create", "secret", "generic", "registry-pull", "-n", self.ns, *args)

    def everything_shown(self, status: dict[str, Any]) -> str:
        """All a user or admin can read: the status, the namespace's Events, the operator log."""
        events = self.kube.kubectl("get", "events", "-n", self.ns, "-o", "json").stdout
        return json.dumps(status) + events + self.operator.logs()


# --- what each case breaks ------------------------------------------------------------------


def no_environment(_scene: Scene) -> None:
    """Nothing applied: the Promotion names an Environment that does not exist."""


def environment_in_another_namespace(scene: Scene) -> None:
    other = scene.new_namespace("t")
    scene.kube.apply(*scene.world.objects(other))


def good_world(scene: Scene) -> None:
    """The world as it should be: the Promotion itself is what is wrong."""
    scene.apply_world()


def tag_only_for_frontend(scene: Scene) -> None:
    scene.apply_world()
    scene.world.registry.push_image(
        "team/tvhub-frontend",
        TAG_ONLY_FOR_FRONTEND,
        username=REGISTRY_USER,
        password=REGISTRY_PASSWORD,
    )


def secret_deleted(scene: Scene) -> None:
    scene.apply_world()
    scene.kube.kubectl("delete", "secret", "registry-pull", "-n", scene.ns)


def secret_without_the_key(scene: Scene) -> None:
    scene.apply_world()
    scene.replace_secret("--from-literal=wrong=x")


def wrong_registry_password(scene: Scene) -> None:
    scene.apply_world()
    config = json.dumps({"auths": {scene.world.registry.host: {"auth": wrong_auth()}}})
    scene.replace_secret(
        "--type=kubernetes.io/dockerconfigjson", f"--from-literal=.dockerconfigjson={config}"
    )


def wrong_auth() -> str:
    """The base64 `user:password` of the wrong registry password."""
    return base64.b64encode(f"{REGISTRY_USER}:{WRONG_PASSWORD}".encode()).decode()


def overlay_folder_missing(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(overlay={"path": "k8s/overlays/missing"})


def overlay_path_escapes(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(overlay={"path": "k8s/../../outside"})


def image_not_in_overlay(scene: Scene) -> None:
    scene.apply_world()
    # the base pins no image; dev (the upstream) stays as it is
    extra = f"{scene.world.registry.host}/team/tvhub-frontend"
    scene.set_prod_spec(overlay={"path": "k8s/base"}, images=[{"name": extra}])


def git_remote_unreachable(scene: Scene) -> None:
    scene.apply_world()
    scene.kube.kubectl(
        "create",
        "secret",
        "generic",
        "git-creds",
        "-n",
        scene.ns,
        "--from-literal=username=bot",
        f"--from-literal=password={GIT_PASSWORD}",
    )
    scene.set_prod_spec(
        git={
            "url": "https://127.0.0.1:9/team/tvhub-gitops.git",
            "secretRef": {"name": "git-creds"},
        }
    )


def git_url_with_a_command(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(git={"url": "ext::sh%20-c%20touch%20/tmp/pwned"})


def kustomization_not_yaml(scene: Scene) -> None:
    scene.apply_world()
    scene.world.commit_file("k8s/overlays/prod/kustomization.yaml", "images: [unclosed\n")


def upstream_degraded(scene: Scene) -> None:
    scene.apply_world()
    scene.kube.apply(scene.world.dev_application(scene.ns, NEW_VERSION, health="Degraded"))


def invalid_version_pattern(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(versionPattern="^v(unclosed")

    def ready() -> dict[str, Any] | None:
        status = scene.kube.get("environment", "tvhub-prod", scene.ns).get("status") or {}
        found = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return found[0] if found and found[0]["reason"] == "InvalidSpec" else None

    # the Environment says it first, before any Promotion asks
    condition = wait_for("the Environment to report its bad spec", ready, logs=scene.operator.logs)
    assert "versionPattern is not a valid regular expression" in condition["message"]


def upstream_without_health(scene: Scene) -> None:
    scene.apply_world()
    # a JSON patch carries no resourceVersion: the operator's status writes cannot conflict
    remove = json.dumps([{"op": "remove", "path": "/spec/health"}])
    scene.kube.kubectl(
        "patch", "environment", "tvhub-dev", "-n", scene.ns, "--type=json", f"--patch={remove}"
    )


def unknown_upstream(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(upstream="tvhub-staging")


# --- what some cases check besides the reason and the message ------------------------------


def only_the_pattern_check_ran(_scene: Scene, status: dict[str, Any]) -> None:
    assert [(c["name"], c["status"]) for c in status["checks"]] == [("VersionPattern", "Failed")]


def frontend_found_backend_waited(_scene: Scene, status: dict[str, Any]) -> None:
    states = {c["target"].split("/")[-1]: c["status"] for c in status["checks"]}
    assert states[f"tvhub-frontend:{TAG_ONLY_FOR_FRONTEND}"] == "Passed"
    assert states[f"tvhub-backend:{TAG_ONLY_FOR_FRONTEND}"] == "Waiting"


def no_registry_secret_shown(scene: Scene, status: dict[str, Any]) -> None:
    everything = scene.everything_shown(status)
    for secret in (WRONG_PASSWORD, wrong_auth(), REGISTRY_PASSWORD):
        assert secret not in everything


def no_git_password_shown(scene: Scene, status: dict[str, Any]) -> None:
    assert GIT_PASSWORD not in scene.everything_shown(status)


@dataclass(frozen=True)
class Case:
    """Break something, ask for `version`, expect `reason` and every message fragment.

    `{registry}` in a fragment stands for the world's registry host.
    """

    id: str
    breaks: Callable[[Scene], None]
    reason: str
    fragments: tuple[str, ...]
    version: str = NEW_VERSION
    spec: dict[str, str] = field(default_factory=dict)
    also: Callable[[Scene, dict[str, Any]], None] | None = None


CASES = [
    Case(
        "unknown-environment",
        no_environment,
        "EnvironmentNotFound",
        ("'tvhub-prod' not found in namespace",),
    ),
    Case(
        "environment-in-another-namespace-is-not-used",
        environment_in_another_namespace,
        "EnvironmentNotFound",
        ("its own namespace",),
    ),
    Case(
        "version-not-matching-pattern",
        good_world,
        "VersionDoesNotMatchPattern",
        ("versionPattern",),
        version="latest",
        also=only_the_pattern_check_ran,
    ),
    Case(
        "tag-missing-for-one-of-two-images",
        tag_only_for_frontend,
        "TagMissing",
        ("tvhub-backend", TAG_ONLY_FOR_FRONTEND),
        version=TAG_ONLY_FOR_FRONTEND,
        spec={"timeout": "5s"},
        also=frontend_found_backend_waited,
    ),
    Case(
        "missing-secret",
        secret_deleted,
        "SecretInvalid",
        ("Secret 'registry-pull'", "not found"),
    ),
    Case("secret-missing-its-key", secret_without_the_key, "SecretInvalid", (".dockerconfigjson",)),
    Case(
        "overlay-folder-missing",
        overlay_folder_missing,
        "InvalidOverlay",
        ("k8s/overlays/missing/kustomization.yaml",),
    ),
    Case("overlay-path-escapes", overlay_path_escapes, "InvalidOverlay", ("..",)),
    Case(
        "image-not-in-overlay",
        image_not_in_overlay,
        "ImageNotInOverlay",
        ("{registry}/team/tvhub-frontend",),
    ),
    Case(
        "wrong-registry-credentials-never-leak",
        wrong_registry_password,
        "RegistryAuthFailed",
        ("refused",),
        also=no_registry_secret_shown,
    ),
    Case(
        "git-remote-unreachable-retries-then-fails",
        git_remote_unreachable,
        "GitUnreachable",
        ("127.0.0.1:9", "timed out after 6s"),
        spec={"timeout": "6s"},
        also=no_git_password_shown,
    ),
    Case("invalid-git-url-scheme", git_url_with_a_command, "InvalidGitURL", ("https://",)),
    Case(
        "invalid-kustomization-yaml",
        kustomization_not_yaml,
        "InvalidOverlay",
        ("kustomization.yaml",),
    ),
    Case(
        "upstream-unhealthy-waits-then-fails",
        upstream_degraded,
        "UpstreamNotHealthy",
        ("Degraded",),
        spec={"timeout": "5s"},
    ),
    Case(
        "environment-with-an-invalid-version-pattern",
        invalid_version_pattern,
        "InvalidSpec",
        ("versionPattern",),
    ),
    Case(
        "upstream-without-health-cannot-prove-a-version",
        upstream_without_health,
        "UpstreamHasNoHealth",
        ("no spec.health",),
    ),
    Case(
        "unknown-upstream",
        unknown_upstream,
        "EnvironmentNotFound",
        ("upstream Environment 'tvhub-staging'",),
    ),
]


@dataclass
class Healthy:
    """A good world in a namespace of its own, to show the operator still works.

    Prod swings between two versions already in the registry: each swing is a real
    promotion (verification, commit, push) and costs no image upload.
    """

    kube: Kube
    world: World
    ns: str
    watch: PhaseWatch
    prod: str = OLD_VERSION
    dev: str = NEW_VERSION

    def promote_the_other_version(self, operator: OperatorProcess, case: str) -> None:
        """Dev runs the version prod does not; a Promotion carries it to prod."""
        version = NEW_VERSION if self.prod == OLD_VERSION else OLD_VERSION
        if self.dev != version:
            self.kube.apply(self.world.dev_application(self.ns, version))
            self.dev = version
        before = self.world.remote_head()
        # swinging back is a rollback (the guard refuses it otherwise): said on purpose
        self.kube.apply(promotion(self.ns, f"good-{case}", version, rollback=True))
        status = final_status(self.watch, operator, f"good-{case}")
        assert status["phase"] == "Succeeded", status
        assert status["commit"] == self.world.remote_head() != before
        self.prod = version


@pytest.fixture(scope="module")
def healthy(
    kube: Kube, world: World, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Healthy]:
    """One good world for the module, watched by the session operator."""
    mine = world.fork(tmp_path_factory.mktemp("healthy"))
    with kube.namespace("e2e") as ns, PhaseWatch(kube, ns) as watch:
        kube.apply(*mine.objects(ns))
        yield Healthy(kube, mine, ns, watch)


FINAL = frozenset({"Succeeded", "Failed", "Superseded"})


def final_status(watch: PhaseWatch, operator: OperatorProcess, name: str) -> dict[str, Any]:
    """The status Promotion `name` ends with, as the watch saw it written."""
    try:
        done = watch.wait(name, FINAL, timeout=60)
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{operator.logs()[-4000:]}") from None
    status: dict[str, Any] = done.obj["status"]
    return status


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_clearly_and_commits_nothing(
    case: Case,
    kube: Kube,
    operator: OperatorProcess,
    fresh_world: World,
    e2e_namespace: str,
    new_namespace: Callable[[str], str],
    healthy: Healthy,
) -> None:
    scene = Scene(kube, operator, fresh_world, e2e_namespace, new_namespace)
    case.breaks(scene)
    before = fresh_world.remote_head()
    with PhaseWatch(kube, e2e_namespace) as watch:
        kube.apply(promotion(e2e_namespace, "p", case.version, **case.spec))
        status = final_status(watch, operator, "p")

    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["status"], ready["reason"]) == (
        "Failed",
        "False",
        case.reason,
    ), status
    assert "commit" not in status
    for fragment in case.fragments:
        assert fragment.format(registry=fresh_world.registry.host) in status["message"], status
    if case.also is not None:
        case.also(scene, status)
    assert fresh_world.remote_head() == before
    healthy.promote_the_other_version(operator, case.id)
