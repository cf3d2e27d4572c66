"""The API: pydantic models of Environment and Promotion, the one source of their schemas.

Field names are snake_case in Python and camelCase on the wire (aliases). `crds/*.yaml` is
generated from these models by `promotion_operator.domain.crdgen`; a test fails on drift.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from promotion_operator.domain.images import TAG_PATTERN
from promotion_operator.domain.patterns import compile_version_pattern

DEFAULT_VERSION_PATTERN = r"^v\d{8}-[0-9a-f]{7,40}$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_TIMEOUT = timedelta(hours=168)


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration such as `90s`, `10m` or `1h30m` into a timedelta."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 90s, 10m, 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


_CONDITIONS_LIST: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class Model(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown fields ignored on read."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
    )


Name = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_LABEL_PATTERN)]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]


class LocalObjectReference(Model):
    """A reference to an object in the same namespace."""

    name: Name = Field(description="Name of a Secret in the same namespace.")


class GitSource(Model):
    """Where the environment's overlay lives."""

    url: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^[^-\s]\S*$",
        description="Repository URL: https://, ssh:// or scp-like user@host:path.",
    )
    branch: str = Field(
        default="main",
        min_length=1,
        max_length=255,
        pattern=r"^[^-\s~^:?*\[\\][^\s~^:?*\[\\]*$",
        description="Branch to read and push.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with `ssh-privatekey` (+ `known_hosts`) or `username`/`password`.",
    )


class Overlay(Model):
    """The Kustomize overlay this environment deploys from."""

    path: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[^/].*$",
        description="Folder holding kustomization.yaml, relative to the repository root.",
    )
    add_missing_images: bool = Field(
        default=False,
        description="Append an images entry for an image the overlay does not list yet "
        "(default: fail, naming the image to add).",
    )


class ImageRef(Model):
    """One image the environment pins; all of an environment's images move together."""

    name: str = Field(
        min_length=1,
        max_length=512,
        pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$",
        description="Image name without tag, as in the overlay's `images[].name`.",
    )


class RegistryAccess(Model):
    """How to reach the container registry."""

    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="kubernetes.io/dockerconfigjson Secret; omit for anonymous access.",
    )
    insecure: bool = Field(
        default=False,
        description="Plain HTTP or unverified TLS. Only for local registries.",
    )


class ArgoCDHealth(Model):
    """Observe an Argo CD Application."""

    application: Name = Field(description="Application name.")
    namespace: Name = Field(default="argocd", description="Namespace of the Application.")


class DeploymentsHealth(Model):
    """Observe the Deployments that run the environment's images."""

    namespace: Name = Field(description="Namespace of the Deployments.")
    selector: str | None = Field(
        default=None, max_length=1024, description="Optional label selector."
    )


class HTTPHealth(Model):
    """Observe an HTTP endpoint."""

    url: str = Field(
        pattern=r"^https?://\S+$", max_length=2048, description="URL to GET (http or https)."
    )
    expected_status: int = Field(
        default=200, ge=100, le=599, description="HTTP status meaning healthy."
    )
    version_field: str | None = Field(
        default=None,
        max_length=256,
        description="Dotted path of a JSON body field that must equal the version.",
    )


class HealthSources(Model):
    """How to observe this environment live; at least one source."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.argocd) || has(self.deployments) || has(self.http)",
                    "message": "set at least one of health.argocd, health.deployments, health.http",
                }
            ]
        }
    )

    argocd: ArgoCDHealth | None = None
    deployments: DeploymentsHealth | None = None
    http: HTTPHealth | None = None


class EnvironmentSpec(Model):
    """One deployable target: a Kustomize overlay in a git repository."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.soak) || has(self.upstream)",
                    "message": "soak needs an upstream environment",
                }
            ]
        }
    )

    git: GitSource
    overlay: Overlay
    images: list[ImageRef] = Field(min_length=1, max_length=64)
    registry: RegistryAccess | None = None
    upstream: Name | None = Field(
        default=None,
        description="Environment (same namespace) where a version must run healthily first.",
    )
    soak: Duration | None = Field(
        default=None, description="How long upstream must have run the version healthily."
    )
    health: HealthSources | None = None
    version_pattern: str = Field(
        default=DEFAULT_VERSION_PATTERN,
        max_length=512,
        description="Regular expression every promoted version must match.",
    )

    @field_validator("version_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        # Compiled with RE2, as it is matched: a pattern that would need backtracking is
        # refused here, as InvalidSpec, rather than run.
        compile_version_pattern(value)
        return value

    def image_names(self) -> list[str]:
        """Return the image names in spec order."""
        return [image.name for image in self.images]


class HealthStatus(StrEnum):
    """Observed health of an environment."""

    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    UNKNOWN = "Unknown"


class Condition(Model):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(max_length=316)
    status: str = Field(pattern=r"^(True|False|Unknown)$")
    reason: str = Field(max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: str
    observed_generation: int | None = None


class EnvironmentStatus(Model):
    """Kept fresh by the operator."""

    version: str | None = Field(default=None, description="What git says (overlay newTag).")
    images: dict[str, str | None] | None = Field(
        default=None, description="newTag per image in the overlay."
    )
    live_version: str | None = Field(default=None, description="What is running.")
    health: HealthStatus | None = None
    healthy_since: str | None = None
    healthy_since_seal: str | None = Field(
        default=None,
        description="The operator's HMAC over (Environment UID, liveVersion, healthySince). "
        "A healthySince without a valid seal (written by someone else) is not trusted: the "
        "soak clock restarts at the operator's next look.",
    )
    observed_generation: int | None = None
    message: str | None = None
    conditions: list[Condition] | None = Field(default=None, json_schema_extra=_CONDITIONS_LIST)


class PromotionSpec(Model):
    """One request to move one Environment to one version."""

    environment: Name = Field(
        description="Environment in the same namespace.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "environment is immutable"}
            ]
        },
    )
    version: str = Field(
        min_length=1,
        max_length=128,
        pattern=TAG_PATTERN,
        description="Image tag to promote, e.g. v20250819-f3b8541.",
    )
    reason: str | None = Field(default=None, max_length=1024, description="Why, for humans.")
    dry_run: bool = Field(default=False, description="Verify and compute the diff, never push.")
    timeout: Duration = Field(
        default="30m",
        description="Give up waiting for checks (and, after the push, for the deployment) "
        "after this; at most 168h.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "duration(self) <= duration('168h')", "message": "timeout is at most 168h"}
            ]
        },
    )

    @field_validator("timeout")
    @classmethod
    def _timeout_bounded(cls, value: str) -> str:
        if parse_duration(value) > MAX_TIMEOUT:
            raise ValueError("timeout is at most 168h")
        return value

    def timeout_delta(self) -> timedelta:
        """Return spec.timeout as a timedelta."""
        return parse_duration(self.timeout)


class Phase(StrEnum):
    """Promotion lifecycle phases."""

    PENDING = "Pending"
    VERIFYING = "Verifying"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUPERSEDED = "Superseded"

    @property
    def finished(self) -> bool:
        """Whether no more work happens for this generation."""
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.SUPERSEDED)


class CheckState(StrEnum):
    """State of one verification check."""

    PASSED = "Passed"
    FAILED = "Failed"
    WAITING = "Waiting"


class Check(Model):
    """The result of one verification step."""

    name: str = Field(max_length=64)
    target: str = Field(default="", max_length=1024)
    status: CheckState
    message: str = Field(default="", max_length=4096)
    reason: str | None = Field(default=None, max_length=256)


class PromotionStatus(Model):
    """Kept fresh by the operator."""

    phase: Phase | None = None
    observed_generation: int | None = None
    previous_version: str | None = None
    commit: str | None = Field(default=None, description="The pushed commit.")
    short_commit: str | None = Field(default=None, description="First 7 characters of commit.")
    diff: str | None = Field(default=None, max_length=65536)
    checks: list[Check] | None = None
    conditions: list[Condition] | None = Field(default=None, json_schema_extra=_CONDITIONS_LIST)
    started_at: str | None = None
    finished_at: str | None = None
    requested_by: str | None = Field(
        default=None,
        max_length=512,
        description="Who asked for this generation, recorded when it started (the commit's "
        "Requested-By).",
    )
    message: str | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    """Serialize a model the way the API server stores it (camelCase, no nulls)."""
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def status_patch(before: BaseModel, after: BaseModel) -> dict[str, Any]:
    """A merge patch taking a stored status from `before` to `after`.

    Fields `after` no longer has are set to null, which a merge patch reads as "remove":
    the one way a field leaves a status.
    """
    patch = dump(after)
    for key in dump(before):
        patch.setdefault(key, None)
    return patch
