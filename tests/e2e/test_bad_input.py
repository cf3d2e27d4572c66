"""Bad input ends in a status that says what to fix; nothing is committed; no secret leaks."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from promotion_sandbox.world import NEW_VERSION, World, promotion
from support.kube import Kube
from support.operator import OperatorProcess, status_of, wait_for

pytestmark = pytest.mark.e2e


def apply_world(kube: Kube, world: World, ns: str, **options: Any) -> list[dict[str, Any]]:
    objects = world.objects(ns, **options)
    for obj in objects:
        kube.apply(obj)
    return objects


def set_prod_spec(kube: Kube, world: World, ns: str, **changes: Any) -> None:
    """Apply the prod Environment with `changes` (camelCase spec fields) merged in."""
    env = next(o for o in world.objects(ns) if o["metadata"]["name"] == "tvhub-prod")
    env["spec"].update(changes)
    kube.apply(env)


def everything_shown(kube: Kube, ns: str, status: dict[str, Any], operator: OperatorProcess) -> str:
    """All a user or admin can read: the status, the namespace's Events, the operator log."""
    events = kube.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    return json.dumps(status) + events + operator.logs()


def fail_with(
    kube: Kube, operator: OperatorProcess, ns: str, name: str, reason: str, timeout: float = 60
) -> dict[str, Any]:
    status: dict[str, Any] = wait_for(
        f"{name} to fail",
        lambda: (s := status_of(kube, ns, name)).get("phase") == "Failed" and s,
        timeout=timeout,
        logs=operator.logs,
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason), status
    assert "commit" not in status
    return status


def test_unknown_environment(kube: Kube, operator: OperatorProcess, e2e_namespace: str) -> None:
    kube.apply(promotion(e2e_namespace, "p", NEW_VERSION) | {})
    status = fail_with(kube, operator, e2e_namespace, "p", "EnvironmentNotFound")
    assert "'tvhub-prod' not found in namespace" in status["message"]


def test_environment_in_another_namespace_is_not_used(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str, namespace: str
) -> None:
    apply_world(kube, fresh_world, namespace)  # the Environment lives in another namespace
    before = fresh_world.remote_head()
    kube.apply(promotion(e2e_namespace, "p", NEW_VERSION))
    status = fail_with(kube, operator, e2e_namespace, "p", "EnvironmentNotFound")
    assert "its own namespace" in status["message"]
    assert fresh_world.remote_head() == before


def test_version_not_matching_pattern(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    apply_world(kube, fresh_world, e2e_namespace)
    kube.apply(promotion(e2e_namespace, "p", "latest"))
    status = fail_with(kube, operator, e2e_namespace, "p", "VersionDoesNotMatchPattern")
    assert "versionPattern" in status["message"]
    assert [(c["name"], c["status"]) for c in status["checks"]] == [("VersionPattern", "Failed")]


def test_tag_missing_for_one_of_two_images(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    apply_world(kube, fresh_world, e2e_namespace)
    version = "v20250901-1234567"
    fresh_world.registry.push_image(
        "team/tvhub-frontend", version, username="ci", password="registry-s3cret-pw"
    )
    before = fresh_world.remote_head()
    kube.apply(promotion(e2e_namespace, "p", version, timeout="5s"))
    status = fail_with(kube, operator, e2e_namespace, "p", "TagMissing")
    assert "tvhub-backend" in status["message"] and version in status["message"]
    states = {c["target"].split("/")[-1]: c["status"] for c in status["checks"]}
    assert states[f"tvhub-frontend:{version}"] == "Passed"
    assert states[f"tvhub-backend:{version}"] == "Waiting"
    assert fresh_world.remote_head() == before


def test_missing_secret_and_missing_key(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    apply_world(kube, fresh_world, ns)
    kube.kubectl("delete", "secret", "registry-pull", "-n", ns)
    kube.apply(promotion(ns, "p1", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p1", "SecretInvalid")
    assert "Secret 'registry-pull'" in status["message"] and "not found" in status["message"]
    kube.kubectl("create", "secret", "generic", "registry-pull", "-n", ns, "--from-literal=wrong=x")
    kube.apply(promotion(ns, "p2", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p2", "SecretInvalid")
    assert ".dockerconfigjson" in status["message"]


def test_overlay_problems(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    apply_world(kube, fresh_world, ns)
    set_prod_spec(kube, fresh_world, ns, overlay={"path": "k8s/overlays/missing"})
    kube.apply(promotion(ns, "p1", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p1", "InvalidOverlay")
    assert "k8s/overlays/missing/kustomization.yaml" in status["message"]

    set_prod_spec(kube, fresh_world, ns, overlay={"path": "k8s/../../outside"})
    kube.apply(promotion(ns, "p2", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p2", "InvalidOverlay")
    assert ".." in status["message"]


def test_image_not_in_overlay(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    apply_world(kube, fresh_world, ns)
    extra = f"{fresh_world.registry.host}/team/tvhub-frontend"
    # the overlay pins frontend and backend; dev (the upstream) stays as it is
    set_prod_spec(kube, fresh_world, ns, overlay={"path": "k8s/base"}, images=[{"name": extra}])
    before = fresh_world.remote_head()
    kube.apply(promotion(ns, "p", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p", "ImageNotInOverlay")
    assert extra in status["message"]
    assert fresh_world.remote_head() == before


def test_wrong_registry_credentials_never_leak(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    apply_world(kube, fresh_world, ns)
    wrong = "wrong-Pa55word-7731"
    auth = base64.b64encode(f"ci:{wrong}".encode()).decode()
    config = json.dumps({"auths": {fresh_world.registry.host: {"auth": auth}}})
    kube.kubectl("delete", "secret", "registry-pull", "-n", ns)
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "registry-pull",
        "-n",
        ns,
        "--type=kubernetes.io/dockerconfigjson",
        f"--from-literal=.dockerconfigjson={config}",
    )
    kube.apply(promotion(ns, "p", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p", "RegistryAuthFailed")
    assert "refused" in status["message"]
    everything = everything_shown(kube, ns, status, operator)
    for secret in (wrong, auth, "registry-s3cret-pw"):
        assert secret not in everything


def test_git_remote_unreachable_retries_then_fails(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    apply_world(kube, fresh_world, ns)
    password = "git-T0ken-never-shown"
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "git-creds",
        "-n",
        ns,
        "--from-literal=username=bot",
        f"--from-literal=password={password}",
    )
    set_prod_spec(
        kube,
        fresh_world,
        ns,
        git={
            "url": "https://127.0.0.1:9/team/tvhub-gitops.git",
            "secretRef": {"name": "git-creds"},
        },
    )
    kube.apply(promotion(ns, "p", NEW_VERSION, timeout="6s"))
    status = fail_with(kube, operator, ns, "p", "GitUnreachable")
    assert "127.0.0.1:9" in status["message"] and "timed out after 6s" in status["message"]
    assert password not in everything_shown(kube, ns, status, operator)


def test_invalid_git_url_scheme(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    apply_world(kube, fresh_world, ns)
    set_prod_spec(kube, fresh_world, ns, git={"url": "ext::sh%20-c%20touch%20/tmp/pwned"})
    kube.apply(promotion(ns, "p", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p", "InvalidGitURL")
    assert "https://" in status["message"]


def test_invalid_kustomization_yaml(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    apply_world(kube, fresh_world, ns)
    fresh_world.commit_file("k8s/overlays/prod/kustomization.yaml", "images: [unclosed\n")
    kube.apply(promotion(ns, "p", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p", "InvalidOverlay")
    assert "kustomization.yaml" in status["message"]


def test_upstream_unhealthy_waits_then_fails(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    apply_world(kube, fresh_world, ns)
    kube.apply(fresh_world.dev_application(ns, NEW_VERSION, health="Degraded"))
    kube.apply(promotion(ns, "p", NEW_VERSION, timeout="5s"))
    status = fail_with(kube, operator, ns, "p", "UpstreamNotHealthy")
    assert "Degraded" in status["message"]


def test_environment_with_an_invalid_version_pattern(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    apply_world(kube, fresh_world, ns)
    set_prod_spec(kube, fresh_world, ns, versionPattern="^v(unclosed")

    def ready() -> dict[str, Any] | None:
        status = kube.get("environment", "tvhub-prod", ns).get("status") or {}
        found = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return found[0] if found and found[0]["reason"] == "InvalidSpec" else None

    condition = wait_for("the Environment to report its bad spec", ready, logs=operator.logs)
    assert "versionPattern is not a valid regular expression" in condition["message"]
    kube.apply(promotion(ns, "p", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p", "InvalidSpec")
    assert "versionPattern" in status["message"]


def test_upstream_without_health_cannot_prove_a_version(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    objects = apply_world(kube, fresh_world, ns)
    dev = next(
        o for o in objects if o["kind"] == "Environment" and o["metadata"]["name"] == "tvhub-dev"
    )
    del dev["spec"]["health"]
    kube.kubectl("replace", "-f", "-", input_text=json.dumps(dev))
    kube.apply(promotion(ns, "p", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p", "UpstreamHasNoHealth")
    assert "no spec.health" in status["message"]


def test_unknown_upstream(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    apply_world(kube, fresh_world, ns)
    set_prod_spec(kube, fresh_world, ns, upstream="tvhub-staging")
    kube.apply(promotion(ns, "p", NEW_VERSION))
    status = fail_with(kube, operator, ns, "p", "EnvironmentNotFound")
    assert "upstream Environment 'tvhub-staging'" in status["message"]
