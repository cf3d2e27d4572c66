"""A Promotion's lifecycle: Pending -> Verifying -> Promoting -> Succeeded | Failed | Superseded.

`reconcile` is idempotent: it reads the object, does the next step(s) for the current
generation and writes status. It returns how long to wait before the next look, or None
when this generation is finished. The remote branch is the proof of a push: before
committing, a commit carrying this Promotion's UID and generation is looked for, so a crash
at any point never yields a second commit.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from promotion_operator.domain.conditions import set_condition
from promotion_operator.domain.errors import PermanentError, PromotionError, Reason, RetryableError
from promotion_operator.domain.models import (
    Check,
    CheckState,
    HealthStatus,
    Phase,
    PromotionSpec,
    PromotionStatus,
    dump,
    parse_duration,
)
from promotion_operator.domain.overlay import read_image_tags, set_image_tags, unified_diff
from promotion_operator.domain.planning import commit_message, supersedes
from promotion_operator.gitops import GitRepository
from promotion_operator.k8s import Cluster, NotFoundError, Object
from promotion_operator.lifecycle import environments
from promotion_operator.lifecycle.context import (
    Environment,
    OperatorConfig,
    load_environment,
    overlay_file,
    parse_time,
    precise_timestamp,
    registry_credentials,
    repository,
    timestamp,
)
from promotion_operator.registry import RegistryClient

log = logging.getLogger(__name__)

REQUESTED_BY_ANNOTATION = "promotion.gitops.dev/requested-by"
# Fault injection for the crash-safety tests: the process exits at the named point.
CRASH_AT_ENV = "PROMOTION_OPERATOR_CRASH_AT"


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_AT_ENV) == name:
        log.warning("crash point %s reached: exiting as asked by %s", name, CRASH_AT_ENV)
        os._exit(75)


@dataclass(frozen=True)
class Promotion:
    """A Promotion object, parsed."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: PromotionSpec
    status: PromotionStatus
    raw: Object

    @classmethod
    def parse(cls, obj: Object) -> Promotion:
        """Parse a Promotion as stored by the API server (already schema-validated)."""
        meta = obj["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=meta.get("generation", 1),
            spec=PromotionSpec.model_validate(obj.get("spec") or {}),
            status=PromotionStatus.model_validate(obj.get("status") or {}),
            raw=obj,
        )

    @property
    def current(self) -> bool:
        """Whether status already describes this generation."""
        return self.status.observed_generation == self.generation

    def requested_by(self) -> str:
        """Who asked: the annotation if set, else the field manager that set spec.version."""
        meta = self.raw["metadata"]
        annotated = (meta.get("annotations") or {}).get(REQUESTED_BY_ANNOTATION)
        if annotated:
            return str(annotated)
        for entry in reversed(meta.get("managedFields") or []):
            fields = entry.get("fieldsV1") or {}
            if "f:version" in (fields.get("f:spec") or {}):
                return str(entry.get("manager", "unknown"))
        return "unknown"


class StatusWriter:
    """Holds the status being built and writes it, with an Event per phase transition."""

    def __init__(self, cluster: Cluster, promotion: Promotion, moment: dt.datetime) -> None:
        self.cluster = cluster
        self.promotion = promotion
        self.before = promotion.status
        self.status = promotion.status.model_copy(deep=True)
        self.stamp = timestamp(moment)

    def condition(self, type_: str, value: bool | None, reason: str, message: str = "") -> None:
        """Upsert one condition for the current generation."""
        self.status.conditions = set_condition(
            self.status.conditions,
            type_=type_,
            status=value,
            reason=reason,
            message=message,
            now=self.stamp,
            generation=self.promotion.generation,
        )

    def write(self, *, event_reason: str | None = None, warning: bool = False) -> None:
        """Patch status (fields that went away are removed) and post an Event if asked."""
        patch = dump(self.status)
        for key in dump(self.before):
            patch.setdefault(key, None)
        self.cluster.patch_status(
            "promotions", self.promotion.namespace, self.promotion.name, patch
        )
        phase_changed = self.before.phase != self.status.phase
        if event_reason and (phase_changed or warning):
            self.cluster.post_event(
                self.promotion.raw,
                reason=event_reason,
                message=self.status.message or str(self.status.phase),
                warning=warning,
            )
        self.before = self.status.model_copy(deep=True)


def _start_generation(writer: StatusWriter, moment: dt.datetime) -> None:
    promotion = writer.promotion
    writer.status = PromotionStatus(
        phase=Phase.PENDING,
        observed_generation=promotion.generation,
        started_at=precise_timestamp(moment),
        message=f"promotion of {promotion.spec.environment} to {promotion.spec.version} accepted",
    )
    writer.condition("Ready", False, Reason.PENDING, "waiting to be verified")
    writer.write(event_reason=Reason.PENDING)


def _finish(
    writer: StatusWriter,
    phase: Phase,
    reason: str,
    message: str,
    *,
    warning: bool = False,
) -> None:
    writer.status.phase = phase
    writer.status.message = message
    writer.status.finished_at = writer.stamp
    writer.condition("Ready", phase == Phase.SUCCEEDED, reason, message)
    writer.write(event_reason=reason, warning=warning)


@dataclass(frozen=True)
class Verification:
    """The outcome of one round of checks."""

    checks: list[Check]
    waiting: RetryableError | None  # the first check that is not true yet
    previous_version: str | None = None
    soak_remaining: float | None = None


def _check(name: str, target: str, state: CheckState, message: str = "", reason: str = "") -> Check:
    return Check(name=name, target=target, status=state, message=message, reason=reason or None)


def verify(
    config: OperatorConfig,
    cluster: Cluster,
    promotion: Promotion,
    env: Environment,
    moment: dt.datetime,
    checks: list[Check],
) -> Verification:
    """Run every check once, appending to `checks` as they go (so a check that fails
    permanently is on the status too). Permanent problems raise; not-yet-true ones are
    reported in the returned Verification."""
    version = promotion.spec.version
    waiting: RetryableError | None = None
    soak_remaining: float | None = None

    if not re.search(env.spec.version_pattern, version):
        mismatch = PermanentError(
            Reason.VERSION_MISMATCH_PATTERN,
            f"version {version!r} does not match Environment {env.name}'s versionPattern "
            f"{env.spec.version_pattern!r}",
        )
        checks.append(
            _check("VersionPattern", version, CheckState.FAILED, mismatch.message, mismatch.reason)
        )
        raise mismatch
    checks.append(_check("VersionPattern", version, CheckState.PASSED))

    insecure = env.spec.registry.insecure if env.spec.registry else False
    client = RegistryClient(registry_credentials(cluster, env), insecure=insecure)
    for image in env.spec.image_names():
        target = f"{image}:{version}"
        try:
            digest = client.check_tag(image, version)
            checks.append(_check("TagExists", target, CheckState.PASSED, digest))
        except RetryableError as error:
            checks.append(
                _check("TagExists", target, CheckState.WAITING, error.message, error.reason)
            )
            waiting = waiting or error
        except PermanentError as error:
            checks.append(
                _check("TagExists", target, CheckState.FAILED, error.message, error.reason)
            )
            raise

    if env.spec.upstream:
        upstream_check = _verify_upstream(cluster, env, version, moment)
        checks.extend(upstream_check.checks)
        waiting = waiting or upstream_check.waiting
        soak_remaining = upstream_check.soak_remaining
    return Verification(checks, waiting, soak_remaining=soak_remaining)


def _verify_upstream(
    cluster: Cluster, env: Environment, version: str, moment: dt.datetime
) -> Verification:
    name = env.spec.upstream or ""
    try:
        upstream = load_environment(cluster, env.namespace, name)
    except PermanentError as error:
        raise PermanentError(
            Reason.ENVIRONMENT_NOT_FOUND,
            f"upstream Environment {name!r} of {env.name} not found in namespace {env.namespace!r}",
        ) from error
    if upstream.spec.health is None:
        raise PermanentError(
            Reason.UPSTREAM_HAS_NO_HEALTH,
            f"upstream Environment {name!r} has no spec.health: an Environment that cannot "
            "be observed cannot prove a version",
        )
    # prove the images this environment pins, whatever else upstream runs
    observation = environments.observe(cluster, upstream, env.spec.image_names())
    checks: list[Check] = []
    if observation.health != HealthStatus.HEALTHY:
        unhealthy = RetryableError(
            Reason.UPSTREAM_NOT_HEALTHY,
            f"upstream {name} is {observation.health.value}"
            + (f": {observation.message}" if observation.message else ""),
        )
        checks.append(
            _check("UpstreamHealthy", name, CheckState.WAITING, unhealthy.message, unhealthy.reason)
        )
        return Verification(checks, unhealthy)
    checks.append(_check("UpstreamHealthy", name, CheckState.PASSED))
    if not observation.runs(version):
        running = ", ".join(f"{image}:{tag or '?'}" for image, tag in observation.images.items())
        mismatch = RetryableError(
            Reason.UPSTREAM_VERSION_MISMATCH,
            f"upstream {name} does not run {version} for every image (runs {running})",
        )
        checks.append(
            _check("UpstreamVersion", name, CheckState.WAITING, mismatch.message, mismatch.reason)
        )
        return Verification(checks, mismatch)
    checks.append(_check("UpstreamVersion", f"{name}:{version}", CheckState.PASSED))
    soak = env.spec.soak
    if soak:
        needed = parse_duration(soak)
        ran = environments.healthy_for(upstream, observation, moment)
        if ran < needed:
            remaining = (needed - ran).total_seconds()
            soaking = RetryableError(
                Reason.SOAKING,
                f"upstream {name} has run {version} healthily for {int(ran.total_seconds())}s "
                f"of the {soak} soak",
            )
            checks.append(_check("Soak", name, CheckState.WAITING, soaking.message, soaking.reason))
            return Verification(checks, soaking, soak_remaining=remaining)
        checks.append(
            _check("Soak", name, CheckState.PASSED, f"healthy for {int(ran.total_seconds())}s")
        )
    return Verification(checks, None)


def _request_time(obj: Object) -> str:
    """When this Promotion's current generation was asked for (for newest-wins ordering)."""
    status = obj.get("status") or {}
    meta = obj["metadata"]
    if status.get("observedGeneration") == meta.get("generation") and status.get("startedAt"):
        return str(status["startedAt"])
    # not picked up yet: it is newer than anything started
    return "9999-12-31T23:59:59.999999Z"


def newer_promotion(cluster: Cluster, promotion: Promotion) -> str | None:
    """Name of a newer, not failed Promotion for the same Environment, if any.

    Dry runs only look: they neither supersede nor get superseded.
    """
    if promotion.spec.dry_run:
        return None
    mine = (_request_time(promotion.raw), promotion.raw["metadata"].get("creationTimestamp", ""))
    for other in cluster.list_promotions(promotion.namespace, promotion.spec.environment):
        meta = other["metadata"]
        if meta["uid"] == promotion.uid or meta.get("deletionTimestamp"):
            continue
        spec = other.get("spec") or {}
        if spec.get("environment") != promotion.spec.environment or spec.get("dryRun"):
            continue
        phase = (other.get("status") or {}).get("phase")
        theirs = (_request_time(other), meta.get("creationTimestamp", ""))
        if supersedes(
            theirs, mine, other_phase=phase, other_name=meta["name"], my_name=promotion.name
        ):
            return str(meta["name"])
    return None


def _trailers(promotion: Promotion) -> dict[str, str]:
    return {
        "Promotion-UID": promotion.uid,
        "Promotion-Generation": str(promotion.generation),
    }


@dataclass
class OverlayEditor:
    """Edits the environment's overlay in the synced clone; remembers the last diff.

    Called again after a rejected push, on the fresh tree, so `diff` always describes what
    was committed last.
    """

    repo: GitRepository
    env: Environment
    version: str
    diff: str = ""

    def __call__(self, _worktree: object = None) -> Mapping[str, str] | None:
        """Return {path: new text}, or None when the overlay already holds the version."""
        path = overlay_file(self.env)
        old = self.repo.read_file(path)
        edit = set_image_tags(
            old,
            dict.fromkeys(self.env.spec.image_names(), self.version),
            add_missing=self.env.spec.overlay.add_missing_images,
        )
        self.diff = unified_diff(path, old, edit.text) if edit.changed else ""
        return {path: edit.text} if edit.changed else None


def _version_of(overlay: str, env: Environment) -> str | None:
    """The version an overlay pins: one tag, or the distinct tags when images differ."""
    tags = read_image_tags(overlay, env.spec.image_names()).values()
    return ", ".join(sorted({tag for tag in tags if tag})) or None


def promote(
    config: OperatorConfig,
    cluster: Cluster,
    promotion: Promotion,
    env: Environment,
    writer: StatusWriter,
) -> None:
    """Edit, commit and push under the repository lock; set the final status."""
    repo = repository(config, cluster, env)
    version = promotion.spec.version
    with repo.lock():
        repo.sync()
        writer.status.previous_version = writer.status.previous_version or _version_of(
            repo.read_file(overlay_file(env)), env
        )
        found = repo.find_commit(_trailers(promotion), refresh=False)
        if found is not None:
            # pushed before a crash or a lost status write: the remote is the proof
            _recover(repo, env, writer, promotion, found)
            return
        editor = OverlayEditor(repo, env, version)
        if promotion.spec.dry_run:
            editor()
            writer.status.diff = editor.diff or None
            writer.condition("Committed", False, Reason.DRY_RUN, "dry run: nothing pushed")
            _finish(
                writer,
                Phase.SUCCEEDED,
                Reason.DRY_RUN,
                f"dry run: {env.name} would move to {version}",
            )
            return
        newer = newer_promotion(cluster, promotion)
        if newer is not None:
            _supersede(writer, newer)
            return
        message = commit_message(
            namespace=promotion.namespace,
            name=promotion.name,
            uid=promotion.uid,
            generation=promotion.generation,
            environment=env.name,
            old=writer.status.previous_version,
            new=version,
            reason=promotion.spec.reason,
            requested_by=promotion.requested_by(),
        )
        pushed = repo.commit_and_push(
            editor,
            message,
            before_push=lambda: _crash_point("after-commit"),
            synced=True,
        )
    _crash_point("after-push")
    if not pushed.changed or pushed.commit is None:
        writer.status.diff = None
        writer.condition(
            "Committed", False, Reason.ALREADY_AT_VERSION, f"overlay already at {version}"
        )
        _finish(
            writer, Phase.SUCCEEDED, Reason.ALREADY_AT_VERSION, f"{env.name} already at {version}"
        )
        return
    _succeed_with_commit(writer, promotion, pushed.commit, editor.diff)


def _recover(
    repo: GitRepository, env: Environment, writer: StatusWriter, promotion: Promotion, commit: str
) -> None:
    """Status from a commit found on the remote: its parent gives the previous version."""
    path = overlay_file(env)
    before = repo.file_at(f"{commit}^", path) or ""
    after = repo.file_at(commit, path) or ""
    if before:
        writer.status.previous_version = _version_of(before, env)
    _succeed_with_commit(writer, promotion, commit, unified_diff(path, before, after))


def _succeed_with_commit(
    writer: StatusWriter, promotion: Promotion, commit: str, diff: str
) -> None:
    writer.status.commit = commit
    writer.status.short_commit = commit[:7]
    writer.status.diff = diff or None
    writer.condition("Committed", True, Reason.PROMOTED, f"pushed {commit[:12]}")
    _finish(
        writer,
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        f"{promotion.spec.environment} promoted to {promotion.spec.version} in {commit[:12]}",
    )


def _supersede(writer: StatusWriter, newer: str) -> None:
    writer.condition(
        "Verified",
        writer.status.phase == Phase.PROMOTING,
        Reason.SUPERSEDED,
        f"superseded by {newer}",
    )
    _finish(
        writer, Phase.SUPERSEDED, Reason.SUPERSEDED, f"superseded by the newer Promotion {newer}"
    )


def _fail(writer: StatusWriter, error: PromotionError) -> None:
    if writer.status.phase != Phase.PROMOTING:  # past Promoting, the checks did pass
        writer.condition("Verified", False, error.reason, error.message)
    _finish(writer, Phase.FAILED, error.reason, error.message, warning=True)


def backoff(config: OperatorConfig, attempt: int) -> float:
    """Exponential backoff for not-yet-true checks, capped."""
    return float(min(config.backoff_max, config.backoff_initial * (2 ** min(attempt, 16))))


def reconcile(
    config: OperatorConfig,
    cluster: Cluster,
    obj: Object,
    *,
    attempt: int = 0,
    moment: dt.datetime | None = None,
) -> float | None:
    """Advance the Promotion's current generation; return seconds to wait, or None when done."""
    moment = moment or dt.datetime.now(dt.UTC)
    try:
        promotion = Promotion.parse(obj)
    except ValueError as error:
        log.error("cannot parse Promotion: %s", error)
        return None
    if promotion.current and promotion.status.phase and Phase(promotion.status.phase).finished:
        return None
    writer = StatusWriter(cluster, promotion, moment)
    try:
        if not promotion.current:
            _start_generation(writer, moment)
        return _advance(config, cluster, promotion, writer, attempt, moment)
    except NotFoundError:
        return None  # deleted while we worked: nothing to report on
    except RetryableError as error:
        try:
            return _wait(config, promotion, writer, error, attempt, moment)
        except PromotionError as final:
            _fail(writer, final)
            return None
    except PromotionError as error:
        _fail(writer, error)
        return None


def _advance(
    config: OperatorConfig,
    cluster: Cluster,
    promotion: Promotion,
    writer: StatusWriter,
    attempt: int,
    moment: dt.datetime,
) -> float | None:
    env = load_environment(cluster, promotion.namespace, promotion.spec.environment)
    if writer.status.phase in (Phase.PENDING, Phase.VERIFYING, None):
        newer = newer_promotion(cluster, promotion)
        if newer is not None:
            _supersede(writer, newer)
            return None
        checks: list[Check] = []
        writer.status.checks = checks
        verification = verify(config, cluster, promotion, env, moment, checks)
        if verification.waiting is not None:
            return _wait(
                config,
                promotion,
                writer,
                verification.waiting,
                attempt,
                moment,
                soak_remaining=verification.soak_remaining,
            )
        writer.condition("Verified", True, Reason.CHECKS_PASSED, "every check passed")
        writer.status.phase = Phase.PROMOTING
        writer.status.message = (
            f"promoting {promotion.spec.environment} to {promotion.spec.version}"
        )
        writer.condition("Ready", False, Reason.PROMOTING, writer.status.message)
        writer.write(event_reason=Reason.PROMOTING)
    promote(config, cluster, promotion, env, writer)
    return None


def _timed_out(promotion: Promotion, writer: StatusWriter, moment: dt.datetime) -> bool:
    started = parse_time(writer.status.started_at or timestamp(moment))
    return moment >= started + promotion.spec.timeout_delta()


def _wait(
    config: OperatorConfig,
    promotion: Promotion,
    writer: StatusWriter,
    waiting: RetryableError,
    attempt: int,
    moment: dt.datetime,
    *,
    soak_remaining: float | None = None,
) -> float:
    """Record what is not true yet and return the delay; past the timeout, raise.

    The final failure keeps the reason of what was awaited (TagMissing, Soaking, ...):
    that, not the fact of a timeout, is what the user has to fix.
    """
    if _timed_out(promotion, writer, moment):
        raise PermanentError(
            waiting.reason,
            f"timed out after {promotion.spec.timeout}: {waiting.message}",
        )
    promoting = writer.status.phase == Phase.PROMOTING
    before = writer.status.message
    if promoting:
        writer.status.message = f"retrying: {waiting.message}"
        writer.condition("Ready", False, waiting.reason, waiting.message)
    else:
        first = writer.status.phase != Phase.VERIFYING
        writer.status.phase = Phase.VERIFYING
        writer.status.message = f"waiting: {waiting.message}"
        writer.condition("Verified", False, waiting.reason, waiting.message)
        writer.condition("Ready", False, Reason.VERIFYING, writer.status.message)
    if promoting:
        # one Warning per new problem, not one per retry round
        changed = before != writer.status.message
        writer.write(event_reason=waiting.reason if changed else None, warning=changed)
    else:
        writer.write(event_reason=Reason.VERIFYING if first else None)
    started = parse_time(writer.status.started_at or timestamp(moment))
    until_deadline = (started + promotion.spec.timeout_delta() - moment).total_seconds()
    delay = backoff(config, attempt)
    if soak_remaining is not None:
        delay = min(delay, max(soak_remaining, 1.0))
    return max(1.0, min(delay, until_deadline + 0.5))
