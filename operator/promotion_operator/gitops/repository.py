"""The promotion workflow over a persistent clone of one (url, branch): sync, read, commit, push.

Never a fresh clone per promotion: the clone lives in the cache folder and every sync is a
fetch of one branch and a hard reset. Failures come back as the domain's typed git errors
(`domain.gitfailures`), redacted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
# promotions_of answers, per (clone, file, version): the head they were read at and the
# commits found. The next look reads only the commits since (a soak's rounds cost almost
# nothing); a rewritten branch starts afresh. Bounded (least recently used dropped).
_PROMOTIONS_CACHE: OrderedDict[tuple[str, str, str], tuple[str, list[PromotionCommit]]] = (
    OrderedDict()
)
_PROMOTIONS_CACHE_SIZE = 4096
_PROMOTIONS_CACHE_LOCK = threading.Lock()


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

    def finish(self, result: PushResult | None = None, error: Exception | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


# Shared by every GitRepository of a clone (they are made per reconcile), keyed by the
# clone folder: the jobs waiting for its next push, and whether the clone is known to
# hold the remote branch as it is (set by a fetch or an accepted push of this process,
# cleared by any failure: only then may a promotion skip its fetch).
_GUARD = threading.Lock()
_UNCONFIRMED = "\0unconfirmed"  # an edit with nothing to change on an unfetched tree
_QUEUES: dict[Path, list[_Job]] = {}
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
            path = self._confined(relative)
            try:
                return path.read_bytes().decode("utf-8")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise PermanentError(
                    Reason.INVALID_OVERLAY,
                    f"{relative} is not a file on branch {self.branch} of {self._shown_url}",
                ) from None
            except UnicodeDecodeError:
                raise PermanentError(
                    Reason.INVALID_OVERLAY, f"{relative} is not UTF-8 text"
                ) from None

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
        with self.lock():
            if refresh or not self._has_clone():
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

    def promotions_of(
        self, commit: str, relative: str, version: str, *, remember: bool = True
    ) -> list[PromotionCommit]:
        """The operator's commits that moved a file to or from `version`, newest first.

        One `git log` over the whole history up to `commit` (no window that would hide an
        old promotion): git keeps the commits whose message names the version (a fixed
        string, so a tag cannot act as a pattern) and lists the files each changed; only a
        commit that changed `relative` and whose trailer block names a Promotion counts.
        Grepping for the version rather than limiting by path spares git a tree diff of
        every commit (3.6 s against about 1 s over 30,000 commits on the loaded test
        machine, `bench/rollback_history.py`), and a later look at the same version reads
        only the commits since the last one. Local: `commit` comes from `snapshot()` or
        `sync()`. `remember=False` leaves the cache as it is: for a commit of this process
        not pushed yet (a batch's), which a rejected push would make the cache's base.
        """
        confine_path(self._clone_dir, relative)
        if commit.startswith("-"):
            raise ValueError(f"not a commit: {commit!r}")
        key = (str(self._clone_dir), relative, version)
        with _PROMOTIONS_CACHE_LOCK:
            cached = _PROMOTIONS_CACHE.get(key)
        since: str | None = None
        if cached is not None and (
            cached[0] == commit or self._run(["merge-base", "--is-ancestor", cached[0], commit]).ok
        ):
            since = cached[0]
        newer = [] if since == commit else self._promotions_since(commit, since, relative, version)
        found = newer + (cached[1] if since is not None and cached is not None else [])
        if not remember:
            return found
        with _PROMOTIONS_CACHE_LOCK:
            _PROMOTIONS_CACHE[key] = (commit, found)
            _PROMOTIONS_CACHE.move_to_end(key)
            while len(_PROMOTIONS_CACHE) > _PROMOTIONS_CACHE_SIZE:
                _PROMOTIONS_CACHE.popitem(last=False)
        return list(found)

    def _promotions_since(
        self, commit: str, since: str | None, relative: str, version: str
    ) -> list[PromotionCommit]:
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
        found: list[PromotionCommit] = []
        for record in result.out.split(_RECORD):
            sha, _, rest = record.partition(_FIELD)
            when, _, rest = rest.partition(_FIELD)
            message, _, names = rest.rpartition(_FIELD)
            if not sha or relative not in names.split("\n"):
                continue
            parsed = parse_promotion_commit(sha, when, message)
            if parsed is not None and version in (parsed.old, parsed.new):
                found.append(parsed)
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
                if self._push(base):
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
        """Under the lock: commit each job's edit on a fresh tree, push all; retry the
        pushed ones on top of a moved branch. Every job is finished on return."""
        pending = list(jobs)
        base: str | None = None
        try:
            for attempt in range(1, max_attempts + 1):
                # push optimistically on a known-current clone; after a rejection, fetch,
                # unless a fetch meanwhile (the checks' head start, a status refresh) has
                # already brought the branch on past the head the rejected push built on
                remote = self._remote_head() if base is not None else None  # cloned by now
                moved = remote is not None and remote != base
                fetched = (attempt > 1 and not moved) or (attempt == 1 and not self._is_fresh())
                if fetched:
                    base = self._sync_locked()
                else:  # on the remote head as this clone knows it (a fetch may have moved it)
                    remote = remote or self._remote_head()
                    head = self._git("rev-parse", "HEAD")
                    base = remote if head == remote else self._checkout_remote()
                committed = self._commit_all(pending, attempt, fetched=fetched)
                if committed is None:
                    # "nothing to change" is a claim about the remote: fetch, then decide
                    base = self._sync_locked()
                    committed = self._commit_all(pending, attempt, fetched=True)
                if not committed:
                    return
                if self._push(base):
                    for job, commit in committed:
                        job.finish(PushResult(commit, attempt, changed=True))
                    return
                pending = [job for job, _ in committed]
            rejected = GitPushRejectedError(
                f"push to branch {self.branch} of {self._shown_url} was rejected as "
                f"non-fast-forward {max_attempts} times in a row: the branch keeps moving"
            )
            for job in pending:
                job.finish(error=rejected)
        except Exception as error:  # a failed fetch or push: every job still open shares it
            self._forget_fresh()
            for job in jobs:
                if not job.done.is_set():
                    job.finish(error=error)
        finally:
            for job in jobs:  # nothing may wait for ever
                if not job.done.is_set():
                    job.finish(error=GitPushRejectedError("the batch push ended early"))

    def _commit_all(
        self, jobs: list[_Job], attempt: int, *, fetched: bool
    ) -> list[tuple[_Job, str]] | None:
        """Commit every open job on the current head; the (job, commit) pairs to push.

        None when the tree was not fetched in this attempt and an edit found nothing to
        change: the clone may be behind someone else's commit, so that answer needs a
        fetch (the caller syncs, which also drops this pass's commits, and asks again).
        """
        committed: list[tuple[_Job, str]] = []
        for job in jobs:
            if job.done.is_set():
                continue
            outcome = self._commit_job(job, attempt, confirm_unchanged=fetched)
            if outcome is _UNCONFIRMED:
                return None
            if outcome is not None:
                committed.append((job, outcome))
        return committed

    def _commit_job(self, job: _Job, attempt: int, *, confirm_unchanged: bool) -> str | None:
        """Commit one job's edit on the current head; None when it needs no push (it is
        finished then: unchanged, or its own error, the tree put back); `_UNCONFIRMED`
        when it changes nothing but the tree was not fetched (`confirm_unchanged` off)."""
        head = self._git("rev-parse", "HEAD")
        try:
            changes = job.edit(self.read_file)
            if changes:
                for relative, text in changes.items():
                    path = self._confined(relative)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(text.encode("utf-8"))
                # only the edited paths: a monorepo's thousands of files are not scanned
                self._git("add", "--", *changes)
            if not changes or self._run(["diff", "--cached", "--quiet"]).ok:
                self._restore(head)
                if not confirm_unchanged:
                    return _UNCONFIRMED
                job.finish(PushResult(None, attempt, changed=False))
                return None
            self._commit(job.message)
            commit = self._git("rev-parse", "HEAD")
            if job.before_push is not None:
                job.before_push()
        except Exception as error:  # this edit only (a bad overlay, a newer Promotion)
            self._restore(head)
            job.finish(error=error)
            return None
        return commit

    def _commit(self, message: Message) -> None:
        text = message() if callable(message) else message
        # Defence in depth: the caller builds the message, but a credential must never land
        # in the repository's history even if one slipped into a reason text.
        text = redact(text, self._secrets)
        # whitespace cleanup keeps lines starting with '#' (a reason may have them).
        self._git("commit", "--no-verify", "--quiet", "--cleanup=whitespace", "-m", text)

    def _restore(self, head: str) -> None:
        self._git("reset", "--quiet", "--hard", head)
        self._git("clean", "-ffdx", "--quiet")

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
            return self._git("rev-parse", "HEAD")

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

    def _deepen_to(self, since: dt.datetime | None) -> None:
        """Make a shallow clone hold every commit made after `since` (all, for None)."""
        marker = self._clone_dir / ".git" / _SHALLOW_SINCE
        if not (self._clone_dir / ".git" / "shallow").is_file():
            return
        try:
            bound: int | None = int(marker.read_text())
        except (FileNotFoundError, ValueError):
            bound = None  # unknown: trust nothing
        wanted = None if since is None else int(since.timestamp())
        if bound is not None and wanted is not None and wanted >= bound:
            return
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

    def _push(self, base: str) -> bool:
        """Push HEAD, built on `base`, to the branch: True when accepted, False when the
        branch is no longer at `base` (moved on, or reset: the lease).

        The lease (`--force-with-lease=<branch>:<base>`, which the server checks as it
        updates the ref) makes the push a compare-and-swap on the commit our commits were
        built on: fast-forward alone would also accept a branch reset backwards to an
        ancestor of it, and then the remote's head before our commits would not be the
        commit the edit (and its rollback rule) read. HEAD descends from `base`, so what
        the lease lets through is a fast-forward.
        """
        self._forget_fresh()  # an unclear answer may or may not have moved the branch
        lease = f"--force-with-lease=refs/heads/{self.branch}:{base}"
        result = self._runner.run(
            ["push", "--porcelain", lease, "--", "origin", f"HEAD:refs/heads/{self.branch}"],
            cwd=self._clone_dir,
            network=True,
        )
        if result.ok:
            self._git("update-ref", self._remote_ref, "HEAD")  # what the remote now holds
            self._mark_fresh()
            return True
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
