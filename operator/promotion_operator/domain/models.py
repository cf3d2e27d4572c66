"""The API: pydantic models of Environment and Promotion, the one source of their schemas.

Field names are snake_case in Python and camelCase on the wire (aliases). `crds/*.yaml` is
generated from these models by `promotion_operator.domain.crdgen`; a test fails on drift.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from promotion_operator.domain.images import TAG_PATTERN
from promotion_operator.domain.patterns import compile_version_pattern
from promotion_operator.domain.windows import Schedule, schedule_fires

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
    sync_windows: bool = Field(
        default=False,
        description="When this Environment is promoted, also wait while the sync windows of "
        "the Application's AppProject would block an automated sync.",
    )


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


class ApprovalPolicy(Model):
    """Four eyes: how many people other than the requester must approve a Promotion."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.users) || has(self.groups)",
                    "message": "approval needs users or groups: who may approve",
                }
            ]
        }
    )

    required: int = Field(default=1, ge=1, le=16, description="Distinct approvers needed.")
    users: list[Annotated[str, Field(min_length=1, max_length=253)]] | None = Field(
        default=None,
        max_length=64,
        description="Usernames (as the API server authenticates them) who may approve.",
    )
    groups: list[Annotated[str, Field(min_length=1, max_length=253)]] | None = Field(
        default=None, max_length=64, description="Groups whose members may approve."
    )

    @model_validator(mode="after")
    def _someone_may_approve(self) -> ApprovalPolicy:
        if not self.users and not self.groups:
            raise ValueError("approval needs users or groups: who may approve")
        return self

    def allows(self, username: str, groups: list[str]) -> bool:
        """Whether this user may approve (in `users`, or in one of `groups`)."""
        return username in (self.users or ()) or bool(set(groups) & set(self.groups or ()))


class WindowKind(StrEnum):
    """Whether promotions may happen only inside (allow) or never inside (deny) a window."""

    ALLOW = "allow"
    DENY = "deny"


MAX_WINDOW_DURATION = timedelta(days=366)
_CRON_ORIGIN = datetime(2000, 1, 1)  # any moment: a schedule that parses, iterates


class Window(Model):
    """A promotion window: a cron schedule with a duration, or one absolute from..until."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.schedule) ? has(self.duration) && !has(self.until) "
                    "&& !has(self.from) : has(self.until) && !has(self.duration)",
                    "message": "a window is either schedule + duration, or until (and from)",
                }
            ]
        }
    )

    name: str | None = Field(default=None, max_length=128, description="Shown when it blocks.")
    kind: WindowKind = Field(description="allow: only inside; deny: never inside.")
    schedule: str | None = Field(
        default=None,
        max_length=128,
        description="Cron expression (5 fields) of when the window opens, e.g. `0 9 * * 1-4`.",
    )
    duration: Duration | None = Field(
        default=None, description="How long the window stays open after each start."
    )
    time_zone: str = Field(
        default="UTC",
        max_length=64,
        description="IANA time zone the schedule is read in, e.g. Europe/Berlin.",
    )
    from_: AwareDatetime | None = Field(
        default=None, alias="from", description="Start of a one-off window (RFC 3339)."
    )
    until: AwareDatetime | None = Field(
        default=None, description="End of a one-off window (RFC 3339)."
    )

    @field_validator("schedule")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                CronSim(value, _CRON_ORIGIN)
            except CronSimError as error:
                raise ValueError(f"invalid cron schedule {value!r}: {error}") from None
            if not schedule_fires(value):
                raise ValueError(f"cron schedule {value!r} never fires")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name") from None
        return value

    @field_validator("duration")
    @classmethod
    def _duration_bounded(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) > MAX_WINDOW_DURATION:
            raise ValueError("a window lasts at most 8784h (366 days)")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Window:
        scheduled = self.schedule is not None and self.duration is not None
        absolute = self.until is not None and self.schedule is None and self.duration is None
        if not (scheduled or absolute):
            raise ValueError("a window is either schedule + duration, or until (and from)")
        return self

    def label(self) -> str:
        """How status names this window."""
        if self.name:
            return f"{self.kind.value} window {self.name!r}"
        if self.schedule is not None:
            return f"{self.kind.value} window {self.schedule!r} ({self.time_zone}, {self.duration})"
        return f"{self.kind.value} window until {self.until}"

    def schedule_of(self, source: str) -> Schedule:
        """This window for the arithmetic of `domain.windows`, labelled with its source."""
        return Schedule(
            label=f"{source}: {self.label()}",
            deny=self.kind == WindowKind.DENY,
            cron=self.schedule,
            duration=parse_duration(self.duration) if self.duration else timedelta(0),
            zone=self.time_zone,
            start=self.from_,
            end=self.until,
        )


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
    approval: ApprovalPolicy | None = Field(
        default=None, description="Approvals a Promotion needs before it is pushed."
    )
    windows: list[Window] | None = Field(
        default=None,
        max_length=32,
        description="When promotions may (allow) or may not (deny) happen.",
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
    override_window: bool = Field(
        default=False,
        description="Promote even while a promotion window is closed (never through a "
        "PromotionPolicy freeze); recorded in the commit.",
    )
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
    approved_by: list[str] | None = Field(
        default=None, description="Who approved this generation (the commit's Approved-By)."
    )
    message: str | None = None


class Approver(Model):
    """Who approved: stamped by the chart's admission policy from the authenticated user."""

    username: str = Field(min_length=1, max_length=253)
    groups: list[Annotated[str, Field(max_length=253)]] | None = Field(default=None, max_length=256)


class PromotionApprovalSpec(Model):
    """One person's approval of one generation of one Promotion."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self == oldSelf",
                    "message": "an approval cannot be changed: delete it and approve again",
                }
            ]
        }
    )

    promotion: Name = Field(description="The Promotion (same namespace) approved.")
    generation: int = Field(ge=1, description="The Promotion's metadata.generation approved.")
    version: str = Field(
        min_length=1, max_length=128, pattern=TAG_PATTERN, description="The version approved."
    )
    approver: Approver | None = Field(
        default=None,
        description="Set by the API server's admission policy from the authenticated user; "
        "leave it out.",
    )
    comment: str | None = Field(default=None, max_length=1024, description="For humans.")


class PromotionPolicySpec(Model):
    """Operator-wide gates a platform team owns (cluster-scoped)."""

    namespaces: list[Name] | None = Field(
        default=None,
        max_length=1024,
        description="The namespaces this policy covers; leave out for the whole cluster.",
    )
    freeze: bool = Field(
        default=False,
        description="Stop the line: no Promotion in its namespaces is pushed while true.",
    )
    message: str | None = Field(
        default=None, max_length=1024, description="Why, shown on every waiting Promotion."
    )
    windows: list[Window] | None = Field(
        default=None, max_length=64, description="Windows for every Environment."
    )
    allow_override: bool = Field(
        default=False,
        description="Whether a Promotion's overrideWindow may pass this policy's windows "
        "(never its freeze).",
    )


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
