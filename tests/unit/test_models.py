"""The API models: durations, defaults, camelCase parsing and dumping."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from promotion_operator.domain.models import (
    DEFAULT_VERSION_PATTERN,
    Check,
    CheckState,
    Condition,
    EnvironmentSpec,
    EnvironmentStatus,
    HealthStatus,
    Phase,
    PromotionSpec,
    PromotionStatus,
    dump,
    parse_duration,
)

# -- parse_duration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("1m30s", timedelta(seconds=90)),
        ("2h3m4s5ms", timedelta(hours=2, minutes=3, seconds=4, milliseconds=5)),
        ("1ms", timedelta(milliseconds=1)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "10", "m", "1d", "-1s", "1 m", "1.m", ".5h", "1h 30m", "10M", "1us", "s10", "1hx"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# -- PromotionSpec ---------------------------------------------------------------------


def test_promotion_spec_defaults() -> None:
    spec = PromotionSpec.model_validate({"environment": "prod", "version": "v20250819-f3b8541"})
    assert spec.reason is None
    assert spec.dry_run is False
    assert spec.timeout == "30m"
    assert spec.timeout_delta() == timedelta(minutes=30)


def test_promotion_spec_from_camel_case() -> None:
    spec = PromotionSpec.model_validate(
        {
            "environment": "prod",
            "version": "v2",
            "reason": "hotfix",
            "dryRun": True,
            "timeout": "1h30m",
        }
    )
    assert (spec.reason, spec.dry_run) == ("hotfix", True)
    assert spec.timeout_delta() == timedelta(minutes=90)


@pytest.mark.parametrize(
    "changes",
    [
        {"timeout": "forever"},
        {"timeout": "10"},
        {"version": ""},
        {"version": "v1 with spaces"},
        {"version": "-v1"},
        {"version": "v1\nPromotion-UID: x"},
        {"environment": "Prod"},
        {"environment": ""},
    ],
)
def test_promotion_spec_rejects(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PromotionSpec.model_validate({"environment": "prod", "version": "v1", **changes})


# -- EnvironmentSpec -------------------------------------------------------------------


def _environment(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "git": {"url": "https://git.example.com/shop/deploy.git"},
        "overlay": {"path": "k8s/overlays/prod"},
        "images": [{"name": "127.0.0.1:5000/team/app"}, {"name": "ghcr.io/team/worker"}],
    }
    spec.update(changes)
    return spec


def test_environment_spec_defaults() -> None:
    spec = EnvironmentSpec.model_validate(_environment())
    assert spec.git.branch == "main"
    assert spec.git.secret_ref is None
    assert spec.overlay.add_missing_images is False
    assert spec.version_pattern == DEFAULT_VERSION_PATTERN
    assert spec.registry is None
    assert spec.upstream is None
    assert spec.soak is None
    assert spec.health is None
    assert spec.image_names() == ["127.0.0.1:5000/team/app", "ghcr.io/team/worker"]


def test_environment_spec_from_camel_case() -> None:
    spec = EnvironmentSpec.model_validate(
        _environment(
            git={
                "url": "git@github.com:shop/deploy.git",
                "branch": "release/2025",
                "secretRef": {"name": "deploy-key"},
            },
            overlay={"path": "k8s/overlays/prod", "addMissingImages": True},
            registry={"secretRef": {"name": "pull-secret"}, "insecure": True},
            upstream="staging",
            soak="10m",
            versionPattern=r"^v\d+$",
            health={
                "argocd": {"application": "shop-prod"},
                "deployments": {"namespace": "shop", "selector": "app=shop"},
                "http": {
                    "url": "https://shop.example.com/version",
                    "expectedStatus": 204,
                    "versionField": "build.version",
                },
            },
            somethingNew="ignored",
        )
    )
    assert spec.git.branch == "release/2025"
    assert spec.git.secret_ref is not None
    assert spec.git.secret_ref.name == "deploy-key"
    assert spec.overlay.add_missing_images is True
    assert spec.registry is not None
    assert spec.registry.secret_ref is not None
    assert spec.registry.secret_ref.name == "pull-secret"
    assert spec.registry.insecure is True
    assert (spec.upstream, spec.soak, spec.version_pattern) == ("staging", "10m", r"^v\d+$")
    assert spec.health is not None
    assert spec.health.argocd is not None
    assert (spec.health.argocd.application, spec.health.argocd.namespace) == (
        "shop-prod",
        "argocd",
    )
    assert spec.health.deployments is not None
    assert spec.health.deployments.selector == "app=shop"
    assert spec.health.http is not None
    assert spec.health.http.expected_status == 204
    assert spec.health.http.version_field == "build.version"


def test_default_version_pattern_matches_the_documented_form() -> None:
    assert re.fullmatch(DEFAULT_VERSION_PATTERN, "v20250819-f3b8541")
    assert not re.fullmatch(DEFAULT_VERSION_PATTERN, "latest")


@pytest.mark.parametrize("pattern", ["([", "*v", r"^v\d+(", "[z-a]"])
def test_invalid_version_pattern_is_a_validation_error(pattern: str) -> None:
    # A ValidationError (a ValueError) is what callers catch to report a bad spec.
    with pytest.raises(ValidationError, match="version"):
        EnvironmentSpec.model_validate(_environment(versionPattern=pattern))


@pytest.mark.parametrize(
    "changes",
    [
        {"images": []},
        {"images": [{"name": "Team/App"}]},
        {"images": [{"name": "app:v1"}]},
        {"git": {"url": "--upload-pack=evil"}},
        {"git": {"url": "https://h/r", "branch": "-main"}},
        {"overlay": {"path": "/etc"}},
        {"soak": "a while"},
        {"upstream": "Staging"},
        {"health": {"http": {"url": "ftp://x/y"}}},
    ],
)
def test_environment_spec_rejects(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EnvironmentSpec.model_validate(_environment(**changes))


# -- dump ------------------------------------------------------------------------------


def test_dump_uses_camel_case_and_drops_none() -> None:
    status = PromotionStatus(
        phase=Phase.SUCCEEDED,
        observed_generation=2,
        previous_version="v1",
        short_commit="abcdef1",
        checks=[Check(name="Version", status=CheckState.PASSED)],
        conditions=[
            Condition(type="Ready", status="True", reason="Succeeded", last_transition_time="t")
        ],
    )
    assert dump(status) == {
        "phase": "Succeeded",
        "observedGeneration": 2,
        "previousVersion": "v1",
        "shortCommit": "abcdef1",
        "checks": [{"name": "Version", "target": "", "status": "Passed", "message": ""}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": "",
                "lastTransitionTime": "t",
            }
        ],
    }


def test_dump_of_an_empty_status_is_empty() -> None:
    assert dump(PromotionStatus()) == {}
    assert dump(EnvironmentStatus()) == {}


def test_dump_round_trips() -> None:
    status = EnvironmentStatus(
        version="v1",
        images={"app": "v1", "worker": None},
        live_version="v1",
        health=HealthStatus.HEALTHY,
        healthy_since="2025-01-01T00:00:00Z",
    )
    wire = dump(status)
    assert wire["liveVersion"] == "v1"
    assert wire["healthySince"] == "2025-01-01T00:00:00Z"
    assert wire["health"] == "Healthy"
    assert EnvironmentStatus.model_validate(wire) == status


def test_dump_of_a_spec_keeps_defaults() -> None:
    spec = PromotionSpec(environment="prod", version="v1")
    assert dump(spec) == {
        "environment": "prod",
        "version": "v1",
        "dryRun": False,
        "overrideWindow": False,
        "timeout": "30m",
    }
