"""Domain errors, sorted once: each carries a reason and whether retrying can help.

The handler boundary maps `retryable` errors to a delayed retry (until the Promotion's
timeout) and the others to a terminal failure with the reason on the Ready condition.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Machine-readable reasons used on conditions, checks and events."""

    # lifecycle
    PENDING = "Pending"
    VERIFYING = "Verifying"
    PROMOTING = "Promoting"
    PROMOTED = "Promoted"
    DRY_RUN = "DryRunSucceeded"
    ALREADY_AT_VERSION = "AlreadyAtVersion"
    SUPERSEDED = "Superseded"
    CHECKS_PASSED = "ChecksPassed"
    OBSERVED = "Observed"
    # after the push
    AWAITING_DEPLOYMENT = "AwaitingDeployment"
    DEPLOYED = "Deployed"
    NOT_DEPLOYED = "NotDeployed"
    # bad input
    INVALID_SPEC = "InvalidSpec"
    VERSION_MISMATCH_PATTERN = "VersionDoesNotMatchPattern"
    ENVIRONMENT_NOT_FOUND = "EnvironmentNotFound"
    SECRET_INVALID = "SecretInvalid"  # noqa: S105 - a reason, not a password
    INVALID_GIT_URL = "InvalidGitURL"
    INVALID_OVERLAY = "InvalidOverlay"
    IMAGE_NOT_IN_OVERLAY = "ImageNotInOverlay"
    # registry
    TAG_MISSING = "TagMissing"
    REGISTRY_AUTH_FAILED = "RegistryAuthFailed"
    REGISTRY_UNAVAILABLE = "RegistryUnavailable"
    # upstream health
    UPSTREAM_NOT_HEALTHY = "UpstreamNotHealthy"
    UPSTREAM_VERSION_MISMATCH = "UpstreamVersionMismatch"
    UPSTREAM_HAS_NO_HEALTH = "UpstreamHasNoHealth"
    HEALTH_NAMESPACE_FORBIDDEN = "HealthNamespaceForbidden"
    SOAKING = "Soaking"
    # gates
    AWAITING_APPROVAL = "AwaitingApproval"
    WINDOW_CLOSED = "WindowClosed"
    PROMOTIONS_FROZEN = "PromotionsFrozen"
    # git
    GIT_AUTH_FAILED = "GitAuthFailed"
    GIT_NOT_FOUND = "GitNotFound"
    GIT_UNREACHABLE = "GitUnreachable"
    GIT_PUSH_REJECTED = "GitPushRejected"
    GIT_ERROR = "GitError"
    # cluster
    KUBERNETES_API_ERROR = "KubernetesAPIError"


class ConditionType(StrEnum):
    """The condition types the operator sets (Flux keeps these beside its reasons too)."""

    READY = "Ready"
    VERIFIED = "Verified"
    COMMITTED = "Committed"
    DEPLOYED = "Deployed"
    HEALTHY = "Healthy"


class CheckName(StrEnum):
    """The names of verification checks, as they appear in `status.checks`."""

    VERSION_PATTERN = "VersionPattern"
    TAG_EXISTS = "TagExists"
    UPSTREAM_HEALTHY = "UpstreamHealthy"
    UPSTREAM_VERSION = "UpstreamVersion"
    SOAK = "Soak"
    APPROVAL = "Approval"
    WINDOW = "PromotionWindow"


class PromotionError(Exception):
    """Base of every error the lifecycle knows how to report on a status.

    `message` must tell the user what to fix and must never contain a credential.
    """

    retryable: bool = False

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class PermanentError(PromotionError):
    """Can never succeed without a change to the spec, a Secret or the repo."""

    retryable = False


class RetryableError(PromotionError):
    """Not true yet (still syncing, soaking, registry 5xx); retried until the timeout."""

    retryable = True
