"""In-memory fakes of the lifecycle's own ports: the cluster, the registry, the repository.

They implement the protocols in `promotion_operator.k8s.ClusterAPI` and
`promotion_operator.lifecycle.ports`, nothing more, so the state machine can be driven
through every transition in milliseconds. The e2e tier proves the same paths on the real
API server, registry and git remote.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promotion_operator.domain.errors import PermanentError, PromotionError, Reason, RetryableError
from promotion_operator.domain.gitfailures import GitPushRejectedError
from promotion_operator.domain.gitrules import has_trailers
from promotion_operator.domain.images import RegistryCredentials
from promotion_operator.domain.notifications import Notice
from promotion_operator.domain.rollback import PromotionCommit, parse_promotion_commit
from promotion_operator.gitops import Edit, GitAuth, Message, PushResult
from promotion_operator.k8s import NotFoundError, Object
from promotion_operator.lifecycle.ports import Ports, Repository, TagChecker

Key = tuple[str, str]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies `.status` patches."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class Event:
    """An Event the lifecycle posted."""

    name: str
    reason: str
    message: str
    warning: bool


@dataclass
class FakeCluster:
    """The cluster as plain dictionaries keyed by (namespace, name)."""

    environments: dict[Key, Object] = field(default_factory=dict)
    promotions: dict[Key, Object] = field(default_factory=dict)
    secrets: dict[Key, dict[str, bytes]] = field(default_factory=dict)
    applications: dict[Key, Object] = field(default_factory=dict)
    approvals: dict[Key, Object] = field(default_factory=dict)
    projects: dict[Key, Object] = field(default_factory=dict)
    policies: dict[str, Object] = field(default_factory=dict)
    deployments: dict[str, list[Object]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    status_writes: int = 0
    refreshes: list[Key] = field(default_factory=list)
    fail_reads_with: PromotionError | None = None
    fail_status_writes_with: PromotionError | None = None

    def get_environment(self, namespace: str, name: str) -> Object:
        """Return a copy of the stored Environment."""
        self._maybe_fail()
        return copy.deepcopy(self._get(self.environments, namespace, name))

    def list_promotions(self, namespace: str, environment: str) -> list[Object]:
        """Return the Promotions of one Environment (as the field selector would)."""
        self._maybe_fail()
        return [
            copy.deepcopy(obj)
            for (ns, _), obj in self.promotions.items()
            if ns == namespace and (obj.get("spec") or {}).get("environment") == environment
        ]

    def list_approvals(self, namespace: str, promotion: str) -> list[Object]:
        """Return the approvals naming one Promotion (as the field selector would)."""
        self._maybe_fail()
        return [
            copy.deepcopy(obj)
            for (ns, _), obj in self.approvals.items()
            if ns == namespace and (obj.get("spec") or {}).get("promotion") == promotion
        ]

    def list_promotion_policies(self) -> list[Object]:
        """Return the cluster-scoped policies."""
        self._maybe_fail()
        return [copy.deepcopy(obj) for obj in self.policies.values()]

    def patch_status(self, plural: str, namespace: str, name: str, status: Object) -> None:
        """Merge-patch the stored object's status."""
        if self.fail_status_writes_with is not None:
            raise self.fail_status_writes_with
        store = self.promotions if plural == "promotions" else self.environments
        obj = self._get(store, namespace, name)
        obj["status"] = merge_patch(obj.get("status") or {}, status)
        self.status_writes += 1

    def delete_promotion(self, namespace: str, name: str, uid: str) -> None:
        """Delete a Promotion if it still has this uid."""
        obj = self._get(self.promotions, namespace, name)
        if obj["metadata"]["uid"] == uid:
            del self.promotions[(namespace, name)]

    def get_secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """Return a Secret's data."""
        return dict(self._get(self.secrets, namespace, name))

    def get_argocd_application(self, namespace: str, name: str) -> Object:
        """Return an Argo CD Application."""
        return copy.deepcopy(self._get(self.applications, namespace, name))

    def get_argocd_project(self, namespace: str, name: str) -> Object:
        """Return an Argo CD AppProject."""
        return copy.deepcopy(self._get(self.projects, namespace, name))

    def list_deployments(self, namespace: str, selector: str | None) -> list[Object]:
        """Return the Deployments of a namespace (selectors are not modelled)."""
        del selector
        return copy.deepcopy(self.deployments.get(namespace, []))

    def refresh_argocd_application(self, namespace: str, name: str) -> None:
        """Remember the refresh request, as Argo CD's annotation would."""
        self._get(self.applications, namespace, name)
        self.refreshes.append((namespace, name))

    def post_event(self, obj: Object, *, reason: str, message: str, warning: bool = False) -> None:
        """Remember the Event."""
        self.events.append(Event(obj["metadata"]["name"], reason, message, warning))

    def promotion(self, namespace: str, name: str) -> Object:
        """The stored Promotion, for assertions and the next round."""
        return copy.deepcopy(self._get(self.promotions, namespace, name))

    def _maybe_fail(self) -> None:
        if self.fail_reads_with is not None:
            raise self.fail_reads_with

    @staticmethod
    def _get(store: Mapping[Key, Any], namespace: str, name: str) -> Any:
        try:
            return store[(namespace, name)]
        except KeyError:
            raise NotFoundError(f"{namespace}/{name}") from None


@dataclass
class FakeRegistry:
    """Tags that exist, per image; an error to raise instead, per image."""

    tags: dict[str, set[str]] = field(default_factory=dict)
    errors: dict[str, PromotionError] = field(default_factory=dict)
    calls: int = 0
    seen_credentials: list[Mapping[str, RegistryCredentials]] = field(default_factory=list)

    def check_tag(self, image: str, tag: str) -> str:
        """Return a digest for an existing tag; raise like the real client otherwise."""
        self.calls += 1
        if image in self.errors:
            raise self.errors[image]
        if tag in self.tags.get(image, set()):
            return "sha256:" + hashlib.sha256(f"{image}:{tag}".encode()).hexdigest()
        raise RetryableError(Reason.TAG_MISSING, f"tag {tag} of {image} not found")

    def settled(self, image: str) -> bool:
        """Never: every round asks the first image alone (the cautious order)."""
        del image
        return False

    def factory(
        self, credentials: Mapping[str, RegistryCredentials], *, insecure: bool
    ) -> TagChecker:
        """The `RegistryFactory` port: every client is this registry."""
        del insecure
        self.seen_credentials.append(credentials)
        return self


@dataclass(frozen=True)
class Commit:
    """One commit of the fake remote."""

    sha: str
    parent: str | None
    message: str
    files: dict[str, str]
    when: dt.datetime


@dataclass
class FakeRepository:
    """A remote branch as a list of commits; pushes land at once unless told otherwise."""

    files: dict[str, str] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)
    push_errors: list[PromotionError] = field(default_factory=list)
    before_each_push: Callable[[], None] | None = None
    snapshots: int = 0
    known: str | None = None  # what known_head answers (None: the head, as after a push)
    prefetches: int = 0
    lost_answers: list[PromotionError] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if not self.commits:
            self._add("seed", dict(self.files))

    @property
    def head(self) -> Commit:
        """The newest commit."""
        return self.commits[-1]

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the repository's lock."""
        with self._lock:
            yield

    def sync(self, *, if_stale: bool = False) -> str:
        """Nothing to fetch: the fake is its own remote (a real fetch makes it known)."""
        if not if_stale:
            self.known = None
        return self.head.sha

    def read_file(self, relative: str) -> str:
        """Return a file at the head, or fail as the real one does."""
        try:
            return self.head.files[relative]
        except KeyError:
            raise PermanentError(
                Reason.INVALID_OVERLAY, f"{relative} is not a file on the branch"
            ) from None

    def find_commit(
        self,
        trailers: Mapping[str, str],
        *,
        since: dt.datetime | None = None,
        refresh: bool = True,
    ) -> str | None:
        """The newest commit whose trailers hold all of these."""
        del refresh
        for commit in reversed(self.commits):
            if since is not None and commit.when < since:
                continue
            if has_trailers(commit.message, trailers):
                return commit.sha
        return None

    def commit_and_push(
        self,
        edit: Edit,
        message: Message,
        *,
        max_attempts: int = 5,
        before_push: Callable[[], None] | None = None,
        synced: bool = False,
        batch: bool = False,
    ) -> PushResult:
        """Apply the edit to the head and push it (or raise the next queued push error).

        A push whose branch moved meanwhile (`before_each_push` committed) is rejected, as
        the real compare-and-swap push is: the edit runs again on the new head.
        """
        del synced, batch
        for attempt in range(1, max_attempts + 1):
            base = self.head
            changes = edit(self.read_file)
            if not changes:
                return PushResult(None, attempt, changed=False)
            files = {**base.files, **changes}
            if files == base.files:
                return PushResult(None, attempt, changed=False)
            if self.before_each_push is not None:
                self.before_each_push()  # the world moves first: another request, CI, a human
            if before_push is not None:
                before_push()
            if self.push_errors:
                raise self.push_errors.pop(0)
            if self.head is not base:
                continue  # rejected: the branch is no longer where the edit read it
            commit = self._add(message() if callable(message) else message, files)
            if self.lost_answers:  # the push landed, but its answer never reached us
                raise self.lost_answers.pop(0)
            return PushResult(commit.sha, attempt, changed=True)
        raise GitPushRejectedError(f"rejected {max_attempts} times in a row")

    def file_at(self, revision: str, relative: str) -> str | None:
        """A file at a commit (`<sha>^` names its parent)."""
        sha, parent = (revision[:-1], True) if revision.endswith("^") else (revision, False)
        commit = next((c for c in self.commits if c.sha == sha), None)
        if commit is not None and parent:
            commit = next((c for c in self.commits if c.sha == commit.parent), None)
        return None if commit is None else commit.files.get(relative)

    def snapshot(self) -> str:
        """The head, as a lockless fetch would see it."""
        self.snapshots += 1
        return self.head.sha

    def known_head(self) -> str | None:
        """The head this process last saw: `known` when set (someone pushed since)."""
        return self.known or self.head.sha

    def current_head(self) -> str:
        """The commit edits build on."""
        return self.head.sha

    def prefetch(self, submit: Callable[[Callable[[], None]], object]) -> bool:
        """Counted; nothing to fetch (the fake is its own remote)."""
        del submit
        self.prefetches += 1
        return True

    def read_many(self, commit: str, paths: Sequence[str]) -> dict[str, str | None]:
        """Files at a commit."""
        return {path: self.file_at(commit, path) for path in paths}

    def promotions_of(self, commit: str, relative: str, version: str) -> list[PromotionCommit]:
        """The operator's commits that moved `relative` to or from `version`, newest first."""
        found: list[PromotionCommit] = []
        by_sha = {c.sha: c for c in self.commits}
        at = by_sha.get(commit)
        while at is not None and at.parent is not None:
            parent = by_sha[at.parent]
            if at.files.get(relative) != parent.files.get(relative):
                parsed = parse_promotion_commit(at.sha, at.when.isoformat(), at.message)
                if parsed is not None and version in (parsed.old, parsed.new):
                    found.append(parsed)
            at = parent
        return found

    def commit(self, files: Mapping[str, str], message: str = "someone else") -> str:
        """Commit as someone else (a human, CI, another replica)."""
        return self._add(message, {**self.head.files, **files}).sha

    def _add(self, message: str, files: dict[str, str]) -> Commit:
        parent = self.commits[-1].sha if self.commits else None
        sha = hashlib.sha1(  # noqa: S324 - a fake commit id, not security
            f"{parent}{message}{sorted(files.items())}{len(self.commits)}".encode()
        ).hexdigest()
        commit = Commit(sha, parent, message, files, dt.datetime.now(dt.UTC))
        self.commits.append(commit)
        return commit

    def factory(self, url: str, branch: str, auth: GitAuth) -> Repository:
        """The `RepositoryFactory` port: every repository is this one."""
        del url, branch, auth
        return self


@dataclass
class FakeNotifier:
    """Remembers every notice submitted."""

    notices: list[Notice] = field(default_factory=list)

    def submit(self, notice: Notice) -> None:
        """Remember the notice."""
        self.notices.append(notice)


def fake_ports(
    cluster: FakeCluster,
    registry: FakeRegistry,
    repository: FakeRepository,
    notifier: FakeNotifier | None = None,
) -> Ports:
    """Ports wired to the fakes."""
    return Ports(
        cluster=cluster,
        registry=registry.factory,
        repository=repository.factory,
        notifier=notifier or FakeNotifier(),
    )
