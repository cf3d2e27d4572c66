"""The check interface: a name, what it needs, a target, and `run` -> outcomes.

A check reads what it needs through the `CheckContext` (the Promotion, its Environment,
the ports, the moment, and shared look-ups such as the upstream observation, made once
per round) and returns one `Outcome` per target: passed, waiting (not true yet: retried
until the timeout) or failed (can never become true as specified).
"""

from __future__ import annotations

import datetime as dt
import functools
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

from promotion_operator.domain.errors import (
    CheckName,
    PermanentError,
    PromotionError,
    Reason,
    RetryableError,
)
from promotion_operator.domain.models import Check as CheckRecord
from promotion_operator.domain.models import CheckState
from promotion_operator.domain.planning import Trailer
from promotion_operator.domain.rollback import PromotionCommit
from promotion_operator.health import Observation
from promotion_operator.k8s import Object
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.credentials import registry_credentials
from promotion_operator.lifecycle.objects import Environment, Promotion, load_environment
from promotion_operator.lifecycle.observe import observe
from promotion_operator.lifecycle.ports import Ports, Repository, TagChecker


@dataclass(frozen=True)
class Outcome:
    """What one check found about one target."""

    target: str
    state: CheckState
    message: str = ""
    reason: Reason | None = None
    retry_after: float | None = None  # seconds until it may be true (a soak's remainder)

    @classmethod
    def passed(cls, target: str, message: str = "") -> Outcome:
        """The target is fine."""
        return cls(target, CheckState.PASSED, message)

    @classmethod
    def waiting(
        cls, target: str, error: RetryableError, retry_after: float | None = None
    ) -> Outcome:
        """Not true yet; `error` says what is awaited."""
        return cls(target, CheckState.WAITING, error.message, error.reason, retry_after)

    @classmethod
    def failed(cls, target: str, error: PromotionError) -> Outcome:
        """Can never become true as specified; `error` says what to fix."""
        return cls(target, CheckState.FAILED, error.message, error.reason)

    def record(self, name: CheckName) -> CheckRecord:
        """The entry this outcome becomes in `status.checks`."""
        return CheckRecord(
            name=name,
            target=self.target,
            status=self.state,
            message=self.message,
            reason=self.reason,
        )

    def for_dry_run(self, *, dry_run: bool) -> Outcome:
        """A gate does not hold a dry run (nothing is pushed): waiting becomes passed, with
        what a real run would wait for."""
        if not dry_run or self.state != CheckState.WAITING:
            return self
        return Outcome.passed(self.target, f"dry run, not awaited: {self.message}")

    def error(self) -> PermanentError:
        """The permanent error a failed outcome stands for."""
        return PermanentError(self.reason or Reason.INVALID_SPEC, self.message)


@dataclass(frozen=True)
class Upstream:
    """The upstream Environment and what it runs now, as one look saw it."""

    env: Environment
    observation: Observation


class CheckContext:
    """What a check may read; shared look-ups happen once per verification round."""

    def __init__(
        self,
        config: OperatorConfig,
        ports: Ports,
        promotion: Promotion,
        env: Environment,
        moment: dt.datetime,
    ) -> None:
        self.config = config
        self.ports = ports
        self.promotion = promotion
        self.env = env
        self.moment = moment
        self.audit: list[tuple[Trailer, str]] = []
        """What checks record for the commit's trailers (who approved, an override)."""
        # Set by RollbackGuard when an earlier promotion of this Environment pushed the
        # version being rolled back to: that promotion is the proof, not the upstream.
        self.vouch: PromotionCommit | None = None
        # The commit RollbackGuard decided on; the push decides again on any other.
        self.rollback_checked: str | None = None
        self.prepared: dict[CheckName, tuple[Repository, Future[str]]] = {}
        """A repository and the read a check started on it early (`Check.prepare`)."""

    @property
    def version(self) -> str:
        """The version being promoted."""
        return self.promotion.spec.version

    @functools.cached_property
    def registry(self) -> TagChecker:
        """A registry client with the Environment's credentials."""
        access = self.env.spec.registry
        return self.ports.registry(
            registry_credentials(self.ports.cluster, self.env),
            insecure=access.insecure if access else False,
        )

    @functools.cached_property
    def promotion_policies(self) -> list[Object]:
        """The cluster's PromotionPolicies (cluster-scoped, a platform team's few)."""
        return self.ports.cluster.list_promotion_policies()

    @functools.cached_property
    def upstream(self) -> Upstream:
        """The upstream, observed for the images this Environment pins.

        A missing upstream, or one that cannot be observed, is a permanent error.
        """
        name = self.env.spec.upstream or ""
        try:
            upstream = load_environment(self.ports.cluster, self.env.namespace, name)
        except PermanentError as error:
            raise PermanentError(
                Reason.ENVIRONMENT_NOT_FOUND,
                f"upstream Environment {name!r} of {self.env.name} not found in namespace "
                f"{self.env.namespace!r}",
            ) from error
        if upstream.spec.health is None:
            raise PermanentError(
                Reason.UPSTREAM_HAS_NO_HEALTH,
                f"upstream Environment {name!r} has no spec.health: an Environment that "
                "cannot be observed cannot prove a version",
            )
        # prove the images this environment pins, whatever else upstream runs
        observation = observe(
            self.config, self.ports.cluster, upstream, self.env.spec.image_names()
        )
        return Upstream(upstream, observation)


class Check:
    """One verification step. Subclasses set `name` (and `needs`) and implement `run`."""

    name: ClassVar[CheckName]
    needs: ClassVar[tuple[CheckName, ...]] = ()
    """Checks that must have passed in this round before this one runs."""

    def applies(self, ctx: CheckContext) -> bool:
        """Whether this check is part of this Promotion's verification (default: always)."""
        del ctx
        return True

    def target(self, ctx: CheckContext) -> str:
        """What the check is about, for a failure raised before any outcome."""
        return ctx.version

    def prepare(self, ctx: CheckContext) -> None:
        """Start a slow network read in `EARLY` (into `ctx.prepared`) as soon as the
        checks this one needs have passed, so it overlaps the checks before it; `run`
        collects it with `early`. Default: nothing. A failure here is left for `run`."""
        del ctx

    def early(self, ctx: CheckContext) -> tuple[Repository, Future[str] | None] | None:
        """What `prepare` started: the repository, and its read unless that had not begun
        (then it is cancelled, and `run` reads for itself: a full pool never holds a
        round up behind other Environments' reads). None if nothing was prepared."""
        found = ctx.prepared.pop(self.name, None)
        if found is None:
            return None
        repo, read = found
        return repo, None if read.cancel() else read

    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Check, returning one outcome per target; may raise a PromotionError."""
        raise NotImplementedError


EARLY = ThreadPoolExecutor(max_workers=8, thread_name_prefix="check-early")
"""Where `Check.prepare` reads run: bounded, shared by every verification round. A read
still queued when its check runs is cancelled and done inline instead (`Check.early`)."""


class UpstreamCheck(Check):
    """A check about the upstream Environment: it applies only when there is one."""

    def applies(self, ctx: CheckContext) -> bool:
        """Only for an Environment with an upstream, and not for a vouched rollback."""
        return bool(ctx.env.spec.upstream) and ctx.vouch is None

    def target(self, ctx: CheckContext) -> str:
        """The upstream's name."""
        return ctx.env.spec.upstream or ""
