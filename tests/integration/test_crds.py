"""The API server itself validates Promotions and Environments (real kube-apiserver, kubectl)."""

from __future__ import annotations

from typing import Any

import pytest

from support.kube import Kube

pytestmark = pytest.mark.integration


def promotion(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Promotion",
        "metadata": {"name": "p1", "namespace": namespace},
        "spec": spec,
    }


def environment(namespace: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "git": {"url": "https://git.example.com/team/gitops.git"},
        "overlay": {"path": "k8s/overlays/prod"},
        "images": [{"name": "registry.example.com/team/app"}],
    }
    spec.update(overrides)
    return {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": "prod", "namespace": namespace},
        "spec": spec,
    }


def test_valid_promotion_is_stored_with_defaults(kube: Kube, namespace: str) -> None:
    kube.apply(promotion(namespace, environment="prod", version="v20250819-f3b8541"))
    stored = kube.get("promotion", "p1", namespace)
    assert stored["spec"]["timeout"] == "30m"
    assert stored["spec"]["dryRun"] is False


def test_missing_environment_is_rejected(kube: Kube, namespace: str) -> None:
    result = kube.apply(promotion(namespace, version="v20250819-f3b8541"), check=False)
    assert result.returncode != 0
    assert "spec.environment: Required value" in result.stderr


def test_malformed_version_is_rejected(kube: Kube, namespace: str) -> None:
    result = kube.apply(promotion(namespace, environment="prod", version="v1 ; rm"), check=False)
    assert result.returncode != 0
    assert "spec.version" in result.stderr and "should match" in result.stderr


def test_unknown_field_is_rejected(kube: Kube, namespace: str) -> None:
    result = kube.apply(
        promotion(namespace, environment="prod", version="v20250819-f3b8541", verison="x"),
        check=False,
    )
    assert result.returncode != 0
    assert 'unknown field "spec.verison"' in result.stderr


def test_bad_timeout_is_rejected(kube: Kube, namespace: str) -> None:
    result = kube.apply(
        promotion(namespace, environment="prod", version="v20250819-f3b8541", timeout="soon"),
        check=False,
    )
    assert result.returncode != 0
    assert "spec.timeout" in result.stderr


def test_a_timeout_beyond_a_week_is_rejected_by_cel(kube: Kube, namespace: str) -> None:
    ok = kube.apply(
        promotion(namespace, environment="prod", version="v1", timeout="168h"), check=False
    )
    assert ok.returncode == 0, ok.stderr
    result = kube.apply(
        promotion(namespace, environment="prod", version="v2", timeout="169h"), check=False
    )
    assert result.returncode != 0
    assert "timeout is at most 168h" in result.stderr


def test_environment_is_immutable(kube: Kube, namespace: str) -> None:
    kube.apply(promotion(namespace, environment="prod", version="v20250819-f3b8541"))
    result = kube.apply(
        promotion(namespace, environment="staging", version="v20250819-f3b8541"), check=False
    )
    assert result.returncode != 0
    assert "environment is immutable" in result.stderr


def test_soak_without_upstream_is_rejected_by_cel(kube: Kube, namespace: str) -> None:
    result = kube.apply(environment(namespace, soak="10m"), check=False)
    assert result.returncode != 0
    assert "soak needs an upstream environment" in result.stderr


def test_health_needs_a_source(kube: Kube, namespace: str) -> None:
    result = kube.apply(environment(namespace, health={}), check=False)
    assert result.returncode != 0
    assert "set at least one of health.argocd" in result.stderr


def test_git_url_starting_with_dash_is_rejected(kube: Kube, namespace: str) -> None:
    result = kube.apply(
        environment(namespace, git={"url": "--upload-pack=touch /tmp/x"}), check=False
    )
    assert result.returncode != 0
    assert "spec.git.url" in result.stderr


def test_explain_is_useful(kube: Kube) -> None:
    out = kube.kubectl("explain", "promotion.spec").stdout
    assert "Environment in the same namespace" in out
    assert "Give up waiting for checks" in out
    assert "at most 168h" in out


def test_printer_columns(kube: Kube, namespace: str) -> None:
    kube.apply(promotion(namespace, environment="prod", version="v20250819-f3b8541"))
    header = kube.kubectl("get", "promotions", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "ENVIRONMENT", "VERSION", "PHASE", "COMMIT", "AGE"]
    kube.apply(environment(namespace))
    header = kube.kubectl("get", "environments", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "VERSION", "LIVE", "HEALTH", "AGE"]


def test_promotions_can_be_selected_by_environment(kube: Kube, namespace: str) -> None:
    for name, env in (("a", "prod"), ("b", "staging"), ("c", "prod")):
        obj = promotion(namespace, environment=env, version="v20250819-f3b8541")
        obj["metadata"]["name"] = name
        kube.apply(obj)
    out = kube.kubectl(
        "get",
        "promotions",
        "-n",
        namespace,
        "--field-selector=spec.environment=prod",
        "-o",
        "name",
    ).stdout.split()
    assert out == ["promotion.promotion.gitops.dev/a", "promotion.promotion.gitops.dev/c"]
