"""The Promotion state machine, table-driven, against fakes of its own ports.

Each case arranges a world (Environments, registry tags, the upstream's Argo CD
Application, the remote branch), drives `reconcile` round after round with a clock that
advances by the delay it returns, and checks where the generation ends: phase, reason,
message, commits, checks and Events. The e2e tier proves the same paths on real parts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from promotion_operator.domain.errors import PermanentError, Reason, RetryableError
from promotion_operator.domain.gitfailures import GitAuthError, GitUnreachableError
from promotion_operator.domain.gitrules import trailer_block
from promotion_operator.domain.models import Phase
from promotion_operator.domain.planning import commit_message
from promotion_operator.domain.seal import healthy_since_seal
from promotion_operator.domain.times import precise_timestamp, timestamp
from promotion_operator.k8s import Object
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.promotions import reconcile
from support.fake_cluster import (
    FakeCluster,
    FakeNotifier,
    FakeRegistry,
    FakeRepository,
    fake_ports,
)

NS = "shop"
APP = "registry.example/team/app"
WORKER = "registry.example/team/worker"
OLD = "v20250101-aaaaaaa"
NEW = "v20250819-f3b8541"
NEWER = "v20250820-0c0ffee"
PROD_OVERLAY = "k8s/overlays/prod/kustomization.yaml"
T0 = dt.datetime(2025, 8, 19, 12, 0, 0, tzinfo=dt.UTC)


def overlay(app: str | None = OLD, worker: str | None = OLD) -> str:
    """A prod overlay pinning both images (a comment and order to keep)."""
    lines = [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources: [../../base]  # keep me",
        "images:",
    ]
    for name, tag in ((APP, app), (WORKER, worker)):
        if tag is not None:
            lines += [f"  - name: {name}", f"    newTag: {tag}"]
    return "\n".join(lines) + "\n"


def environment(name: str = "prod", **spec: Any) -> Object:
    """An Environment object as the API server stores it."""
    body: dict[str, Any] = {
        "git": {"url": "https://git.example/team/gitops.git", "branch": "main"},
        "overlay": {"path": f"k8s/overlays/{name}"},
        "images": [{"name": APP}, {"name": WORKER}],
    }
    body.update(spec)
    return {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": body,
    }


def application(images: dict[str, str], *, health: str = "Healthy", sync: str = "Synced") -> Object:
    """An Argo CD Application's status as Argo CD writes it."""
    return {
        "metadata": {"name": "dev", "namespace": "argocd"},
        "status": {
            "health": {"status": health},
            "sync": {"status": sync},
            "summary": {"images": [f"{image}:{tag}" for image, tag in images.items()]},
        },
    }


def promotion(
    name: str = "p1",
    version: str = NEW,
    *,
    uid: str = "uid-1",
    generation: int = 1,
    created: dt.datetime = T0,
    **spec: Any,
) -> Object:
    """A Promotion object as the API server stores it."""
    return {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Promotion",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid,
            "generation": generation,
            "creationTimestamp": timestamp(created),
            "annotations": {"promotion.gitops.dev/requested-by": "alice"},
        },
        "spec": {"environment": "prod", "version": version, **spec},
    }


@dataclass
class World:
    """The fakes, one Promotion being driven, and the clock."""

    cluster: FakeCluster = field(default_factory=FakeCluster)
    registry: FakeRegistry = field(
        default_factory=lambda: FakeRegistry(tags={APP: {NEW, NEWER}, WORKER: {NEW, NEWER}})
    )
    repo: FakeRepository = field(
        default_factory=lambda: FakeRepository(files={PROD_OVERLAY: overlay()})
    )
    config: OperatorConfig = field(
        default_factory=lambda: OperatorConfig(
            backoff_initial=2.0, backoff_max=60.0, health_namespaces=frozenset({"argocd"})
        )
    )
    moment: dt.datetime = T0
    delays: list[float] = field(default_factory=list)
    notifier: FakeNotifier = field(default_factory=FakeNotifier)

    def __post_init__(self) -> None:
        self.cluster.environments[(NS, "prod")] = environment()
        self.seed_commits = len(self.repo.commits)

    def add(self, obj: Object) -> None:
        """Store an object of our kinds."""
        store = self.cluster.promotions if obj["kind"] == "Promotion" else self.cluster.environments
        store[(NS, obj["metadata"]["name"])] = obj

    def drive(
        self,
        name: str = "p1",
        *,
        rounds: int = 200,
        during: Callable[[World, int], None] | None = None,
    ) -> Object:
        """Reconcile until the generation is finished; the clock follows the delays."""
        ports = fake_ports(self.cluster, self.registry, self.repo, self.notifier)
        for attempt in range(rounds):
            if during is not None:
                during(self, attempt)
            delay = reconcile(
                self.config,
                ports,
                self.cluster.promotion(NS, name),
                attempt=attempt,
                moment=self.moment,
            )
            if delay is None:
                return self.cluster.promotion(NS, name)
            self.delays.append(delay)
            self.moment += dt.timedelta(seconds=delay)
        raise AssertionError(f"{name} did not finish in {rounds} rounds")

    @property
    def new_commits(self) -> int:
        """Commits made since the world was built (by anyone)."""
        return len(self.repo.commits) - self.seed_commits


def with_upstream(world: World, app: Object | None, **upstream_spec: Any) -> None:
    """Give prod an upstream `dev` observed through an Argo CD Application."""
    world.add(environment("dev", health={"argocd": {"application": "dev"}}, **upstream_spec))
    world.cluster.environments[(NS, "prod")]["spec"]["upstream"] = "dev"
    if app is not None:
        world.cluster.applications[("argocd", "dev")] = app


def dev_runs(version: str, **kwargs: str) -> Object:
    """dev's Application running `version` for both images."""
    return application({APP: version, WORKER: version}, **kwargs)


@dataclass(frozen=True)
class Case:
    """One row of the table."""

    arrange: Callable[[World], None]
    phase: Phase
    reason: Reason
    message: str
    commits: int = 0
    checks: tuple[tuple[str, str], ...] | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    warns: bool | None = None  # default: a Warning Event exactly when it fails


def _nothing(world: World) -> None:
    del world


def _set(**spec: Any) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        world.cluster.environments[(NS, "prod")]["spec"].update(spec)

    return arrange


def _missing_tag(world: World) -> None:
    world.registry.tags[WORKER] = {OLD}


def _registry_refuses(world: World) -> None:
    world.registry.errors[APP] = PermanentError(Reason.REGISTRY_AUTH_FAILED, "refused")


def _no_environment(world: World) -> None:
    del world.cluster.environments[(NS, "prod")]


def _unknown_upstream(world: World) -> None:
    world.cluster.environments[(NS, "prod")]["spec"]["upstream"] = "nowhere"


def _upstream_without_health(world: World) -> None:
    world.add(environment("dev"))
    world.cluster.environments[(NS, "prod")]["spec"]["upstream"] = "dev"


def _already_there(world: World) -> None:
    world.repo.commit({PROD_OVERLAY: overlay(NEW, NEW)}, "a human promoted by hand")
    world.seed_commits = len(world.repo.commits)


def _overlay_lacks_worker(world: World) -> None:
    world.repo.commit({PROD_OVERLAY: overlay(OLD, None)})
    world.seed_commits = len(world.repo.commits)


def _push_refused(world: World) -> None:
    world.repo.push_errors.append(GitAuthError("the server rejected the token"))


def _push_unreachable_once(world: World) -> None:
    world.repo.push_errors.append(GitUnreachableError("the git server could not be reached"))


def _push_unreachable_always(world: World) -> None:
    world.repo.push_errors.extend(
        GitUnreachableError("the git server could not be reached") for _ in range(500)
    )


def _git_secret_missing(world: World) -> None:
    world.cluster.environments[(NS, "prod")]["spec"]["git"]["secretRef"] = {"name": "creds"}


def _already_pushed_before_a_crash(world: World) -> None:
    message = commit_message(
        namespace=NS,
        name="p1",
        uid="uid-1",
        generation=1,
        environment="prod",
        old=OLD,
        new=NEW,
        reason=None,
        requested_by="alice",
    )
    world.repo.commit({PROD_OVERLAY: overlay(NEW, NEW)}, message)
    world.seed_commits = len(world.repo.commits)


def _newer_promotion_waiting(world: World) -> None:
    world.add(promotion("p2", NEWER, uid="uid-2", created=T0 + dt.timedelta(seconds=1)))


def _newer_promotion_failed(world: World) -> None:
    newer = promotion("p2", NEWER, uid="uid-2", created=T0 + dt.timedelta(seconds=1))
    newer["status"] = {"phase": "Failed", "observedGeneration": 1, "startedAt": "x"}
    world.add(newer)


def _upstream(app: Object | None, **spec: Any) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        with_upstream(world, app, **spec)

    return arrange


def _soaked_upstream(world: World) -> None:
    with_upstream(world, dev_runs(NEW))
    world.cluster.environments[(NS, "prod")]["spec"]["soak"] = "10m"
    dev = world.cluster.environments[(NS, "dev")]
    since = timestamp(T0 - dt.timedelta(minutes=4))
    dev["status"] = {
        "health": "Healthy",
        "liveVersion": NEW,
        "healthySince": since,
        # as the operator's refresh writes it: sealed with its key
        "healthySinceSeal": healthy_since_seal(
            world.config.status_key, uid="", live_version=NEW, healthy_since=since
        ),
    }


def _api_server_down(world: World) -> None:
    world.cluster.fail_reads_with = RetryableError(
        Reason.KUBERNETES_API_ERROR, "cannot list promotions: API server answered 503"
    )


def _promoted(world: World, name: str, old: str, new: str) -> str:
    """A commit an earlier Promotion `name` pushed, moving prod from `old` to `new`."""
    message = commit_message(
        namespace=NS,
        name=name,
        uid=f"uid-{name}",
        generation=1,
        environment="prod",
        old=old,
        new=new,
        reason="earlier",
        requested_by="bob",
    )
    sha = world.repo.commit({PROD_OVERLAY: overlay(new, new)}, message)
    world.seed_commits = len(world.repo.commits)
    return sha


def _moved_on(world: World) -> None:
    """prod was promoted to NEW, then on to NEWER; dev runs NEWER now."""
    _promoted(world, "to-new", OLD, NEW)
    _promoted(world, "to-newer", NEW, NEWER)
    with_upstream(world, dev_runs(NEWER))


def _newer_by_hand(world: World) -> None:
    """A human moved prod to NEWER (no promotion ever pushed NEW); dev runs NEWER."""
    world.repo.commit({PROD_OVERLAY: overlay(NEWER, NEWER)}, "hotfix by hand")
    world.seed_commits = len(world.repo.commits)
    with_upstream(world, dev_runs(NEWER))


def _moved_on_undated(world: World) -> None:
    """Versions without dates: prod went release-1 -> release-2 -> release-3."""
    world.cluster.environments[(NS, "prod")]["spec"]["versionPattern"] = r"^release-\d+$"
    for image in (APP, WORKER):
        world.registry.tags[image] = {"release-1", "release-2", "release-3"}
    _promoted(world, "r1", OLD, "release-1")
    _promoted(world, "r2", "release-1", "release-2")
    _promoted(world, "r3", "release-2", "release-3")


def _moved_on_and_tag_gone(world: World) -> None:
    _moved_on(world)
    world.registry.tags[WORKER] = {NEWER}


def _upstream_in_another_teams_namespace(world: World) -> None:
    with_upstream(world, dev_runs(NEW))
    world.cluster.environments[(NS, "dev")]["spec"]["health"]["argocd"]["namespace"] = "payroll"


# -- gates: approvals and windows --------------------------------------------------------


def approval(
    by: str,
    *,
    groups: tuple[str, ...] = (),
    version: str = NEW,
    generation: int = 1,
    created: dt.datetime = T0 + dt.timedelta(seconds=5),
) -> Object:
    """A PromotionApproval of p1 as stored after the admission policy stamped its approver."""
    return {
        "metadata": {"name": f"p1-{by}-{generation}", "namespace": NS,
                     "creationTimestamp": timestamp(created)},
        "spec": {"promotion": "p1", "generation": generation, "version": version,
                 "approver": {"username": by, "groups": list(groups)}},
    }  # fmt: skip


def _approved_by(*approvals: Object) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        world.cluster.environments[(NS, "prod")]["spec"]["approval"] = {
            "required": 1,
            "users": ["alice", "bob"],
            "groups": ["release-managers"],
        }
        for obj in approvals:
            world.cluster.approvals[(NS, obj["metadata"]["name"])] = obj

    return arrange


def _windows(*windows: dict[str, Any]) -> Callable[[World], None]:
    return _set(windows=list(windows))


def _policy(**spec: Any) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        world.cluster.policies["stop"] = {"metadata": {"name": "stop"}, "spec": spec}

    return arrange


def _closed_for(minutes: int, name: str = "release") -> dict[str, Any]:
    return {"kind": "deny", "name": name, "until": timestamp(T0 + dt.timedelta(minutes=minutes))}


def _argocd_sync_window(**window: Any) -> Callable[[World], None]:
    """prod observed through Argo CD Application `prod` of AppProject `tv`, which has one
    sync window."""

    def arrange(world: World) -> None:
        spec = world.cluster.environments[(NS, "prod")]["spec"]
        spec["health"] = {"argocd": {"application": "prod", "syncWindows": True}}
        app = application({APP: NEW, WORKER: NEW})
        app["spec"] = {"project": "tv", "destination": {"namespace": "tvhub-prod"}}
        world.cluster.applications[("argocd", "prod")] = app
        world.cluster.projects[("argocd", "tv")] = {"spec": {"syncWindows": [window]}}

    return arrange


def _both(*arrangements: Callable[[World], None]) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        for arrangement in arrangements:
            arrangement(world)

    return arrange


_GATED = (("VersionPattern", "Passed"), ("TagExists", "Passed"), ("TagExists", "Passed"))


CASES = {
    "a re-created Promotion of a version prod moved away from is refused": Case(
        _moved_on,
        Phase.FAILED,
        Reason.WOULD_ROLL_BACK,
        f"prod runs {NEWER} and {NEW} is dated 2025-08-19, before {NEWER}",
        checks=(
            ("VersionPattern", "Passed"),
            ("TagExists", "Passed"),
            ("TagExists", "Passed"),
            ("RollbackGuard", "Failed"),
        ),
    ),
    "an earlier date is refused even when no promotion pushed it": Case(
        _newer_by_hand, Phase.FAILED, Reason.WOULD_ROLL_BACK, "Set spec.rollback: true"
    ),
    "an undated version prod moved away from is refused": Case(
        _moved_on_undated,
        Phase.FAILED,
        Reason.WOULD_ROLL_BACK,
        "already moved away from release-1",
        spec={"version": "release-1"},
    ),
    "a rollback to a version pushed before needs no upstream proof": Case(
        _moved_on,
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        checks=(
            ("VersionPattern", "Passed"),
            ("TagExists", "Passed"),
            ("TagExists", "Passed"),
            ("RollbackGuard", "Passed"),
        ),
        spec={"rollback": True},
    ),
    "a rollback to a version prod never ran goes through the upstream checks": Case(
        _newer_by_hand,
        Phase.FAILED,
        Reason.UPSTREAM_VERSION_MISMATCH,
        "timed out after 1m",
        checks=(
            ("VersionPattern", "Passed"),
            ("TagExists", "Passed"),
            ("TagExists", "Passed"),
            ("RollbackGuard", "Passed"),
            ("UpstreamHealthy", "Passed"),
            ("UpstreamVersion", "Waiting"),
        ),
        spec={"rollback": True, "timeout": "1m"},
    ),
    "a rollback still needs its tag in the registry": Case(
        _moved_on_and_tag_gone,
        Phase.FAILED,
        Reason.TAG_MISSING,
        "timed out after 1m: tag " + NEW,
        spec={"rollback": True, "timeout": "1m"},
    ),
    "a newer version after a rollback is a plain promotion": Case(
        _upstream(dev_runs(NEW)),
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        spec={"rollback": True},
    ),
    "a health source in another team's namespace fails": Case(
        _upstream_in_another_teams_namespace,
        Phase.FAILED,
        Reason.HEALTH_NAMESPACE_FORBIDDEN,
        "health.argocd.namespace 'payroll' is not allowed",
    ),
    "promotes, one commit": Case(
        _nothing,
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "prod promoted to " + NEW,
        commits=1,
        checks=(("VersionPattern", "Passed"), ("TagExists", "Passed"), ("TagExists", "Passed")),
    ),
    "version outside the pattern fails before any registry call": Case(
        _set(versionPattern=r"^release-\d+$"),
        Phase.FAILED,
        Reason.VERSION_MISMATCH_PATTERN,
        "does not match Environment prod's versionPattern",
        checks=(("VersionPattern", "Failed"),),
    ),
    "a missing tag waits, then fails at the timeout with its reason": Case(
        _missing_tag,
        Phase.FAILED,
        Reason.TAG_MISSING,
        "timed out after 5m: tag " + NEW,
        checks=(("VersionPattern", "Passed"), ("TagExists", "Passed"), ("TagExists", "Waiting")),
        spec={"timeout": "5m"},
    ),
    "refused registry credentials fail at once": Case(
        _registry_refuses,
        Phase.FAILED,
        Reason.REGISTRY_AUTH_FAILED,
        "refused",
        checks=(("VersionPattern", "Passed"), ("TagExists", "Failed")),
    ),
    "an unknown Environment fails": Case(
        _no_environment, Phase.FAILED, Reason.ENVIRONMENT_NOT_FOUND, "Environment 'prod' not found"
    ),
    "an unknown upstream fails": Case(
        _unknown_upstream,
        Phase.FAILED,
        Reason.ENVIRONMENT_NOT_FOUND,
        "upstream Environment 'nowhere' of prod not found",
    ),
    "an upstream without health fails": Case(
        _upstream_without_health,
        Phase.FAILED,
        Reason.UPSTREAM_HAS_NO_HEALTH,
        "cannot prove a version",
    ),
    "an unhealthy upstream blocks until the timeout": Case(
        _upstream(dev_runs(NEW, health="Degraded")),
        Phase.FAILED,
        Reason.UPSTREAM_NOT_HEALTHY,
        "timed out after 3m: upstream dev is Degraded",
        checks=(
            ("VersionPattern", "Passed"),
            ("TagExists", "Passed"),
            ("TagExists", "Passed"),
            ("UpstreamHealthy", "Waiting"),
        ),
        spec={"timeout": "3m"},
    ),
    "an upstream mid-sync blocks": Case(
        _upstream(dev_runs(NEW, sync="OutOfSync")),
        Phase.FAILED,
        Reason.UPSTREAM_NOT_HEALTHY,
        "sync OutOfSync",
        spec={"timeout": "1m"},
    ),
    "an upstream on another version for one image blocks": Case(
        _upstream(application({APP: NEW, WORKER: OLD})),
        Phase.FAILED,
        Reason.UPSTREAM_VERSION_MISMATCH,
        f"{WORKER}:{OLD}",
        checks=(
            ("VersionPattern", "Passed"),
            ("TagExists", "Passed"),
            ("TagExists", "Passed"),
            ("UpstreamHealthy", "Passed"),
            ("UpstreamVersion", "Waiting"),
        ),
        spec={"timeout": "2m"},
    ),
    "an upstream running the version promotes": Case(
        _upstream(dev_runs(NEW)),
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        checks=(
            ("VersionPattern", "Passed"),
            ("TagExists", "Passed"),
            ("TagExists", "Passed"),
            ("UpstreamHealthy", "Passed"),
            ("UpstreamVersion", "Passed"),
        ),
    ),
    "the soak is waited out, then it promotes": Case(
        _soaked_upstream,
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        checks=(
            ("VersionPattern", "Passed"),
            ("TagExists", "Passed"),
            ("TagExists", "Passed"),
            ("UpstreamHealthy", "Passed"),
            ("UpstreamVersion", "Passed"),
            ("Soak", "Passed"),
        ),
    ),
    "an allowed approver's approval promotes": Case(
        _approved_by(approval("bob")),
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        checks=(*_GATED, ("Approval", "Passed")),
    ),
    "a member of an allowed group approves": Case(
        _approved_by(approval("carol", groups=("system:authenticated", "release-managers"))),
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
    ),
    "the requester approving their own Promotion does not count": Case(
        _approved_by(approval("alice")),
        Phase.FAILED,
        Reason.AWAITING_APPROVAL,
        "alice (the requester cannot approve their own Promotion)",
        checks=(*_GATED, ("Approval", "Waiting")),
        spec={"timeout": "2m"},
    ),
    "an approver outside the allowed users and groups does not count": Case(
        _approved_by(approval("mallory", groups=("developers",))),
        Phase.FAILED,
        Reason.AWAITING_APPROVAL,
        "0 of 1 approval; not counted: mallory (not in approval.users or approval.groups)",
        spec={"timeout": "2m"},
    ),
    "an approval of another version does not count": Case(
        _approved_by(approval("bob", version=NEWER)),
        Phase.FAILED,
        Reason.AWAITING_APPROVAL,
        "0 of 1 approval; 1 for an earlier generation or another version",
        spec={"timeout": "2m"},
    ),
    "an approval older than the Promotion does not count": Case(
        _approved_by(approval("bob", created=T0 - dt.timedelta(days=1))),
        Phase.FAILED,
        Reason.AWAITING_APPROVAL,
        "1 for an earlier generation",
        spec={"timeout": "1m"},
    ),
    "a closed window waits, then it promotes when the window opens": Case(
        _windows(_closed_for(10)),
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        checks=(*_GATED, ("PromotionWindow", "Passed")),
    ),
    "a window that opens after the timeout fails with WindowClosed": Case(
        _windows(_closed_for(60)),
        Phase.FAILED,
        Reason.WINDOW_CLOSED,
        "after this Promotion's timeout",
        checks=(*_GATED, ("PromotionWindow", "Waiting")),
        spec={"timeout": "5m"},
    ),
    "overrideWindow passes an Environment's window": Case(
        _windows(_closed_for(600)),
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        spec={"overrideWindow": True},
    ),
    "a PromotionPolicy freeze stops the line": Case(
        _policy(freeze=True, message="incident 42"),
        Phase.FAILED,
        Reason.PROMOTIONS_FROZEN,
        "frozen by PromotionPolicy stop: incident 42",
        spec={"timeout": "2m"},
    ),
    "overrideWindow never passes a freeze": Case(
        _policy(freeze=True),
        Phase.FAILED,
        Reason.PROMOTIONS_FROZEN,
        "frozen by PromotionPolicy stop",
        spec={"timeout": "2m", "overrideWindow": True},
    ),
    "overrideWindow does not pass a policy's window unless the policy allows it": Case(
        _policy(windows=[_closed_for(600, "quarter-end")]),
        Phase.FAILED,
        Reason.WINDOW_CLOSED,
        "PromotionPolicy stop: deny window 'quarter-end'",
        spec={"timeout": "2m", "overrideWindow": True},
    ),
    "a freeze of other namespaces leaves this one alone": Case(
        _policy(freeze=True, namespaces=["payroll"]),
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        checks=_GATED,
    ),
    "overrideWindow passes a policy's window that allows overrides": Case(
        _policy(windows=[_closed_for(600, "quarter-end")], allowOverride=True),
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        spec={"overrideWindow": True},
    ),
    "an Argo CD sync window that blocks prod holds the push": Case(
        _argocd_sync_window(
            kind="deny", schedule="0 12 * * *", duration="1h", applications=["pro*"]
        ),
        Phase.FAILED,
        Reason.WINDOW_CLOSED,
        "Argo CD AppProject tv: deny sync window '0 12 * * *' (UTC, 1h); opens at "
        "2025-08-19T13:00:00Z",
        spec={"timeout": "5m"},
    ),
    "an Argo CD sync window for other namespaces does not hold it": Case(
        _argocd_sync_window(
            kind="deny", schedule="0 12 * * *", duration="1h", namespaces=["payments-*"]
        ),
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        checks=(*_GATED, ("PromotionWindow", "Passed")),
    ),
    "an unreadable Argo CD sync window holds (fails closed)": Case(
        _argocd_sync_window(
            kind="deny", schedule="0 12 * * *", duration="an hour", applications=["*"]
        ),
        Phase.FAILED,
        Reason.INVALID_SPEC,
        "sync window 0 has no readable duration",
        spec={"timeout": "1m"},
    ),
    "a dry run is not held by a closed window or a missing approval": Case(
        _both(_windows(_closed_for(600)), _approved_by()),
        Phase.SUCCEEDED,
        Reason.DRY_RUN,
        "dry run: prod would move to " + NEW,
        checks=(*_GATED, ("Approval", "Passed"), ("PromotionWindow", "Passed")),
        spec={"dryRun": True},
    ),
    "a dry run shows the diff and pushes nothing": Case(
        _nothing,
        Phase.SUCCEEDED,
        Reason.DRY_RUN,
        "dry run: prod would move to " + NEW,
        spec={"dryRun": True},
    ),
    "an overlay already at the version is a success without a commit": Case(
        _already_there, Phase.SUCCEEDED, Reason.ALREADY_AT_VERSION, "prod already at " + NEW
    ),
    "an image missing from the overlay fails": Case(
        _overlay_lacks_worker, Phase.FAILED, Reason.IMAGE_NOT_IN_OVERLAY, WORKER
    ),
    "a refused push fails": Case(
        _push_refused, Phase.FAILED, Reason.GIT_AUTH_FAILED, "the server rejected the token"
    ),
    "an unreachable remote is retried, then it promotes": Case(
        _push_unreachable_once,
        Phase.SUCCEEDED,
        Reason.PROMOTED,
        "promoted",
        commits=1,
        warns=True,
    ),
    "a remote that stays unreachable fails at the timeout": Case(
        _push_unreachable_always,
        Phase.FAILED,
        Reason.GIT_UNREACHABLE,
        "timed out after 2m: the git server could not be reached",
        spec={"timeout": "2m"},
    ),
    "a missing git Secret fails": Case(
        _git_secret_missing, Phase.FAILED, Reason.SECRET_INVALID, "Secret 'creds'"
    ),
    "a commit pushed before a crash is recovered, not repeated": Case(
        _already_pushed_before_a_crash, Phase.SUCCEEDED, Reason.PROMOTED, "promoted"
    ),
    "a newer Promotion supersedes a waiting one": Case(
        _newer_promotion_waiting, Phase.SUPERSEDED, Reason.SUPERSEDED, "superseded by the newer"
    ),
    "a newer Promotion that failed does not supersede": Case(
        _newer_promotion_failed, Phase.SUCCEEDED, Reason.PROMOTED, "promoted", commits=1
    ),
    "API errors are retried until the timeout": Case(
        _api_server_down,
        Phase.FAILED,
        Reason.KUBERNETES_API_ERROR,
        "timed out after 1m: cannot list promotions",
        spec={"timeout": "1m"},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_generation_ends_where_it_should(case: Case) -> None:
    world = World()
    case.arrange(world)
    world.add(promotion(**case.spec))

    final = world.drive()

    status = final["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == case.phase
    assert ready["reason"] == case.reason
    assert ready["status"] == ("True" if case.phase == Phase.SUCCEEDED else "False")
    assert case.message in status["message"]
    assert world.new_commits == case.commits
    assert status["observedGeneration"] == 1
    assert status["finishedAt"] >= status["startedAt"][:19]
    if case.checks is not None:
        assert [(c["name"], c["status"]) for c in status["checks"]] == list(case.checks)
    warned = any(event.warning for event in world.cluster.events)
    assert warned == (case.warns if case.warns is not None else case.phase == Phase.FAILED)
    # one notice when the generation ends (none for a dry run), saying how it ended
    notices = world.notifier.notices
    if case.spec.get("dryRun"):
        assert notices == []
    else:
        assert [(n.event, n.reason) for n in notices] == [(case.phase.value, case.reason.value)]
        assert notices[0].to_version == case.spec.get("version", NEW)
        assert notices[0].commit == status.get("commit")


def test_a_closed_window_is_looked_at_again_exactly_when_it_opens() -> None:
    world = World()
    _windows(_closed_for(10))(world)
    world.add(promotion())

    status = world.drive()["status"]

    assert status["phase"] == Phase.SUCCEEDED
    assert sum(world.delays) == 600.0  # the backoff, shortened to land on the opening
    waiting = next(e for e in world.cluster.events if e.reason == "Verifying")
    assert "deny window 'release'" in waiting.message
    assert f"opens at {timestamp(T0 + dt.timedelta(minutes=10))}" in waiting.message


def test_approvers_and_an_override_are_in_the_commit_and_on_status() -> None:
    world = World()
    _approved_by(approval("bob"), approval("carol", groups=("release-managers",)),
                 approval("alice"))(world)  # fmt: skip
    world.cluster.environments[(NS, "prod")]["spec"]["approval"]["required"] = 2
    _windows(_closed_for(600, "friday"))(world)
    world.add(promotion(overrideWindow=True))

    status = world.drive()["status"]

    trailers = trailer_block(world.repo.head.message)
    assert [v for k, v in trailers if k == "Approved-By"] == ["bob", "carol"]
    assert dict(trailers)["Window-Override"] == "Environment prod: deny window 'friday'"
    assert status["approvedBy"] == ["bob", "carol"]
    record = next(c for c in status["checks"] if c["name"] == "Approval")
    assert record["message"].startswith("2 of 2 approvals (bob, carol); not counted: alice")


def test_a_new_version_needs_a_new_approval() -> None:
    world = World()
    _approved_by(approval("bob"))(world)
    world.add(promotion(timeout="1m"))
    world.drive()
    assert world.new_commits == 1
    obj = world.cluster.promotions[(NS, "p1")]
    obj["metadata"]["generation"] = 2
    obj["spec"]["version"] = NEWER

    status = world.drive()["status"]

    assert status["phase"] == Phase.FAILED
    assert "1 for an earlier generation or another version" in status["message"]
    assert world.new_commits == 1


def test_a_promotion_commit_carries_its_identity_and_the_status_names_it() -> None:
    world = World()
    world.add(promotion(reason="button fix"))

    status = world.drive()["status"]

    head = world.repo.head
    trailers = dict(trailer_block(head.message))
    assert trailers["Promotion"] == f"{NS}/p1"
    assert trailers["Promotion-UID"] == "uid-1"
    assert trailers["Promotion-Generation"] == "1"
    assert trailers["Requested-By"] == "alice"
    assert "Reason: button fix" in head.message
    assert status["commit"] == head.sha
    assert status["shortCommit"] == head.sha[:7]
    assert status["previousVersion"] == OLD
    assert head.files[PROD_OVERLAY] == overlay(NEW, NEW)
    assert status["diff"].startswith(f"--- a/{PROD_OVERLAY}")
    assert f"+    newTag: {NEW}" in status["diff"]


def test_recovery_rebuilds_status_from_the_found_commit() -> None:
    world = World()
    _already_pushed_before_a_crash(world)
    pushed = world.repo.head.sha
    world.add(promotion())

    status = world.drive()["status"]

    assert status["commit"] == pushed
    assert status["previousVersion"] == OLD
    assert f"-    newTag: {OLD}" in status["diff"]


def test_a_dry_run_reports_the_diff() -> None:
    world = World()
    world.add(promotion(dryRun=True))

    status = world.drive()["status"]

    assert f"+    newTag: {NEW}" in status["diff"]
    assert "commit" not in status
    committed = next(c for c in status["conditions"] if c["type"] == "Committed")
    assert (committed["status"], committed["reason"]) == ("False", "DryRunSucceeded")


def test_a_tag_that_appears_later_is_promoted_and_the_wait_backs_off() -> None:
    world = World()
    world.registry.tags[WORKER] = {OLD}

    def ci_pushes_late(w: World, attempt: int) -> None:
        if attempt == 4:
            w.registry.tags[WORKER].add(NEW)

    world.add(promotion())
    final = world.drive(during=ci_pushes_late)

    assert final["status"]["phase"] == Phase.SUCCEEDED
    assert world.delays == [2.0, 4.0, 8.0, 16.0]
    reasons = [e.reason for e in world.cluster.events]
    assert reasons == ["Pending", "Verifying", "Promoting", "Promoted"]


def test_the_soak_wait_is_shortened_to_what_remains() -> None:
    world = World()
    _soaked_upstream(world)
    world.config = OperatorConfig(
        backoff_initial=600.0,
        backoff_max=600.0,
        health_namespaces=frozenset({"argocd"}),
        status_key=world.config.status_key,
    )
    world.add(promotion())

    world.drive()

    # 4 of 10 minutes were soaked at the first look: the next look is 6 minutes later
    assert world.delays == [360.0]


def test_a_forged_healthy_since_does_not_shorten_the_soak() -> None:
    world = World()
    _soaked_upstream(world)
    dev = world.cluster.environments[(NS, "dev")]
    # a tenant's status patch: an hour-old start, keeping the operator's seal of the real one
    dev["status"]["healthySince"] = timestamp(T0 - dt.timedelta(hours=1))
    world.config = OperatorConfig(
        backoff_initial=600.0,
        backoff_max=600.0,
        health_namespaces=frozenset({"argocd"}),
        status_key=world.config.status_key,
    )
    world.add(promotion())

    final = world.drive()

    # the forged hour never counts: the whole 10 minutes remain at every look (no refresh
    # runs here to seal a new start), so it waits out its 30m timeout and pushes nothing
    assert world.delays == [600.0, 600.0, 600.0]
    assert final["status"]["phase"] == Phase.FAILED
    assert "healthily for 0s of the 10m soak" in final["status"]["message"]
    assert world.new_commits == 0


def test_a_timeout_ends_the_wait_exactly_at_the_deadline() -> None:
    world = World()
    world.registry.tags[WORKER] = set()
    world.config = OperatorConfig(backoff_initial=50.0, backoff_max=50.0)
    world.add(promotion(timeout="2m"))

    final = world.drive()

    assert final["status"]["phase"] == Phase.FAILED
    # 50 + 50, then the last wait is cut to the deadline (+0.5 s): never a round past it
    assert world.delays == [50.0, 50.0, 20.5]


def test_a_finished_generation_is_left_alone() -> None:
    world = World()
    world.add(promotion())
    world.drive()
    writes, events = world.cluster.status_writes, len(world.cluster.events)

    ports = fake_ports(world.cluster, world.registry, world.repo)
    delay = reconcile(world.config, ports, world.cluster.promotion(NS, "p1"), moment=world.moment)

    assert delay is None
    assert (world.cluster.status_writes, len(world.cluster.events)) == (writes, events)
    assert world.registry.calls == 2  # the two tags of the one verification


def test_a_new_generation_starts_afresh_and_commits_again() -> None:
    world = World()
    world.add(promotion())
    first = world.drive()
    edited = promotion(version=NEWER, generation=2)
    edited["status"] = first["status"]
    world.add(edited)

    second = world.drive()["status"]

    assert second["observedGeneration"] == 2
    assert second["phase"] == Phase.SUCCEEDED
    assert second["previousVersion"] == NEW
    assert second["commit"] != first["status"]["commit"]
    assert dict(trailer_block(world.repo.head.message))["Promotion-Generation"] == "2"
    assert world.new_commits == 2


def test_a_promotion_deleted_mid_round_ends_quietly() -> None:
    world = World()
    world.add(promotion())
    obj = world.cluster.promotion(NS, "p1")
    del world.cluster.promotions[(NS, "p1")]

    ports = fake_ports(world.cluster, world.registry, world.repo)
    assert reconcile(world.config, ports, obj, moment=T0) is None
    assert world.new_commits == 0


def test_a_newer_promotion_arriving_during_verification_wins_before_the_push() -> None:
    world = World()
    world.add(promotion())

    def newer_arrives(w: World) -> None:
        # between the checks and the push, someone asks for a newer version
        _newer_promotion_waiting(w)

    world.registry.tags[WORKER] = {OLD}

    def during(w: World, attempt: int) -> None:
        if attempt == 1:
            w.registry.tags[WORKER].add(NEW)
            newer_arrives(w)

    final = world.drive(during=during)

    assert final["status"]["phase"] == Phase.SUPERSEDED
    assert world.new_commits == 0


def test_started_at_is_precise_and_keeps_order() -> None:
    world = World()
    world.add(promotion())
    status = world.drive()["status"]
    assert status["startedAt"] == precise_timestamp(T0)


def test_a_newer_promotion_arriving_just_before_the_push_wins() -> None:
    world = World()
    world.add(promotion())
    world.repo.before_each_push = lambda: _newer_promotion_waiting(world)

    final = world.drive()

    assert final["status"]["phase"] == Phase.SUPERSEDED
    assert "p2" in final["status"]["message"]
    assert world.new_commits == 0


def _finished(name: str, minute: int, **meta: Any) -> Object:
    obj = promotion(name, uid=f"uid-{name}", created=T0 - dt.timedelta(hours=1, minutes=-minute))
    obj["metadata"].update(meta)
    obj["status"] = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "finishedAt": timestamp(T0 - dt.timedelta(hours=1, minutes=-minute)),
    }
    return obj


def test_history_keeps_the_newest_finished_and_never_a_gitops_managed_one() -> None:
    world = World()
    world.config = OperatorConfig(keep_finished=2, health_namespaces=frozenset({"argocd"}))
    for minute, name in enumerate(["old1", "old2", "old3"]):
        world.add(_finished(name, minute))
    world.add(_finished("from-git", 0, annotations={"argocd.argoproj.io/tracking-id": "x"}))
    world.add(_finished("from-flux", 0, labels={"kustomize.toolkit.fluxcd.io/name": "apps"}))
    other_env = _finished("other-env", 0)
    other_env["spec"]["environment"] = "staging"
    world.add(other_env)
    world.add(promotion())

    world.drive()

    left = sorted(name for (_, name) in world.cluster.promotions)
    # p1 (just finished) and old3 are the newest two; managed ones and other Environments stay
    assert left == ["from-flux", "from-git", "old3", "other-env", "p1"]


def test_history_is_kept_whole_by_default() -> None:
    world = World()
    for minute, name in enumerate(["old1", "old2", "old3"]):
        world.add(_finished(name, minute))
    world.add(promotion())

    world.drive()

    assert len(world.cluster.promotions) == 4


def _prod_observed_by_argocd(world: World, app: Object) -> None:
    world.cluster.environments[(NS, "prod")]["spec"]["health"] = {"argocd": {"application": "prod"}}
    world.cluster.applications[("argocd", "prod")] = app


def _deployed(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Deployed")


def test_after_the_push_argo_cd_is_asked_to_look_and_deployed_follows_prod() -> None:
    world = World()
    _prod_observed_by_argocd(world, dev_runs(OLD))
    world.add(promotion())

    def argo_cd_syncs(w: World, attempt: int) -> None:
        if w.cluster.refreshes and attempt >= 3:  # a few looks after the refresh
            w.cluster.applications[("argocd", "prod")] = dev_runs(NEW)

    final = world.drive(during=argo_cd_syncs)

    status = final["status"]
    assert status["phase"] == Phase.SUCCEEDED
    assert world.cluster.refreshes == [("argocd", "prod")]
    assert (_deployed(status)["status"], _deployed(status)["reason"]) == ("True", "Deployed")
    assert [e.reason for e in world.cluster.events][-2:] == ["Promoted", "Deployed"]
    # Ready was True from the push on; the waits in between were short polls
    assert all(delay <= 5.0 for delay in world.delays)


def test_a_deployment_that_never_comes_is_reported_at_the_timeout() -> None:
    world = World()
    _prod_observed_by_argocd(world, dev_runs(OLD, health="Progressing"))
    world.add(promotion(timeout="1m"))

    status = world.drive()["status"]

    deployed = _deployed(status)
    assert status["phase"] == Phase.SUCCEEDED
    assert (deployed["status"], deployed["reason"]) == ("False", "NotDeployed")
    assert "did not run " + NEW in deployed["message"]
    assert any(e.warning and e.reason == "NotDeployed" for e in world.cluster.events)


def test_waiting_for_the_deployment_keeps_the_generation_open() -> None:
    world = World()
    _prod_observed_by_argocd(world, dev_runs(OLD))
    world.add(promotion())
    ports = fake_ports(world.cluster, world.registry, world.repo)

    delay = reconcile(world.config, ports, world.cluster.promotion(NS, "p1"), moment=T0)

    status = world.cluster.promotion(NS, "p1")["status"]
    assert status["phase"] == Phase.SUCCEEDED
    assert _deployed(status)["status"] == "Unknown"
    assert delay == 5.0  # the handler keeps looking
    writes = world.cluster.status_writes
    again = reconcile(world.config, ports, world.cluster.promotion(NS, "p1"), moment=T0)
    assert again == 5.0
    assert world.cluster.status_writes == writes + 1  # the wait's message, once
    reconcile(world.config, ports, world.cluster.promotion(NS, "p1"), moment=T0)
    assert world.cluster.status_writes == writes + 1  # nothing new: no write


def test_an_environment_without_health_has_no_deployed_condition() -> None:
    world = World()
    world.add(promotion())
    status = world.drive()["status"]
    assert not any(c["type"] == "Deployed" for c in status["conditions"])


def test_a_forged_promoting_status_never_skips_the_checks() -> None:
    world = World()
    world.registry.tags[APP] = set()  # the tag does not exist
    forged = promotion(timeout="1m")
    forged["status"] = {"phase": "Promoting", "observedGeneration": 1, "startedAt": "x"}
    world.add(forged)

    final = world.drive()

    assert final["status"]["phase"] == Phase.FAILED
    assert final["status"]["conditions"][0]["reason"] == Reason.TAG_MISSING
    assert world.new_commits == 0


def test_a_push_whose_answer_was_lost_is_found_and_not_repeated() -> None:
    world = World()
    world.repo.lost_answers.append(GitUnreachableError("connection reset mid-push"))
    world.add(promotion())

    final = world.drive()

    assert final["status"]["phase"] == Phase.SUCCEEDED
    assert world.new_commits == 1
    assert final["status"]["commit"] == world.repo.head.sha


def test_a_forged_future_start_neither_disables_the_timeout_nor_wins_newest_wins() -> None:
    world = World()
    world.registry.tags[WORKER] = set()
    forged = promotion(timeout="1m")
    forged["status"] = {
        "phase": "Verifying",
        "observedGeneration": 1,
        "startedAt": "2999-01-01T00:00:00.000000Z",
    }
    world.add(forged)

    final = world.drive()

    assert final["status"]["phase"] == Phase.FAILED  # the timeout still ends it
    assert final["status"]["startedAt"] == precise_timestamp(T0)


def test_the_requester_is_recorded_when_the_generation_starts() -> None:
    world = World()
    world.registry.tags[WORKER] = {OLD}
    world.add(promotion())

    def spoof_after_start(w: World, attempt: int) -> None:
        obj = w.cluster.promotions[(NS, "p1")]
        if attempt == 1:  # an annotate after the request was accepted
            obj["metadata"]["annotations"]["promotion.gitops.dev/requested-by"] = "mallory"
        if attempt == 2:
            w.registry.tags[WORKER].add(NEW)

    final = world.drive(during=spoof_after_start)

    assert final["status"]["requestedBy"] == "alice"
    assert dict(trailer_block(world.repo.head.message))["Requested-By"] == "alice"


def test_a_live_tag_that_is_no_version_never_reaches_status_or_proves_anything() -> None:
    world = World()
    # a health source that reports something else than a version (an IMDS field, say)
    with_upstream(world, application({APP: "AKIAIOSFODNN7EXAMPLE", WORKER: NEW}))
    world.add(promotion(timeout="1m"))

    final = world.drive()

    upstream_version = next(c for c in final["status"]["checks"] if c["name"] == "UpstreamVersion")
    assert "AKIA" not in upstream_version["message"]
    assert final["status"]["phase"] == Phase.FAILED


def test_a_vouched_rollback_names_the_promotion_and_commit_that_vouch_for_it() -> None:
    world = World()
    _moved_on(world)
    vouching = world.repo.commits[-2]
    world.add(promotion("back", NEW, uid="uid-back", rollback=True, reason="v20250820 broke"))

    final = world.drive("back")

    guard = next(c for c in final["status"]["checks"] if c["name"] == "RollbackGuard")
    assert vouching.sha[:12] in guard["message"]
    assert f"Promotion {NS}/to-new" in guard["message"]
    assert vouching.when.isoformat() in guard["message"]
    assert world.repo.head.files[PROD_OVERLAY] == overlay(NEW, NEW)
    assert world.repo.head.message.startswith(f"promote prod: {NEWER} -> {NEW}")


def test_a_refused_rollback_pushes_nothing_and_says_how_to_allow_it() -> None:
    world = World()
    _moved_on(world)
    world.add(promotion("to-new", NEW, uid="uid-recreated"))

    final = world.drive("to-new")

    assert world.new_commits == 0
    assert "spec.rollback: true" in final["status"]["message"]
    assert any(e.reason == "WouldRollBack" and e.warning for e in world.cluster.events)


def test_a_success_notice_names_from_to_who_why_and_the_commit() -> None:
    world = World()
    world.add(promotion(reason="button fix"))

    final = world.drive()

    (notice,) = world.notifier.notices
    assert notice.event == "Succeeded"
    assert (notice.namespace, notice.promotion, notice.environment) == (NS, "p1", "prod")
    assert (notice.from_version, notice.to_version) == (OLD, NEW)
    assert (notice.who, notice.why) == ("alice", "button fix")
    assert notice.commit == final["status"]["commit"]


def test_waiting_rounds_send_nothing_and_a_replayed_finish_sends_nothing_again() -> None:
    world = World()
    _missing_tag(world)
    world.add(promotion(timeout="1m"))
    ports = fake_ports(world.cluster, world.registry, world.repo, world.notifier)
    config = world.config
    assert reconcile(config, ports, world.cluster.promotion(NS, "p1"), moment=T0) is not None
    assert world.notifier.notices == []  # Verifying is no news

    world.drive()
    reconcile(config, ports, world.cluster.promotion(NS, "p1"), moment=T0 + dt.timedelta(hours=1))
    assert [n.event for n in world.notifier.notices] == ["Failed"]


# -- the rollback rule on the commit the push builds on -----------------------------------


def test_a_newer_version_pushed_after_the_checks_is_never_rolled_back() -> None:
    """The checks decide on the head this process last pushed (prod at OLD: NEW moves it
    forward); a human has pushed NEWER since. The edit decides again on the commit it
    builds on, and refuses: nothing is pushed."""
    world = World()
    with_upstream(world, dev_runs(NEW))
    world.repo.known = world.repo.head.sha
    world.repo.commit({PROD_OVERLAY: overlay(NEWER, NEWER)}, "hotfix by hand")
    world.seed_commits = len(world.repo.commits)
    world.add(promotion())

    final = world.drive()

    assert world.new_commits == 0
    assert final["status"]["phase"] == Phase.FAILED
    ready = next(c for c in final["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "WouldRollBack"
    assert f"runs {NEWER}" in ready["message"]
    assert world.repo.snapshots == 0  # the checks needed no fetch


def test_a_refusal_on_the_last_known_head_is_decided_again_on_a_fetch() -> None:
    """This process last left prod at NEWER; a human has moved it back to OLD since. NEW
    is no rollback of the remote as it is: one fetch says so, and the promotion lands."""
    world = World()
    with_upstream(world, dev_runs(NEW))
    world.repo.commit({PROD_OVERLAY: overlay(NEWER, NEWER)}, "someone promoted NEWER")
    world.repo.known = world.repo.head.sha
    world.repo.commit({PROD_OVERLAY: overlay(OLD, OLD)}, "reverted by hand")
    world.seed_commits = len(world.repo.commits)
    world.add(promotion())

    final = world.drive()

    assert final["status"]["phase"] == Phase.SUCCEEDED
    assert world.repo.snapshots == 1
    assert world.repo.head.files[PROD_OVERLAY] == overlay(NEW, NEW)


def test_a_known_current_head_costs_the_checks_no_fetch() -> None:
    world = World()
    with_upstream(world, dev_runs(NEW))
    world.add(promotion())

    final = world.drive()

    assert final["status"]["phase"] == Phase.SUCCEEDED
    assert world.repo.snapshots == 0


def test_the_edit_run_again_after_a_rejected_push_keeps_the_rollback_rule() -> None:
    """The checks and the first edit see prod at OLD (NEW moves it forward); a human
    pushes NEWER just before our push, which is rejected; the edit runs again on the
    human's commit, where NEW would roll prod back: nothing is pushed."""
    world = World()
    with_upstream(world, dev_runs(NEW))
    world.add(promotion())
    pushed_by_hand: list[str] = []

    def human_pushes_once() -> None:
        if not pushed_by_hand:
            pushed_by_hand.append(world.repo.commit({PROD_OVERLAY: overlay(NEWER, NEWER)}))

    world.repo.before_each_push = human_pushes_once

    final = world.drive()

    assert pushed_by_hand and world.repo.head.sha == pushed_by_hand[0]
    assert world.new_commits == 1  # the human's alone
    ready = next(c for c in final["status"]["conditions"] if c["type"] == "Ready")
    assert (final["status"]["phase"], ready["reason"]) == (Phase.FAILED, "WouldRollBack")
