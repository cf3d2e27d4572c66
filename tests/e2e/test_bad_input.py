"""Bad input ends in a status that says what to fix; nothing is committed; no secret leaks.

Two tables. `CASES`: each breaks one thing in an otherwise good world (its own namespace
and remote); a Promotion must fail with the case's reason and message, and the remote must
hold no new commit. All cases run at once against the session operator, while a good
world in a namespace of its own is promoted again and again: the operator keeps serving
others while it refuses the bad. `ADMISSION`: input the CRD schema refuses, each with the
API server's message.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from promotion_sandbox.gitserver import commit_files
from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.watch import PhaseWatch
from promotion_sandbox.world import (
    NEW_VERSION,
    OLD_VERSION,
    PROD_OVERLAY,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    UNTESTED_VERSION,
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
        self.set_spec("tvhub-prod", **changes)

    def set_spec(self, name: str, **changes: Any) -> None:
        """Apply Environment `name` with `changes` (camelCase spec fields) merged in."""
        env = next(
            o
            for o in self.world.objects(self.ns)
            if o["kind"] == "Environment" and o["metadata"]["name"] == name
        )
        env["spec"].update(changes)
        self.kube.apply(env)

    def dockerconfigjson(self, document: str) -> None:
        """Replace the registry Secret's .dockerconfigjson with this text, in an Opaque
        Secret (the API server checks the JSON of typed ones; a tenant may use either)."""
        self.replace_secret(f"--from-literal=.dockerconfigjson={document}")

    def secret(self, name: str, data: dict[str, bytes]) -> None:
        """Create a Secret with these raw bytes (any bytes, not only UTF-8)."""
        encoded = {key: base64.b64encode(value).decode() for key, value in data.items()}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": self.ns},
            "data": encoded,
        }
        # create, not apply: apply would copy a big value into an annotation
        self.kube.kubectl("create", "-f", "-", input_text=json.dumps(secret))

    def prod_overlay(self, text: str) -> None:
        """Commit the prod overlay with this text (as a person would)."""
        self.world.commit_file(PROD_OVERLAY, text)

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


def dev_runs(scene: Scene, app: dict[str, Any]) -> None:
    """The good world, with dev's Argo CD Application replaced by `app`."""
    scene.apply_world()
    scene.kube.apply(app)


def upstream_progressing(scene: Scene) -> None:
    dev_runs(scene, scene.world.dev_application(scene.ns, NEW_VERSION, health="Progressing"))


def upstream_runs_the_version_on_one_image_only(scene: Scene) -> None:
    app = scene.world.dev_application(scene.ns, NEW_VERSION)
    frontend, backend = scene.world.images()
    app["status"]["summary"]["images"] = [f"{frontend}:{NEW_VERSION}", f"{backend}:{OLD_VERSION}"]
    dev_runs(scene, app)


def upstream_application_missing(scene: Scene) -> None:
    scene.apply_world()
    scene.kube.kubectl("delete", "application", "tvhub-dev", "-n", scene.ns)


def upstream_health_in_another_namespace(scene: Scene) -> None:
    scene.apply_world()
    scene.set_spec(
        "tvhub-dev", health={"argocd": {"application": "tvhub-dev", "namespace": "payroll"}}
    )


def upstream_deployments_in_another_namespace(scene: Scene) -> None:
    scene.apply_world()
    scene.set_spec("tvhub-dev", health={"deployments": {"namespace": "kube-system"}})


def upstream_http_health_unreachable(scene: Scene) -> None:
    scene.apply_world()
    scene.set_spec("tvhub-dev", health={"http": {"url": "http://127.0.0.1:9/healthz"}})


def pattern_that_needs_backtracking(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(versionPattern=r"^(v\d+)-\1$")


def a_custom_pattern(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(versionPattern=r"^release-[0-9]+$")


def registry_without_credentials(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(registry={"insecure": True})


def registry_expected_over_tls(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(registry={"secretRef": {"name": "registry-pull"}, "insecure": False})


def image_unknown_to_the_registry(scene: Scene) -> None:
    scene.apply_world()
    ghost = f"{scene.world.registry.host}/team/tvhub-ghost"
    images = [{"name": image} for image in [*scene.world.images(), ghost]]
    scene.set_prod_spec(
        images=images, overlay={"path": "k8s/overlays/prod", "addMissingImages": True}
    )


def git_branch_missing(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(git={"url": scene.world.git_url, "branch": "release-2025"})


def git_repository_missing(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(git={"url": "file:///nonexistent/team/tvhub-gitops.git"})


def git_secret_missing(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(git={"url": scene.world.git_url, "secretRef": {"name": "git-creds"}})


def git_secret(
    data: dict[str, bytes], url: str = "https://127.0.0.1:9/team/gitops.git"
) -> Callable[[Scene], None]:
    """A git Secret with `data` for an HTTPS (or SSH) remote that is never reached."""

    def breaks(scene: Scene) -> None:
        scene.apply_world()
        scene.secret("git-creds", data)
        scene.set_prod_spec(git={"url": url, "secretRef": {"name": "git-creds"}})

    return breaks


def git_url(url: str) -> Callable[[Scene], None]:
    """prod's repository at `url` (that the operator must refuse before any git runs)."""

    def breaks(scene: Scene) -> None:
        scene.apply_world()
        scene.set_prod_spec(git={"url": url})

    return breaks


def dockerconfigjson(document: str) -> Callable[[Scene], None]:
    """The registry Secret's .dockerconfigjson replaced by `document`."""

    def breaks(scene: Scene) -> None:
        scene.apply_world()
        scene.dockerconfigjson(document)

    return breaks


def dockerconfig_bytes(raw: bytes) -> Callable[[Scene], None]:
    def breaks(scene: Scene) -> None:
        scene.apply_world()
        scene.kube.kubectl("delete", "secret", "registry-pull", "-n", scene.ns)
        scene.secret("registry-pull", {".dockerconfigjson": raw})

    return breaks


def auths_for_another_registry(scene: Scene) -> None:
    scene.apply_world()
    auth = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    scene.dockerconfigjson(json.dumps({"auths": {"registry.example.com": {"auth": auth}}}))


def prod_overlay(text: str) -> Callable[[Scene], None]:
    """The prod overlay committed with `text`."""

    def breaks(scene: Scene) -> None:
        scene.apply_world()
        scene.prod_overlay(text)

    return breaks


def alias_bomb(levels: int = 14) -> str:
    lines = ["a0: &a0 [x, x, x]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [*a{level - 1}, *a{level - 1}, *a{level - 1}]")
    return "\n".join(lines) + f"\nimages: *a{levels}\n"


def overlay_is_a_symlink_out_of_the_repository(scene: Scene) -> None:
    scene.apply_world()
    commit_files(scene.world.repo, {}, symlinks={PROD_OVERLAY: "/etc/passwd"})


def kustomization_is_a_folder(scene: Scene) -> None:
    scene.apply_world()
    commit_files(scene.world.repo, {}, delete=(PROD_OVERLAY,))
    commit_files(scene.world.repo, {f"{PROD_OVERLAY}/README.md": "a folder, not a file\n"})


def kustomization_named_yml(scene: Scene) -> None:
    scene.apply_world()
    text = scene.world.remote_file(PROD_OVERLAY)
    commit_files(
        scene.world.repo,
        {PROD_OVERLAY.replace(".yaml", ".yml"): text},
        delete=(PROD_OVERLAY,),
    )


def overlay_path_is_a_file(scene: Scene) -> None:
    scene.apply_world()
    scene.set_prod_spec(overlay={"path": PROD_OVERLAY})


def overlay_pins_another_image_twice(scene: Scene) -> None:
    scene.apply_world()
    text = scene.world.remote_file(PROD_OVERLAY)
    frontend = scene.world.images()[0]
    scene.prod_overlay(text + f"  - name: {frontend}\n    newTag: {OLD_VERSION}\n")


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
    Case(
        "upstream-progressing-waits-then-fails",
        upstream_progressing,
        "UpstreamNotHealthy",
        ("Progressing", "timed out after 5s"),
        spec={"timeout": "5s"},
    ),
    Case(
        "upstream-runs-the-version-on-one-image-only",
        upstream_runs_the_version_on_one_image_only,
        "UpstreamVersionMismatch",
        ("tvhub-backend", OLD_VERSION),
        spec={"timeout": "5s"},
    ),
    Case(
        "upstream-never-ran-the-version",
        good_world,
        "UpstreamVersionMismatch",
        (UNTESTED_VERSION,),
        version=UNTESTED_VERSION,
        spec={"timeout": "5s"},
    ),
    Case(
        "upstream-application-missing",
        upstream_application_missing,
        "UpstreamNotHealthy",
        ("Application", "tvhub-dev", "not found"),
        spec={"timeout": "5s"},
    ),
    Case(
        "upstream-health-in-another-teams-namespace",
        upstream_health_in_another_namespace,
        "HealthNamespaceForbidden",
        ("health.argocd.namespace 'payroll' is not allowed",),
    ),
    Case(
        "upstream-deployments-in-another-namespace",
        upstream_deployments_in_another_namespace,
        "HealthNamespaceForbidden",
        ("health.deployments.namespace 'kube-system' is not allowed",),
    ),
    Case(
        "upstream-http-health-unreachable",
        upstream_http_health_unreachable,
        "UpstreamNotHealthy",
        ("127.0.0.1:9",),
        spec={"timeout": "5s"},
    ),
    Case(
        "version-pattern-that-needs-backtracking",
        pattern_that_needs_backtracking,
        "InvalidSpec",
        ("versionPattern",),
    ),
    Case(
        "version-outside-a-custom-pattern",
        a_custom_pattern,
        "VersionDoesNotMatchPattern",
        ("^release-[0-9]+$",),
        also=only_the_pattern_check_ran,
    ),
    Case(
        "registry-without-credentials",
        registry_without_credentials,
        "RegistryAuthFailed",
        ("denied anonymous access", "spec.registry.secretRef"),
    ),
    Case(
        "registry-expected-over-tls",
        registry_expected_over_tls,
        "RegistryUnavailable",
        ("{registry}",),
        spec={"timeout": "5s"},
    ),
    Case(
        "image-unknown-to-the-registry",
        image_unknown_to_the_registry,
        "TagMissing",
        ("tvhub-ghost",),
        spec={"timeout": "5s"},
    ),
    Case("git-branch-missing", git_branch_missing, "GitNotFound", ("release-2025",)),
    Case(
        "git-repository-missing",
        git_repository_missing,
        "GitNotFound",
        ("/nonexistent/team/tvhub-gitops.git",),
    ),
    Case("git-secret-missing", git_secret_missing, "SecretInvalid", ("'git-creds'", "not found")),
    Case(
        "git-secret-without-a-password",
        git_secret({"username": b"bot"}),
        "SecretInvalid",
        ("password",),
    ),
    Case(
        "git-secret-not-utf8",
        git_secret({"username": b"bot", "password": b"\xff\xfe-not-text"}),
        "SecretInvalid",
        ("UTF-8",),
    ),
    Case(
        "git-ssh-secret-without-known-hosts",
        git_secret(
            {"ssh-privatekey": b"-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"},
            url="ssh://git@127.0.0.1:9/team/gitops.git",
        ),
        "SecretInvalid",
        ("known_hosts",),
    ),
    Case(
        "git-url-with-a-password-in-it",
        git_url(f"https://bot:{GIT_PASSWORD}@127.0.0.1:9/team/gitops.git"),
        "InvalidGitURL",
        ("Secret",),
        also=no_git_password_shown,
    ),
    Case(
        "git-url-git-protocol",
        git_url("git://127.0.0.1/team/gitops.git"),
        "InvalidGitURL",
        ("https://",),
    ),
    Case(
        "dockerconfigjson-not-json",
        dockerconfigjson("{auths: nope"),
        "SecretInvalid",
        ("not valid JSON",),
    ),
    Case(
        "dockerconfigjson-without-auths",
        dockerconfigjson(json.dumps({"credsStore": "desktop"})),
        "SecretInvalid",
        ('no "auths" object',),
    ),
    Case(
        "dockerconfigjson-auth-not-base64",
        dockerconfigjson(json.dumps({"auths": {"r.example.com": {"auth": "***"}}})),
        "SecretInvalid",
        ("not base64",),
    ),
    Case(
        "dockerconfigjson-auth-without-a-colon",
        dockerconfigjson(
            json.dumps({"auths": {"r.example.com": {"auth": base64.b64encode(b"ci").decode()}}})
        ),
        "SecretInvalid",
        ('"username:password"',),
    ),
    Case(
        "dockerconfigjson-identity-token-only",
        dockerconfigjson(json.dumps({"auths": {"r.example.com": {"identitytoken": "t0k"}}})),
        "SecretInvalid",
        ("identity tokens are not supported",),
    ),
    Case(
        "dockerconfigjson-nested-deeply",
        dockerconfig_bytes(b"[" * 200_000 + b"]" * 200_000),
        "SecretInvalid",
        ("nested too deeply",),
    ),
    Case(
        "dockerconfigjson-key-that-is-no-url",
        dockerconfigjson(json.dumps({"auths": {"http://[": {"auth": wrong_auth()}}})),
        "SecretInvalid",
        ("with no host",),
        also=no_registry_secret_shown,
    ),
    Case(
        "dockerconfigjson-auth-not-ascii",
        dockerconfigjson(json.dumps({"auths": {"r.example.com": {"auth": "ĉi:pässwörd"}}})),
        "SecretInvalid",
        ("not base64",),
    ),
    Case(
        "dockerconfigjson-not-utf8",
        dockerconfig_bytes(b'{"auths": {"\xff": {}}}'),
        "SecretInvalid",
        ("not UTF-8",),
    ),
    Case(
        "dockerconfigjson-for-another-registry-only",
        auths_for_another_registry,
        "RegistryAuthFailed",
        ("denied anonymous access",),
    ),
    Case(
        "overlay-alias-bomb",
        prod_overlay(alias_bomb()),
        "InvalidOverlay",
        ("kustomization.yaml",),
    ),
    Case(
        "overlay-nested-too-deep",
        prod_overlay("images:\n" + "- " * 3000 + "x\n"),
        "InvalidOverlay",
        ("nested",),
    ),
    Case(
        "overlay-too-big",
        prod_overlay("# " + "x" * (1 << 20) + "\nimages: []\n"),
        "InvalidOverlay",
        ("more than the 1048576",),
    ),
    Case(
        "overlay-images-not-a-list",
        prod_overlay("images: {name: tvhub}\n"),
        "InvalidOverlay",
        ("images",),
    ),
    Case(
        "overlay-is-a-symlink-out-of-the-repository",
        overlay_is_a_symlink_out_of_the_repository,
        "InvalidOverlay",
        ("outside the repository",),
    ),
    Case(
        "kustomization-is-a-folder",
        kustomization_is_a_folder,
        "InvalidOverlay",
        ("not a file",),
    ),
    Case(
        "kustomization-named-yml",
        kustomization_named_yml,
        "InvalidOverlay",
        ("k8s/overlays/prod/kustomization.yaml",),
    ),
    Case(
        "overlay-path-is-a-file",
        overlay_path_is_a_file,
        "InvalidOverlay",
        ("kustomization.yaml/kustomization.yaml",),
    ),
    Case(
        "overlay-pins-an-image-twice",
        overlay_pins_another_image_twice,
        "InvalidOverlay",
        ("tvhub-frontend",),
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
    promoted: list[str] = field(default_factory=list)

    def promote_the_other_version(self, operator: OperatorProcess) -> None:
        """Dev runs the version prod does not; a Promotion carries it to prod."""
        version = NEW_VERSION if self.prod == OLD_VERSION else OLD_VERSION
        if self.dev != version:
            self.kube.apply(self.world.dev_application(self.ns, version))
            self.dev = version
        before = self.world.remote_head()
        name = f"good-{len(self.promoted)}"
        # swinging back is a rollback (the guard refuses it otherwise): said on purpose
        self.kube.apply(promotion(self.ns, name, version, rollback=True))
        status = final_status(self.watch, operator, name)
        assert status["phase"] == "Succeeded", status
        assert status["commit"] == self.world.remote_head() != before
        self.prod = version
        self.promoted.append(status["commit"])


FINAL = frozenset({"Succeeded", "Failed", "Superseded"})


def final_status(watch: PhaseWatch, operator: OperatorProcess, name: str) -> dict[str, Any]:
    """The status Promotion `name` ends with, as the watch saw it written."""
    try:
        done = watch.wait(name, FINAL, timeout=60)
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{operator.logs()[-4000:]}") from None
    status: dict[str, Any] = done.obj["status"]
    return status


@dataclass
class Outcome:
    """How one case ended: its final status, the remote before and after, a failed check."""

    status: dict[str, Any] | None = None
    before: str = ""
    after: str = ""
    registry: str = ""
    problem: str = ""  # a setup failure or an `also` check that failed


class Statuses:
    """Every Promotion's status in the cluster, from one `kubectl get -A` a second (one
    poller for all cases, rather than one per case)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.seen: dict[tuple[str, str], dict[str, Any]] = {}
        self.changed = threading.Condition()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stopped.wait(1.0):
            listed = self.kube.kubectl("get", "promotions", "-A", "-o", "json", check=False)
            if listed.returncode != 0:
                continue
            with self.changed:
                for item in json.loads(listed.stdout)["items"]:
                    meta = item["metadata"]
                    self.seen[(meta["namespace"], meta["name"])] = item.get("status") or {}
                self.changed.notify_all()

    def wait_final(self, ns: str, name: str, timeout: float) -> dict[str, Any]:
        """The final status of Promotion ns/name; AssertionError with the last one seen."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while (self.seen.get((ns, name)) or {}).get("phase") not in FINAL:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"not finished in {timeout:.0f} s: {self.seen.get((ns, name))}"
                    )
                self.changed.wait(left)
            return self.seen[(ns, name)]


def run_case(case: Case, scene: Scene, statuses: Statuses) -> Outcome:
    """Break, promote, wait for the end; run the case's extra check while its namespace
    lives, then delete the namespace (its Environments would cost refreshes)."""
    outcome = Outcome(registry=scene.world.registry.host)
    try:
        case.breaks(scene)
        outcome.before = scene.world.remote_head()
        scene.kube.apply(promotion(scene.ns, "p", case.version, **case.spec))
        outcome.status = statuses.wait_final(scene.ns, "p", timeout=60)
        outcome.after = scene.world.remote_head()
        if case.also is not None:
            case.also(scene, outcome.status)
    except Exception as error:  # reported by the case's own test
        outcome.problem = f"{type(error).__name__}: {error}"
    scene.kube.kubectl("delete", "namespace", scene.ns, "--wait=false", check=False)
    return outcome


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest,
    kube: Kube,
    operator: OperatorProcess,
    world: World,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Outcome], Healthy]]:
    """Every selected case at once (`-k` selects), each in its own namespace and remote,
    while a good world keeps being promoted; then one more good promotion after the last."""
    selected = {
        param.id
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and hasattr(item, "callspec")
        and isinstance(param := item.callspec.params.get("case"), Case)
    }
    made: list[str] = []
    lock = threading.Lock()

    def new_namespace(prefix: str) -> str:
        name = kube.create_namespace(f"{prefix}-{uuid.uuid4().hex[:8]}")
        with lock:
            made.append(name)
        return name

    def scene_for(case: Case) -> Scene:
        fork = world.fork(Path(tmp_path_factory.mktemp(case.id[:40])))
        return Scene(kube, operator, fork, new_namespace("e2e"), new_namespace)

    mine = world.fork(tmp_path_factory.mktemp("healthy"))
    ns = new_namespace("e2e")
    statuses = Statuses(kube)
    statuses.thread.start()
    try:
        with PhaseWatch(kube, ns) as watch:
            kube.apply(*mine.objects(ns))
            healthy = Healthy(kube, mine, ns, watch)
            with ThreadPoolExecutor(max_workers=8) as pool:
                futures = {
                    case.id: pool.submit(lambda c: run_case(c, scene_for(c), statuses), case)
                    for case in CASES
                    if case.id in selected
                }
                while not all(f.done() for f in futures.values()):
                    healthy.promote_the_other_version(operator)  # served meanwhile
                results = {name: future.result() for name, future in futures.items()}
            healthy.promote_the_other_version(operator)  # and after
            yield results, healthy
    finally:
        statuses.stopped.set()
        for name in made:
            kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_clearly_and_commits_nothing(
    case: Case, outcomes: tuple[dict[str, Outcome], Healthy]
) -> None:
    outcome = outcomes[0][case.id]
    assert not outcome.problem, outcome.problem
    status = outcome.status
    assert status is not None
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["status"], ready["reason"]) == (
        "Failed",
        "False",
        case.reason,
    ), status
    assert "commit" not in status
    for fragment in case.fragments:
        assert fragment.format(registry=outcome.registry) in status["message"], status
    assert outcome.after == outcome.before


def test_the_operator_kept_promoting_others_meanwhile(
    outcomes: tuple[dict[str, Outcome], Healthy],
) -> None:
    healthy = outcomes[1]
    # at least one good promotion while the bad ones were refused, and one after
    assert len(healthy.promoted) >= 2
    assert len(set(healthy.promoted)) == len(healthy.promoted)
