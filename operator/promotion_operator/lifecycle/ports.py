"""What the lifecycle needs from the outside world, as small protocols handed in.

The state machine never constructs a client: it gets a `Ports` with the cluster and
factories for registry clients and repositories. `live_ports` wires the real adapters;
unit tests hand in fakes of these same protocols.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from promotion_operator.domain.gitrules import validate_git_url
from promotion_operator.domain.images import RegistryCredentials
from promotion_operator.domain.notifications import Notice
from promotion_operator.domain.rollback import PromotionCommit
from promotion_operator.gitops import Edit, GitAuth, GitRepository, Message, PushResult
from promotion_operator.k8s import ClusterAPI
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.credentials import git_auth
from promotion_operator.lifecycle.notices import shared_notifier
from promotion_operator.lifecycle.objects import Environment
from promotion_operator.registry import RegistryClient


class TagChecker(Protocol):
    """Answers whether an image tag exists (the registry adapter)."""

    def check_tag(self, image: str, tag: str) -> str:
        """Return the tag's digest; raise a PromotionError when it is missing or unknown."""
        ...

    def settled(self, image: str) -> bool:
        """Whether the image's registry has taken these credentials before."""
        ...


class Repository(Protocol):
    """The git workflow the lifecycle uses (the gitops adapter)."""

    def lock(self) -> AbstractContextManager[None]:
        """Hold the repository's lock."""
        ...

    def sync(self, *, if_stale: bool = False) -> str:
        """Fetch and reset to the remote branch (with `if_stale`, only when this process
        does not know the clone to be current); return the head commit."""
        ...

    def read_file(self, relative: str) -> str:
        """Return a file of the synced tree."""
        ...

    def find_commit(
        self,
        trailers: Mapping[str, str],
        *,
        since: dt.datetime | None = None,
        refresh: bool = True,
    ) -> str | None:
        """Return the newest remote commit carrying all these trailers (without
        `refresh`, it fetches only when the clone is not known to be current)."""
        ...

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
        """Edit, commit and push, re-applying the edit on a moved branch (with `batch`,
        in one push with the other edits queued for the branch)."""
        ...

    def file_at(self, revision: str, relative: str) -> str | None:
        """Return a file's text at a commit, or None."""
        ...

    def snapshot(self) -> str:
        """Fetch the remote branch without the lock; return its head commit."""
        ...

    def known_head(self) -> str | None:
        """The remote head as this process last left it (its own fetch or push, no failure
        since), read locally; None when it does not know."""
        ...

    def current_head(self) -> str:
        """The commit the worktree is at (the parent of the next commit)."""
        ...

    def prefetch(self, submit: Callable[[Callable[[], None]], object]) -> bool:
        """Start a lockless fetch through `submit`, unless one of this clone is under way."""
        ...

    def read_many(self, commit: str, paths: Sequence[str]) -> dict[str, str | None]:
        """Files at a commit (None for a path that is no file)."""
        ...

    def promotions_of(self, commit: str, relative: str, version: str) -> list[PromotionCommit]:
        """The operator's commits that moved a file to or from `version`, newest first."""
        ...


class Notifier(Protocol):
    """Sends a notice somewhere, later: never blocks, never raises (the notify adapter)."""

    def submit(self, notice: Notice) -> None:
        """Queue the notice."""
        ...


class _Silent:
    """No notifications (the default of hand-built Ports)."""

    def submit(self, notice: Notice) -> None:
        """Drop the notice."""
        del notice


class RegistryFactory(Protocol):
    """Builds a tag checker for one Environment's registry settings."""

    def __call__(
        self, credentials: Mapping[str, RegistryCredentials], *, insecure: bool
    ) -> TagChecker:
        """Return a tag checker using these credentials."""
        ...


RepositoryFactory = Callable[[str, str, GitAuth], Repository]
"""Builds the repository of (url, branch) with these credentials."""


@dataclass(frozen=True)
class Ports:
    """Everything the lifecycle talks to."""

    cluster: ClusterAPI
    registry: RegistryFactory
    repository: RepositoryFactory
    notifier: Notifier = field(default_factory=_Silent)


class RegistryClients:
    """One `RegistryClient` per (credentials, insecure) for up to `max_age` seconds; the
    newest `size` are kept.

    A client remembers what each registry answered: the auth scheme it challenges with,
    its Bearer tokens until they expire, and (insecure mode) that it speaks plain HTTP.
    A fresh client per verification round paid for all of that again on every check:
    a refused TLS handshake, an anonymous try and its 401, then the real request, each a
    new connection (about 8 round trips for two images over a WAN). Clients are keyed by
    the credentials themselves, so what one set of credentials learnt (a token) is never
    used with another. `size` bounds the clients (hostile churn of Secrets), the client
    bounds what each holds (`registry._MAX_REMEMBERED`), and `max_age` makes a client
    relearn (a registry that now speaks TLS, an account revoked behind a cached token).
    """

    def __init__(
        self,
        size: int = 64,
        max_age: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._size, self._max_age, self._clock = size, max_age, clock
        self._lock = threading.Lock()
        self._clients: OrderedDict[
            tuple[bool, frozenset[tuple[str, RegistryCredentials]]],
            tuple[float, RegistryClient],
        ] = OrderedDict()

    def __call__(
        self, credentials: Mapping[str, RegistryCredentials], *, insecure: bool
    ) -> RegistryClient:
        """The client for these credentials, made on first use and again once old."""
        key = (insecure, frozenset(credentials.items()))
        now = self._clock()
        with self._lock:
            found = self._clients.get(key)
            if found is not None and now - found[0] < self._max_age:
                self._clients.move_to_end(key)
                return found[1]
            made = RegistryClient(credentials, insecure=insecure)
            self._clients[key] = (now, made)
            self._clients.move_to_end(key)
            while len(self._clients) > self._size:
                self._clients.popitem(last=False)
            return made


def live_ports(config: OperatorConfig, cluster: ClusterAPI) -> Ports:
    """The real adapters: the API server, the registry over HTTP, git over the network."""
    registries = RegistryClients()

    def registry(credentials: Mapping[str, RegistryCredentials], *, insecure: bool) -> TagChecker:
        return registries(credentials, insecure=insecure)

    def repository(url: str, branch: str, auth: GitAuth) -> Repository:
        return GitRepository(
            url,
            branch,
            cache_dir=config.cache_dir / "git",
            auth=auth,
            allow_file=config.allow_file_urls,
            timeout=config.git_timeout,
            history=config.clone_history,
        )

    return Ports(
        cluster=cluster,
        registry=registry,
        repository=repository,
        notifier=shared_notifier(config, cluster),
    )


def open_repository(config: OperatorConfig, ports: Ports, env: Environment) -> Repository:
    """The Environment's repository; the URL is checked before any Secret is read."""
    validate_git_url(env.spec.git.url, allow_file=config.allow_file_urls)
    auth = git_auth(ports.cluster, env)
    return ports.repository(env.spec.git.url, env.spec.git.branch, auth)
