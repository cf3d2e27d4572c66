"""The promotion workflow over a persistent clone of one (url, branch): sync, read, commit, push.

Never a fresh clone per promotion: the clone lives in the cache folder and every sync is a
fetch of one branch and a hard reset. Failures come back as the domain's typed git errors
(`domain.gitfailures`), redacted.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import hashlib
import logging
import re
import shutil
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from promotion_operator.domain.errors import PermanentError, PromotionError, Reason
from promotion_operator.domain.gitfailures import GitPushRejectedError, git_failure
from promotion_operator.domain.gitrules import (
    confine_path,
    has_trailers,
    redact,
    validate_branch,
    validate_git_url,
)
from promotion_operator.domain.rollback import PromotionCommit, parse_promotion_commit
from promotion_operator.gitops.cache import shared_use, touch, use_lock_path
from promotion_operator.gitops.credentials import GitAuth, HTTPSAuth, secrets_of
from promotion_operator.gitops.locks import repository_lock
from promotion_operator.gitops.runner import DEFAULT_AUTHOR, GitRunner, Result

log = logging.getLogger(__name__)

Reader = Callable[[str], str]
"""Reads a repository-relative file of the freshly synced tree (confined to the clone)."""
Edit = Callable[[Reader], Mapping[str, str] | None]
"""Returns {repository-relative path: new full text}, or None/{} when nothing changes."""
Message = str | Callable[[], str]
"""A commit message, or what builds it right after the edit it describes has run."""

# Where the status refresh fetches the branch: a ref of its own, so it needs no lock.
SNAPSHOT_REF = "refs/promotion-operator/snapshot"
# A lockless fetch must not start maintenance that a promotion's git could trip over.
_QUIET_FETCH = ("gc.auto=0", "maintenance.auto=false", "fetch.writeCommitGraph=false")
# In a shallow clone's .git: the time (epoch seconds) after which it holds every commit.
_SHALLOW_SINCE = "promotion-operator-shallow-since"
# Record separators for `git log` output that no commit message can contain.
_FIELD = "\x1f"
_RECORD = "\x1e"
# promotions_of's memory, per (clone, version): the operator's commits that name the
# version, each with the files it changed and the first head it was read at. A look at a
# later head reads only the commits since the newest head read; a look at a head read
# before reads nothing (a burst's checks and pushes ask at the heads it made); a rewritten
# branch starts afresh. Bounded: at most _PROMOTIONS_VERSIONS versions holding at most
# _PROMOTIONS_ENTRIES commits in all (least recently used versions dropped), and
# _PROMOTIONS_HEADS heads per version.
_PROMOTIONS_VERSIONS = 4096
_PROMOTIONS_ENTRIES = 50_000
_PROMOTIONS_HEADS = 64
_PROMOTIONS_LOCK = threading.Lock()


@dataclass
class _VersionHistory:
    """What the clone's history says of one version, read up to some heads."""

    lock: threading.Lock = field(default_factory=threading.Lock)  # one reader of git at a time
    heads: OrderedDict[str, int] = field(default_factory=OrderedDict)  # head -> its number
    newest: str | None = None
    # (number of the first head it was read at, the commit, the files it changed), newest first
    commits: list[tuple[int, PromotionCommit, frozenset[str]]] = field(default_factory=list)


_PROMOTIONS: OrderedDict[tuple[str, str], _VersionHistory] = OrderedDict()


@dataclass(frozen=True)
class CommitRecord:
    """One commit as `log_with_trailer` returns it."""

    sha: str
    committed_at: str  # ISO 8601, the committer date
    message: str


@dataclass(frozen=True)
class PushResult:
    """Outcome of commit_and_push: the pushed commit (None when nothing changed)."""

    commit: str | None
    attempts: int
    changed: bool


@dataclass
class _Job:
    """One promotion's edit waiting for the next batch push of its (url, branch)."""

    edit: Edit
    message: Message
    before_push: Callable[[], None] | None
    done: threading.Event = field(default_factory=threading.Event)
    result: PushResult | None = None
    error: Exception | None = None
    # the context of the thread that queued it: its edit and checks run in another
    # thread (the batch's), and their log lines still name its Promotion
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    def finish(self, result: PushResult | None = None, error: Exception | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


@dataclass(frozen=True)
class _Planned:
    """One job's commit before it is written: {repository path: (mode, content)}, message."""

    job: _Job
    files: Mapping[str, tuple[str, bytes]]
    message: str
    when: int = field(default_factory=lambda: int(time.time()))  # the commit's date, epoch


# Shared by every GitRepository of a clone (they are made per reconcile), keyed by the
# clone folder: the jobs waiting for its next push, and whether the clone is known to
# hold the remote branch as it is (set by a fetch or an accepted push of this process,
# cleared by any failure: only then may a promotion skip its fetch).
_GUARD = threading.Lock()
_QUEUES: dict[Path, list[_Job]] = {}
_EDITING: dict[Path, str] = {}  # clone -> the commit a batch's edits read, while they run
# Where `git fast-import` writes a batch's commits before they are pushed by their sha.
_BATCH_REF = "refs/promotion-operator/batch"
# The batch's `before_push` checks run side by side (each is a look at the cluster).
_BEFORE_PUSH = ThreadPoolExecutor(max_workers=8, thread_name_prefix="before-push")
_FRESH: dict[Path, float] = {}  # clone -> when (monotonic) it was last known current
# A head-start fetch is not worth it while this process's own knowledge is this recent
# (seconds): in a burst its pushes follow each other, and the fetches would only load
# the machine and move the remote ref under the batch.
PREFETCH_AFTER = 2.0
_PREFETCHING: set[Path] = set()  # clones with a head-start fetch queued or running


class GitRepository:
    """A persistent clone of one (url, branch) in cache_dir; never a fresh clone per promotion."""

    def __init__(
        self,
        url: str,
        branch: str,
        *,
        cache_dir: Path,
        auth: GitAuth = None,
        allow_file: bool = False,
        author: tuple[str, str] = DEFAULT_AUTHOR,
        timeout: float = 60,
        ca_bundle: Path | None = None,
        secrets_dir: Path | None = None,
        history: dt.timedelta | None = None,
    ) -> None:
        """Validate the remote and credentials; touches neither the network nor the disk.

        `allow_file` is the operator's local-use flag: it also allows `file://` and plain
        `http://` remotes (loopback servers in tests and demos). `ca_bundle` adds a CA
        certificate file trusted for https remotes (a private or self-signed server).
        `secrets_dir` is where the SSH key and known_hosts are written for the length of
        one network call (default: the system temporary folder). `history` bounds what a
        clone holds to the commits of that long ago (a shallow clone); `find_commit`
        deepens it when asked to look further back, so the crash-safety lookup always
        sees every commit since the Promotion's creation. None keeps the full history.
        """
        validate_git_url(url, allow_file=allow_file)
        validate_branch(branch)
        if isinstance(auth, HTTPSAuth) and any(
            ch in value for value in (auth.username, auth.password) for ch in "\r\n\x00"
        ):
            raise PermanentError(
                Reason.SECRET_INVALID, "git username and password must be single lines"
            )
        self.url = url
        self.branch = branch
        self._runner = GitRunner(
            url,
            auth,
            allow_file=allow_file,
            timeout=timeout,
            author=author,
            ca_bundle=ca_bundle,
            secrets_dir=secrets_dir,
        )
        self._cache_dir = cache_dir
        key = hashlib.sha256(f"{url}\n{branch}".encode()).hexdigest()[:24]
        self._clone_dir = cache_dir / key
        self._lock_path = cache_dir / f"{key}.lock"
        self._use_path = use_lock_path(self._lock_path)
        self._history = history
        self._remote_ref = f"refs/remotes/origin/{branch}"
        self._secrets = secrets_of(auth)

    def __repr__(self) -> str:
        return f"GitRepository({redact(self.url, ())!r}, {self.branch!r})"

    @property
    def worktree(self) -> Path:
        """The clone's working tree (only meaningful after sync())."""
        return self._clone_dir

    # -- public operations --

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the per-(url, branch) lock: threads in this process and other processes.

        Re-entrant in the holding thread, so `with repo.lock(): repo.sync(); ...` works.
        """
        with repository_lock(self.url, self.branch, self._lock_path):
            touch(self._lock_path)  # the cache eviction's "last used"
            yield

    def sync(self, *, if_stale: bool = False) -> str:
        """Clone on first use, else fetch; hard-reset the worktree to origin/<branch>.

        With `if_stale`, skip the fetch when this process's own last fetch or push left the
        clone equal to the remote branch (no failure since). That is enough for looking up
        this operator's own commits (only the leader pushes them, and a new leader's first
        sync always fetches); a push still fails fast on a branch someone else moved.
        Returns the head commit sha.
        """
        with self.lock():
            if if_stale and self._is_fresh() and self._has_clone():
                head, _, remote = self._git("rev-parse", "HEAD", self._remote_ref).partition("\n")
                if head == remote.strip():
                    return head
                return self._checkout_remote()  # a deepen moved the ref: no fetch needed
            return self._sync_locked()

    def read_file(self, relative: str) -> str:
        """Return a file of the synced worktree as text, exactly as stored.

        The path must stay inside the clone after resolving symlinks; a missing file or a
        path that escapes is a PermanentError(INVALID_OVERLAY).
        """
        with self.lock():
            if not self._has_clone():
                self._sync_locked()
            return self._read_confined(self._confined(relative), relative)

    def _read_confined(self, path: Path, relative: str) -> str:
        try:
            return path.read_bytes().decode("utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise PermanentError(
                Reason.INVALID_OVERLAY,
                f"{relative} is not a file on branch {self.branch} of {self._shown_url}",
            ) from None
        except UnicodeDecodeError:
            raise PermanentError(Reason.INVALID_OVERLAY, f"{relative} is not UTF-8 text") from None

    def find_commit(
        self,
        trailers: Mapping[str, str],
        *,
        since: dt.datetime | None = None,
        refresh: bool = True,
    ) -> str | None:
        """Return the newest commit on origin/<branch> whose trailers include all of these.

        One `git log` over the whole history (or the commits made after `since`): git
        selects the candidates that mention the first trailer anywhere, and only a trailer
        block that holds every pair counts, so a reason quoting a trailer forges nothing.
        With `refresh` (the default) it fetches first, so the answer reflects the remote.
        Without, it fetches only when this process does not know the clone to be current
        (`sync(if_stale=True)`), and otherwise reads without the lock: enough to find this
        operator's own commits, which only the leader pushes.
        """
        if not trailers:
            raise ValueError("find_commit needs at least one trailer")
        key, value = next(iter(trailers.items()))
        args = [
            "log",
            f"--format=%H{_FIELD}%B{_RECORD}",
            "--fixed-strings",
            f"--grep={key}: {value}",
        ]
        if since is not None:
            args.append(f"--since={since.astimezone(dt.UTC).isoformat()}")
        if not refresh and self._is_fresh() and self._has_clone() and not self._shallower(since):
            with shared_use(self._use_path):  # a push may move the ref meanwhile: either is ours
                out = self._git_raw(*args, self._remote_ref, "--")
        else:
            with self.lock():
                if refresh or not self._is_fresh() or not self._has_clone():
                    self._fetch_or_clone()
                self._deepen_to(since)
                out = self._git_raw(*args, self._remote_ref, "--")
        for record in out.split(_RECORD):
            sha, _, message = record.strip("\n").partition(_FIELD)
            if sha and has_trailers(message, trailers):
                return sha
        return None

    def log_with_trailer(self, key: str, *, limit: int) -> list[CommitRecord]:
        """The newest `limit` commits of origin/<branch> that mention `key:`, newest first.

        Fetches first (under the lock, as `find_commit` does). git selects candidates by
        text; callers read the trailer block (`domain.gitrules.trailer_block`) to know
        whether a commit really carries the trailer.
        """
        args = [
            "log",
            f"--format=%H{_FIELD}%cI{_FIELD}%B{_RECORD}",
            "--fixed-strings",
            f"--grep={key}: ",
            f"--max-count={max(limit, 1)}",
        ]
        with self.lock():
            self._fetch_or_clone()
            out = self._git_raw(*args, self._remote_ref, "--")
        records: list[CommitRecord] = []
        for record in out.split(_RECORD):
            sha, _, rest = record.strip("\n").partition(_FIELD)
            committed, _, message = rest.partition(_FIELD)
            if sha:
                records.append(CommitRecord(sha, committed, message))
        return records

    def promotions_of(self, commit: str, relative: str, version: str) -> list[PromotionCommit]:
        """The operator's commits that moved a file to or from `version`, newest first.

        One `git log` over the whole history up to `commit` (no window that would hide an
        old promotion): git keeps the commits whose message names the version (a fixed
        string, so a tag cannot act as a pattern) and lists the files each changed; only a
        commit that changed `relative` and whose trailer block names a Promotion counts.
        Grepping for the version rather than limiting by path spares git a tree diff of
        every commit (3.6 s against about 1 s over 30,000 commits on the loaded test
        machine, `bench/rollback_history.py`). What it read serves every file: a later
        look at the version reads only the commits since (`_VersionHistory`). Local:
        `commit` comes from `snapshot()`, `sync()` or `known_head()`.
        """
        confine_path(self._clone_dir, relative)
        if commit.startswith("-"):
            raise ValueError(f"not a commit: {commit!r}")
        history = self._version_history(version)
        with history.lock:
            number = history.heads.get(commit)
            if number is not None:
                history.heads.move_to_end(commit)
                commits = [(c, names) for n, c, names in history.commits if n <= number]
            elif history.newest is not None and self._is_ancestor(history.newest, commit):
                newer = self._promotions_since(commit, history.newest, version)
                self._remember(history, commit, newer)
                commits = [(c, names) for _, c, names in history.commits]
            elif history.newest is not None and self._is_ancestor(commit, history.newest):
                # an older head (a look that began before a push): what it cannot see yet
                later = self._promotions_since(history.newest, commit, version)
                unseen = {c.sha for c, _ in later}
                commits = [(c, names) for _, c, names in history.commits if c.sha not in unseen]
            else:  # a first look, or a rewritten branch
                history.heads.clear()
                history.commits.clear()
                self._remember(history, commit, self._promotions_since(commit, None, version))
                commits = [(c, names) for _, c, names in history.commits]
        self._bound_promotions()
        return [c for c, names in commits if relative in names]

    def _version_history(self, version: str) -> _VersionHistory:
        key = (str(self._clone_dir), version)
        with _PROMOTIONS_LOCK:
            history = _PROMOTIONS.get(key)
            if history is None:
                history = _PROMOTIONS[key] = _VersionHistory()
            _PROMOTIONS.move_to_end(key)
            return history

    @staticmethod
    def _remember(
        history: _VersionHistory,
        head: str,
        found: list[tuple[PromotionCommit, frozenset[str]]],
    ) -> None:
        number = max(history.heads.values(), default=0) + 1
        history.commits[:0] = [(number, c, names) for c, names in found]
        history.heads[head] = number
        history.newest = head
        while len(history.heads) > _PROMOTIONS_HEADS:
            history.heads.popitem(last=False)

    @staticmethod
    def _bound_promotions() -> None:
        with _PROMOTIONS_LOCK:
            total = sum(len(h.commits) for h in _PROMOTIONS.values())
            while len(_PROMOTIONS) > 1 and (
                total > _PROMOTIONS_ENTRIES or len(_PROMOTIONS) > _PROMOTIONS_VERSIONS
            ):
                _, dropped = _PROMOTIONS.popitem(last=False)
                total -= len(dropped.commits)

    def _is_ancestor(self, older: str, newer: str) -> bool:
        return older == newer or self._run(["merge-base", "--is-ancestor", older, newer]).ok

    def _promotions_since(
        self, commit: str, since: str | None, version: str
    ) -> list[tuple[PromotionCommit, frozenset[str]]]:
        """The operator's commits up to `commit` (and not up to `since`) that moved some
        file to or from `version`, newest first, with the files each changed."""
        if commit == since:
            return []
        revisions = [commit] if since is None else [commit, f"^{since}"]
        result = self._runner.run(
            [
                "log",
                f"--format={_RECORD}%H{_FIELD}%cI{_FIELD}%B{_FIELD}",
                "--name-only",
                "--no-renames",
                "--fixed-strings",
                f"--grep={version}",
                *revisions,
                "--",
            ],
            cwd=self._clone_dir,
            network=False,
            # a shallow clone's oldest commit has no parent: without this, git lists every
            # file of its tree, and another Environment's promotion would count as ours
            config=("core.quotePath=false", "log.showRoot=false"),
        )
        if not result.ok:
            raise self._error("git log in the clone of", result)
        found: list[tuple[PromotionCommit, frozenset[str]]] = []
        for record in result.out.split(_RECORD):
            sha, _, rest = record.partition(_FIELD)
            when, _, rest = rest.partition(_FIELD)
            message, _, names = rest.rpartition(_FIELD)
            if not sha:
                continue
            parsed = parse_promotion_commit(sha, when, message)
            if parsed is not None and version in (parsed.old, parsed.new):
                found.append((parsed, frozenset(n for n in names.split("\n") if n)))
        return found

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
        """Apply `edit` to a fresh worktree, commit and push; re-apply on a moved branch.

        `edit(read)` gets a reader of the fresh tree and returns {repository-relative path:
        new full text}, or None/{} when nothing needs to change. When the push is rejected
        as non-fast-forward, the clone is reset to the new remote head and `edit` runs again
        on that tree, so a concurrent commit is kept and our change lands on top of it.
        After `max_attempts` rejections: GitPushRejectedError (retryable). `before_push`
        runs between commit and push (the crash-safety tests stop the process there), and
        may raise to abandon the push. `synced`: the caller holds the lock and has just
        synced, so the first attempt skips its own fetch. `message` may be a callable: it
        is called after each run of `edit`, so it can describe the tree that was edited.

        `batch` (the caller must not hold the lock): the edit joins the queue of this
        clone, and whoever takes the lock next commits every queued edit, one commit per
        edit with its own message (so each Promotion's trailers stay its own), and pushes
        them all at once. A burst of promotions to one branch then costs one fetch and one
        push per batch instead of one per promotion.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if batch:
            return self._join_batch(_Job(edit, message, before_push), max_attempts)
        with self.lock():
            for attempt in range(1, max_attempts + 1):
                if attempt > 1 or not synced:
                    self._sync_locked()
                base = self._git("rev-parse", "HEAD")
                changes = edit(self.read_file)
                if not changes:
                    return PushResult(None, attempt, changed=False)
                for relative, text in changes.items():
                    path = self._confined(relative)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(text.encode("utf-8"))
                self._git("add", "--all", "--", ".")
                if self._run(["diff", "--cached", "--quiet"]).ok:
                    return PushResult(None, attempt, changed=False)  # edit rewrote identical text
                self._commit(message)
                commit = self._git("rev-parse", "HEAD")
                if before_push is not None:
                    before_push()
                if self._push(base, commit):
                    return PushResult(commit, attempt, changed=True)
        raise GitPushRejectedError(
            f"push to branch {self.branch} of {self._shown_url} was rejected as "
            f"non-fast-forward {max_attempts} times in a row: the branch keeps moving"
        )

    def _join_batch(self, job: _Job, max_attempts: int) -> PushResult:
        with _GUARD:
            _QUEUES.setdefault(self._clone_dir, []).append(job)
        try:
            with self.lock():
                if not job.done.is_set():
                    with _GUARD:
                        jobs = _QUEUES.pop(self._clone_dir, [])
                    self._push_batch(jobs, max_attempts)
        finally:
            with _GUARD:  # gave up on the lock: never let another batch push it unseen
                queued = _QUEUES.get(self._clone_dir, [])
                if job in queued:
                    queued.remove(job)
        if job.error is not None:
            raise job.error
        if job.result is None:  # the lock wait ended before any batch took it
            raise GitPushRejectedError(f"the push to branch {self.branch} did not happen")
        return job.result

    def _push_batch(self, jobs: list[_Job], max_attempts: int) -> None:
        """Under the lock: push every job's edit, as few pushes as the edits allow (one,
        unless two edits touch the same path: the later waits for the next push, so it
        reads what the earlier one wrote). Every job is finished on return."""
        try:
            waiting = list(jobs)
            while waiting:
                waiting = self._push_round(waiting, max_attempts)
        except Exception as error:  # a failed fetch or push: every job still open shares it
            self._forget_fresh()
            for job in jobs:
                if not job.done.is_set():
                    job.finish(error=error)
        finally:
            for job in jobs:  # nothing may wait for ever
                if not job.done.is_set():
                    job.finish(error=GitPushRejectedError("the batch push ended early"))

    def _push_round(self, jobs: list[_Job], max_attempts: int) -> list[_Job]:
        """One push of the open jobs whose paths no earlier job of the round touches:
        each edit reads the tree of the remote head, their commits are written in one
        `git fast-import` (one commit per edit, with its own message, so each Promotion's
        trailers stay its own) and pushed at once; on a moved branch, all of it again on
        the new head. Returns the jobs left for the next round."""
        base: str | None = None
        for attempt in range(1, max_attempts + 1):
            base, fetched = self._round_base(base, attempt)
            plan = self._plan(jobs, attempt, base, fetched=fetched)
            if plan is None:
                # "nothing to change" is a claim about the remote: fetch, then decide
                base, fetched = self._sync_locked(), True
                plan = self._plan(jobs, attempt, base, fetched=True)
            planned, waiting = plan or ([], [])
            commits = self._commit_planned(base, planned)
            if not commits:
                return waiting
            if self._push(base, commits[-1][1]):
                for item, commit in commits:
                    item.job.finish(PushResult(commit, attempt, changed=True))
                self._note_pushed(base, commits)
                self._check_out(commits[-1][1])
                return waiting
            jobs = [job for job in jobs if not job.done.is_set()]
        raise GitPushRejectedError(
            f"push to branch {self.branch} of {self._shown_url} was rejected as "
            f"non-fast-forward {max_attempts} times in a row: the branch keeps moving"
        )

    def _round_base(self, base: str | None, attempt: int) -> tuple[str, bool]:
        """The commit this attempt builds on, with the worktree checked out at it, and
        whether it was fetched now. The first attempt trusts a known-current clone; after
        a rejection it fetches, unless a fetch meanwhile (the checks' head start, a status
        refresh) has already brought the branch on past the head the rejected push
        built on."""
        remote = self._remote_head() if base is not None else None  # cloned by now
        moved = remote is not None and remote != base
        if (attempt > 1 and not moved) or (attempt == 1 and not self._is_fresh()):
            return self._sync_locked(), True
        remote = remote or self._remote_head()
        if self._git("rev-parse", "HEAD") == remote:
            return remote, False
        return self._checkout_remote(), False

    def _note_pushed(self, base: str, commits: list[tuple[_Planned, str]]) -> None:
        """Hand what this push added on `base` (the lease made it exactly the remote's
        head) to every version history read up to `base`: the next look at the pushed
        head reads nothing. A history busy reading git is left to read for itself."""
        pushed: list[tuple[PromotionCommit, frozenset[str]]] = []
        for item, sha in commits:
            when = dt.datetime.fromtimestamp(item.when, dt.UTC).isoformat()
            parsed = parse_promotion_commit(sha, when, item.message)
            if parsed is not None:
                pushed.insert(0, (parsed, frozenset(item.files)))
        clone = str(self._clone_dir)
        with _PROMOTIONS_LOCK:
            histories = [(v, h) for (c, v), h in _PROMOTIONS.items() if c == clone]
        for version, history in histories:
            if not history.lock.acquire(blocking=False):
                continue
            try:
                if history.newest == base:
                    found = [(c, files) for c, files in pushed if version in (c.old, c.new)]
                    self._remember(history, commits[-1][1], found)
            finally:
                history.lock.release()

    def _check_out(self, commit: str) -> None:
        """Move the worktree (clean, at the commit the pushed ones build on) to what was
        pushed, so the clone is at the remote head as after any sync. A failure here is
        only logged: the push landed, and the next round checks out what it needs."""
        try:
            self._git("checkout", "--quiet", "--force", "--no-track", "-B", self.branch, commit)
        except PromotionError as error:
            log.warning("checking out the pushed commit in %r failed: %s", self, error.message)

    def _plan(
        self, jobs: list[_Job], attempt: int, base: str, *, fetched: bool
    ) -> tuple[list[_Planned], list[_Job]] | None:
        """Run each open job's edit on the tree at `base`: the planned commits, and the
        jobs that read or write a path an earlier planned commit changes (they wait for
        the next round). A job that changes nothing is finished, unless the tree was not
        fetched in this attempt: then None, as the clone may be behind someone else's
        commit (the caller fetches and plans again)."""
        planned: list[_Planned] = []
        waiting: list[_Job] = []
        written: set[str] = set()
        folders: set[str] = set()  # the folders that hold a written path
        with _GUARD:
            _EDITING[self._clone_dir] = base
        try:
            for job in jobs:
                if job.done.is_set():
                    continue
                touched: set[str] = set()
                try:
                    read = functools.partial(self._read_noting, touched)
                    changes = job.context.run(job.edit, read)
                    files = self._changed_files(changes or {}, touched)
                    if _overlaps(touched, written, folders):
                        waiting.append(job)
                        continue
                    if not files:
                        if not fetched:
                            return None
                        job.finish(PushResult(None, attempt, changed=False))
                        continue
                    message = job.message() if callable(job.message) else job.message
                    planned.append(_Planned(job, files, _commit_text(message, self._secrets)))
                except Exception as error:  # this edit only (a bad overlay, a newer Promotion)
                    job.finish(error=error)
                    continue
                written.update(files)
                folders.update(str(f) for path in files for f in PurePosixPath(path).parents)
        finally:
            with _GUARD:
                _EDITING.pop(self._clone_dir, None)
        return planned, waiting

    def _read_noting(self, touched: set[str], relative: str) -> str:
        """`read_file` for an edit of a batch: notes which repository path it read."""
        path = self._confined(relative)
        touched.add(self._repository_path(path))
        return self._read_confined(path, relative)

    def _changed_files(
        self, changes: Mapping[str, str], touched: set[str]
    ) -> dict[str, tuple[str, bytes]]:
        """The edit's files whose text differs from the tree, by repository path (a
        symlink inside the repository resolved, as a checkout would write through it):
        {path: (git file mode, content)}. The paths join `touched`."""
        files: dict[str, tuple[str, bytes]] = {}
        for relative, text in changes.items():
            path = self._confined(relative)
            key = self._repository_path(path)
            touched.add(key)
            folder = path.parent
            while not folder.exists():
                folder = folder.parent
            if path.is_dir() or not folder.is_dir():
                raise PermanentError(
                    Reason.INVALID_OVERLAY,
                    f"cannot write {relative}: the repository has a "
                    f"{'folder' if path.is_dir() else 'file'} in its way",
                )
            content = text.encode("utf-8")
            if path.is_file():
                if path.read_bytes() == content:
                    continue
                mode = "100755" if path.stat().st_mode & stat.S_IXUSR else "100644"
            else:
                mode = "100644"
            files[key] = (mode, content)
        return files

    def _repository_path(self, path: Path) -> str:
        return path.relative_to(self._clone_dir.resolve()).as_posix()

    def _commit_planned(self, base: str, planned: list[_Planned]) -> list[tuple[_Planned, str]]:
        """Write the planned commits on `base` and run their jobs' `before_push` (side by
        side: each is a look at the cluster); a job whose `before_push` raises is finished
        with that error and the chain is written again without it. The (planned, commit)
        pairs, oldest first."""
        checked: set[int] = set()
        while planned:
            commits = self._import(base, planned)
            unchecked = [p.job for p in planned if id(p.job) not in checked]
            failed = _run_before_push(unchecked)
            checked.update(id(job) for job in unchecked)
            if not failed:
                return list(zip(planned, commits, strict=True))
            for job, error in failed:
                job.finish(error=error)
            planned = [p for p in planned if not p.job.done.is_set()]
        return []

    def _import(self, base: str, planned: list[_Planned]) -> list[str]:
        """One `git fast-import` that writes a commit per planned edit, each on the last,
        the first on `base`; returns their shas. The worktree and HEAD stay at `base`."""
        name, email = self._runner.author
        stream = bytearray(b"feature done\n")
        for number, item in enumerate(planned, 1):
            message = item.message.encode("utf-8")
            ident = f"{name} <{email}> {item.when} +0000".encode()
            stream += b"commit %s\nmark :%d\n" % (_BATCH_REF.encode(), number)
            stream += b"author %s\ncommitter %s\n" % (ident, ident)
            stream += b"data %d\n%s\n" % (len(message), message)
            if number == 1:
                stream += b"from %s\n" % base.encode()
            for path, (mode, content) in item.files.items():
                blob = self._filtered_blob(path, content)
                if blob is None:
                    stream += b"M %s inline %s\ndata %d\n" % (
                        mode.encode(),
                        _quoted(path),
                        len(content),
                    )
                    stream += content + b"\n"
                else:
                    stream += b"M %s %s %s\n" % (mode.encode(), blob.encode(), _quoted(path))
            stream += b"\n"
        stream += b"".join(b"get-mark :%d\n" % n for n in range(1, len(planned) + 1))
        stream += b"done\n"
        result = self._run(
            ["fast-import", "--quiet", "--force", "--date-format=raw", "--cat-blob-fd=1"],
            stdin=bytes(stream),
        )
        commits = result.out.split()
        if not result.ok or len(commits) != len(planned):
            for report in (self._clone_dir / ".git").glob("fast_import_crash_*"):
                report.unlink(missing_ok=True)
            raise self._error("git fast-import in the clone of", result)
        return commits

    def _filtered_blob(self, path: str, content: bytes) -> str | None:
        """The blob `git add` would store for `content` at `path` when a `.gitattributes`
        of the tree may convert it (line endings, encodings); None when nothing can (the
        text is the blob, as nearly always)."""
        folders = [self._clone_dir, *(self._clone_dir / p for p in PurePosixPath(path).parents)]
        sources = [self._clone_dir / ".git" / "info" / "attributes"]
        sources += [folder / ".gitattributes" for folder in folders]
        if not any(source.is_file() for source in sources):
            return None
        return self._git_stdin(content, "hash-object", "-w", "--stdin", f"--path={path}")

    def _git_stdin(self, stdin: bytes, *args: str) -> str:
        result = self._run(list(args), stdin=stdin)
        if not result.ok:
            raise self._error(f"git {args[0]} in the clone of", result)
        return result.out.strip()

    def _commit(self, message: Message) -> None:
        text = _commit_text(message() if callable(message) else message, self._secrets)
        self._git("commit", "--no-verify", "--quiet", "--cleanup=verbatim", "-m", text)

    def _is_fresh(self) -> bool:
        with _GUARD:
            return self._clone_dir in _FRESH

    def _mark_fresh(self) -> None:
        with _GUARD:
            _FRESH[self._clone_dir] = time.monotonic()

    def _forget_fresh(self) -> None:
        with _GUARD:
            _FRESH.pop(self._clone_dir, None)

    def known_head(self) -> str | None:
        """The remote branch's head as this process last left it, without the network or
        the lock: after its own fetch or accepted push, with no failure since. None when
        this process does not know (a first look, a failure, another process's clone).

        Someone else may have pushed since; a caller deciding on it must decide again on
        the commit it finally builds on (the push is a compare-and-swap on that commit,
        `_push`, so it is exactly what the remote held).
        """
        if not self._is_fresh():
            return None
        try:
            with shared_use(self._use_path):
                if not self._has_clone():
                    return None
                result = self._run(
                    ["rev-parse", "--verify", "--quiet", f"{self._remote_ref}^{{commit}}"]
                )
        except (OSError, PromotionError):  # a full disk, a git that will not start: unknown
            return None
        return result.out.strip() if result.ok and result.out.strip() else None

    def prefetch(self, submit: Callable[[Callable[[], None]], object]) -> bool:
        """Hand `submit` (a bounded pool) a lockless fetch of the branch, unless one of
        this clone is queued or running already, or this process fetched or pushed it in
        the last `PREFETCH_AFTER` seconds; False then.

        A head start for a push that would otherwise build on an old head and be
        rejected: git moves the clone's remote branch ref with the fetch, so the push
        (or its retry) builds on what it found without a fetch of its own. Its failure
        is only logged: the push decides, and fetches for itself when it must.
        """
        with _GUARD:
            known = _FRESH.get(self._clone_dir)
            recent = known is not None and time.monotonic() - known < PREFETCH_AFTER
            if recent or self._clone_dir in _PREFETCHING:
                return False
            _PREFETCHING.add(self._clone_dir)

        def fetch() -> None:
            try:
                self.snapshot()
            except PromotionError as error:
                log.debug("head-start fetch of %r: %s", self, error.message)
            finally:
                with _GUARD:
                    _PREFETCHING.discard(self._clone_dir)

        try:
            submit(fetch)
        except RuntimeError:  # the pool is shutting down
            with _GUARD:
                _PREFETCHING.discard(self._clone_dir)
            return False
        return True

    def current_head(self) -> str:
        """The commit the worktree is at: under the lock, the parent of the next commit."""
        with self.lock():
            with _GUARD:
                editing = _EDITING.get(self._clone_dir)
            return editing or self._git("rev-parse", "HEAD")

    def snapshot(self) -> str:
        """Fetch the remote branch into a ref of its own and return its head commit.

        Takes no lock (beyond the first clone): the status refresh reads overlays from this
        commit while a promotion holds the lock and works in the worktree. Git keeps
        concurrent fetches into different refs safe; this one writes no FETCH_HEAD and
        starts no maintenance. Git also moves the clone's remote branch ref to what it
        fetched (its opportunistic update of a configured tracking ref), so `known_head`
        follows every status refresh round.
        """
        refspec = f"+refs/heads/{self.branch}:{SNAPSHOT_REF}"
        with shared_use(self._use_path):  # the cache eviction leaves the clone alone
            if not self._has_clone():
                with self.lock():
                    if not self._has_clone():
                        self._fetch_or_clone()
            touch(self._lock_path)
            result = self._runner.run(
                ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "origin", refspec],
                cwd=self._clone_dir,
                network=True,
                config=_QUIET_FETCH,
            )
            if not result.ok:
                raise self._error("git fetch from", result)
            return self._git("rev-parse", "--verify", f"{SNAPSHOT_REF}^{{commit}}")

    def read_many(self, commit: str, paths: Sequence[str]) -> dict[str, str | None]:
        """Files at a commit, all in one git process; None for a path that is no file.

        Reads the object database only (no worktree, no lock). A file that is not UTF-8
        is an INVALID_OVERLAY error for the caller to report, not a crash. A symlink is
        followed inside the commit's tree, as a checkout would; one that leads out of the
        tree is refused like a path that escapes the clone (its target is never read).
        """
        for relative in paths:
            confine_path(self._clone_dir, relative)
        if not paths:
            return {}
        request = "".join(f"{commit}:{relative}\n" for relative in paths).encode()
        with shared_use(self._use_path):
            result = self._run(["cat-file", "--batch", "--follow-symlinks"], stdin=request)
        if not result.ok:
            raise self._error("git cat-file in the clone of", result)
        found: dict[str, str | None] = {}
        data, at = result.raw, 0
        for relative in paths:
            end = data.index(b"\n", at)
            header = data[at:end].split()
            at = end + 1
            if len(header) == 2 and header[0] == b"symlink":  # leads out of the tree
                raise PermanentError(
                    Reason.INVALID_OVERLAY,
                    f"path {relative!r} leads outside the repository (through a symlink); "
                    "files must live inside the repository",
                )
            if len(header) == 2 and header[1].isdigit():  # dangling, loop, notdir: no file
                found[relative] = None
                at += int(header[1]) + 1
                continue
            if len(header) != 3 or header[1] != b"blob":
                found[relative] = None
                if len(header) == 3:  # a tree or other object: skip its content
                    at += int(header[2]) + 1
                continue
            size = int(header[2])
            found[relative] = data[at : at + size].decode("utf-8", "replace")
            at += size + 1
        return found

    def file_at(self, revision: str, relative: str) -> str | None:
        """Return a file's text at a commit of the clone, or None if it has no such file.

        `<sha>^` of a shallow clone's oldest commit (a crash recovery finding a commit
        at the edge of the kept history) deepens the clone by one commit first, so the
        parent is read from the remote rather than taken for an empty file.
        """
        confine_path(self._clone_dir, relative)
        if revision.startswith("-"):
            return None
        with self.lock():
            if revision.endswith("^") and revision[:-1] in self._shallow_boundary():
                refspec = f"+refs/heads/{self.branch}:{self._remote_ref}"
                try:
                    self._network("fetch", "--quiet", "--no-tags", "--deepen=1", "origin", refspec)
                except PromotionError as error:  # the commit is proof enough: read what is here
                    log.warning("deepening the clone of %s failed: %s", self, error.message)
            result = self._run(["cat-file", "blob", f"{revision}:{relative}"])
        return result.out if result.ok else None

    def _shallow_boundary(self) -> set[str]:
        """The commits whose parents a shallow clone does not hold (none when complete)."""
        try:
            return set((self._clone_dir / ".git" / "shallow").read_text().split())
        except FileNotFoundError:
            return set()

    # -- internals --

    @property
    def _shown_url(self) -> str:
        return redact(self.url, self._secrets)

    def _has_clone(self) -> bool:
        return (self._clone_dir / ".git" / "HEAD").is_file()

    def _sync_locked(self) -> str:
        self._fetch_or_clone()
        return self._checkout_remote()

    def _remote_head(self) -> str:
        return self._git("rev-parse", "--verify", f"{self._remote_ref}^{{commit}}")

    def _checkout_remote(self) -> str:
        # checkout -B also repairs a detached or renamed HEAD; clean drops files a failed
        # edit may have left, so every edit starts from exactly the remote tree.
        self._git(
            "checkout", "--quiet", "--force", "--no-track", "-B", self.branch, self._remote_ref
        )
        self._git("clean", "-ffdx", "--quiet")
        return self._git("rev-parse", "HEAD")

    def _fetch_or_clone(self) -> None:
        self._forget_fresh()
        if self._has_clone():
            refspec = f"+refs/heads/{self.branch}:{self._remote_ref}"
            self._network("fetch", "--quiet", "--prune", "--no-tags", "origin", refspec)
            self._mark_fresh()
            return
        self._cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Clone into a scratch folder and rename, so a crash never leaves a half clone
        # where the next sync would trust it.
        for leftover in self._cache_dir.glob(f"{self._clone_dir.name}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if self._clone_dir.exists():
            shutil.rmtree(self._clone_dir)
        scratch = Path(
            tempfile.mkdtemp(prefix=f"{self._clone_dir.name}.partial-", dir=self._cache_dir)
        )
        try:
            self._clone_into(scratch)
            scratch.rename(self._clone_dir)
            self._mark_fresh()
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)

    def _clone_into(self, scratch: Path) -> None:
        clone = ["clone", "--quiet", "--no-tags", "--single-branch", f"--branch={self.branch}"]
        if self._history is None:
            self._network(*clone, "--", self.url, str(scratch), cwd=self._cache_dir)
            return
        since = int(time.time() - self._history.total_seconds())
        result = self._runner.run(
            [*clone, f"--shallow-since={since}", "--", self.url, str(scratch)],
            cwd=self._cache_dir,
            network=True,
        )
        if not result.ok and "no commits selected" in result.output:
            # a quiet branch: nothing newer than the bound, so its tip is all we need
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(mode=0o700)
            self._network(*clone, "--depth=1", "--", self.url, str(scratch), cwd=self._cache_dir)
        elif not result.ok:
            raise self._error("git clone from", result)
        (scratch / ".git" / _SHALLOW_SINCE).write_text(f"{since}\n")

    def _shallower(self, since: dt.datetime | None) -> bool:
        """Whether the clone is shallow and may lack commits made after `since`."""
        if not (self._clone_dir / ".git" / "shallow").is_file():
            return False
        try:
            bound = int((self._clone_dir / ".git" / _SHALLOW_SINCE).read_text())
        except (FileNotFoundError, ValueError):
            return True  # unknown: trust nothing
        return since is None or int(since.timestamp()) < bound

    def _deepen_to(self, since: dt.datetime | None) -> None:
        """Make a shallow clone hold every commit made after `since` (all, for None)."""
        if not self._shallower(since):
            return
        marker = self._clone_dir / ".git" / _SHALLOW_SINCE
        wanted = None if since is None else int(since.timestamp())
        refspec = f"+refs/heads/{self.branch}:{self._remote_ref}"
        if wanted is None:
            self._network("fetch", "--quiet", "--no-tags", "--unshallow", "origin", refspec)
            marker.unlink(missing_ok=True)
            return
        result = self._runner.run(
            ["fetch", "--quiet", "--no-tags", f"--shallow-since={wanted}", "origin", refspec],
            cwd=self._clone_dir,
            network=True,
        )
        if not result.ok and "no commits selected" not in result.output:
            raise self._error("git fetch from", result)
        marker.write_text(f"{wanted}\n")

    def _push(self, base: str, head: str) -> bool:
        """Push commit `head`, built on `base`, to the branch: True when accepted, False
        when the branch is no longer at `base` (moved on, or reset: the lease).

        The lease (`--force-with-lease=<branch>:<base>`, which the server checks as it
        updates the ref) makes the push a compare-and-swap on the commit our commits were
        built on: fast-forward alone would also accept a branch reset backwards to an
        ancestor of it, and then the remote's head before our commits would not be the
        commit the edit (and its rollback rule) read. `head` descends from `base`, so what
        the lease lets through is a fast-forward.
        """
        lease = f"--force-with-lease=refs/heads/{self.branch}:{base}"
        try:
            result = self._runner.run(
                ["push", "--porcelain", lease, "--", "origin", f"{head}:refs/heads/{self.branch}"],
                cwd=self._clone_dir,
                network=True,
            )
        except BaseException:
            self._forget_fresh()
            raise
        if result.ok:
            self._git("update-ref", self._remote_ref, head)  # what the remote now holds
            self._mark_fresh()
            return True
        # refused (the branch moved) or an unclear answer (it may have landed): either way
        # the clone no longer knows the remote; while the push was under way it still did
        # (the lockless crash-safety lookup reads the ref meanwhile: neither value can
        # hold a commit of the Promotion that reads it, as none of its commits is in flight)
        self._forget_fresh()
        both = result.output
        rejected = re.search(r"\[rejected\]|non-fast-forward|fetch first|stale info", both)
        if rejected and "[remote rejected]" not in both:
            return False
        raise self._error("push to", result)

    def _confined(self, relative: str) -> Path:
        """Resolve a repository-relative path; symlinks must not lead out of the clone."""
        candidate = confine_path(self._clone_dir, relative)
        root = self._clone_dir.resolve()
        resolved = candidate.resolve()
        inside = resolved.is_relative_to(root) and resolved != root
        if not inside or resolved.is_relative_to(root / ".git"):
            raise PermanentError(
                Reason.INVALID_OVERLAY,
                f"path {relative!r} leads outside the repository (through a symlink); "
                "files must live inside the repository",
            )
        return resolved

    def _run(self, args: list[str], stdin: bytes | None = None) -> Result:
        return self._runner.run(args, cwd=self._clone_dir, network=False, stdin=stdin)

    def _git_raw(self, *args: str) -> str:
        """Run a local git command in the clone; return stdout as it is."""
        result = self._run(list(args))
        if not result.ok:
            raise self._error(f"git {args[0]} in the clone of", result)
        return result.out

    def _git(self, *args: str) -> str:
        """Run a local git command in the clone; return stdout, stripped."""
        return self._git_raw(*args).strip()

    def _network(self, *args: str, cwd: Path | None = None) -> None:
        result = self._runner.run(list(args), cwd=cwd or self._clone_dir, network=True)
        if not result.ok:
            raise self._error(f"git {args[0]} from", result)

    def _error(self, operation: str, result: Result) -> PromotionError:
        """Sort a failed git command into a typed, redacted error."""
        return git_failure(operation, self._shown_url, self.branch, result.output, self._secrets)


def _commit_text(message: str, secrets: Sequence[str]) -> str:
    """The message as `git commit --cleanup=whitespace` stores it: no whitespace at line
    ends, a run of empty lines made one, none at the start or the end (lines starting
    with '#' are kept: a reason may have them). Secrets are redacted first: the caller
    builds the message, but a credential must never land in the history even if one
    slipped into a reason text."""
    kept: list[str] = []
    for raw in redact(message, secrets).split("\n"):
        line = raw.rstrip(" \t\n\v\f\r")
        if line or (kept and kept[-1]):
            kept.append(line)
    while kept and not kept[-1]:
        kept.pop()
    if not kept:
        raise ValueError("a commit needs a message")
    return "\n".join(kept) + "\n"


def _quoted(path: str) -> bytes:
    """A path as `git fast-import` reads it: C-style quoted when it must be."""
    raw = path.encode("utf-8")
    if b'"' not in raw and b"\n" not in raw:
        return raw
    escaped = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
    return b'"' + escaped + b'"'


def _overlaps(paths: set[str], written: set[str], folders: set[str]) -> bool:
    """Whether a path is written, holds a written path, or lies under a written file."""
    return any(
        path in written
        or path in folders
        or any(str(parent) in written for parent in PurePosixPath(path).parents)
        for path in paths
    )


def _run_before_push(jobs: Sequence[_Job]) -> list[tuple[_Job, Exception]]:
    """Run the jobs' `before_push` hooks, side by side when there are several; the jobs
    whose hook raised, with what it raised."""

    def run(job: _Job, hook: Callable[[], None]) -> Exception | None:
        try:
            job.context.run(hook)
        except Exception as error:  # the job's own outcome, handed back
            return error
        return None

    hooks = [(job, job.before_push) for job in jobs if job.before_push is not None]
    outcomes: list[tuple[_Job, Exception | None]] = []
    if len(hooks) == 1:
        outcomes = [(job, run(job, hook)) for job, hook in hooks]
    elif hooks:
        try:
            futures = [(job, _BEFORE_PUSH.submit(run, job, hook)) for job, hook in hooks]
        except RuntimeError:  # the process is shutting down: one after the other
            outcomes = [(job, run(job, hook)) for job, hook in hooks]
        else:
            outcomes = [(job, future.result()) for job, future in futures]
    return [(job, error) for job, error in outcomes if error is not None]
