"""The clone cache on real git: bounded history deepened on demand, and eviction.

A clone keeps only `history` of commits (shallow); the crash-safety lookup deepens it
when a Promotion is older, so it still finds an old commit. Eviction removes clones
unused for a while or over the budget, never one a promotion or a refresh holds.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from promotion_operator.gitops import GitRepository
from promotion_operator.gitops.cache import clones, evict, shared_use, use_lock_path
from promotion_sandbox.gitserver import branch_head, commit_count, init_bare_repo
from support.gitcases import OVERLAY, SEED

pytestmark = pytest.mark.integration

TRAILERS = {"Promotion-UID": "old-uid", "Promotion-Generation": "1"}
NOW = dt.datetime.now(dt.UTC)


def add_commit(bare: Path, message: str, when: dt.datetime) -> str:
    """A commit on main of the bare repo, committed at `when` (same tree as its parent)."""
    head = branch_head(bare)
    stamp = f"{int(when.timestamp())} +0000"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "ci",
        "GIT_AUTHOR_EMAIL": "ci@example.invalid",
        "GIT_COMMITTER_NAME": "ci",
        "GIT_COMMITTER_EMAIL": "ci@example.invalid",
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
    }
    sha = subprocess.run(
        ["git", "commit-tree", f"{head}^{{tree}}", "-p", head, "-m", message],
        cwd=bare,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(["git", "update-ref", "refs/heads/main", sha], cwd=bare, check=True)
    return sha


def old_history(bare: Path, *, recent: bool = True) -> str:
    """60 daily commits ending 30 days ago, one carrying our trailers 40 days ago; then
    (with `recent`) a commit an hour ago. Returns the sha of the trailer commit."""
    init_bare_repo(bare, SEED)
    ours = ""
    for day in range(60, 0, -1):
        when = NOW - dt.timedelta(days=30 + day)
        if day == 10:
            trailers = "".join(f"{k}: {v}\n" for k, v in TRAILERS.items())
            ours = add_commit(bare, f"Promote prod\n\n{trailers}", when)
        else:
            add_commit(bare, f"ci: build {day}", when)
    if recent:
        add_commit(bare, "ci: recent", NOW - dt.timedelta(hours=1))
    return ours


def clone_commits(repo: GitRepository) -> int:
    out = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"],
        cwd=repo.worktree,
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout)


def repository(bare: Path, cache: Path, history: dt.timedelta | None) -> GitRepository:
    return GitRepository(
        f"file://{bare}", "main", cache_dir=cache, allow_file=True, history=history
    )


def test_a_bounded_clone_holds_recent_history_and_deepens_for_an_old_promotion(
    tmp_path: Path,
) -> None:
    bare = tmp_path / "remote.git"
    ours = old_history(bare)
    repo = repository(bare, tmp_path / "cache", dt.timedelta(days=7))

    repo.sync()
    assert (repo.worktree / ".git" / "shallow").is_file()
    held = clone_commits(repo)
    assert held < commit_count(bare) // 10  # the recent commit, not the 62 of history

    # a Promotion created an hour ago: its commit cannot be older, nothing is fetched
    assert repo.find_commit(TRAILERS, since=NOW - dt.timedelta(hours=2)) is None
    assert clone_commits(repo) == held
    # a Promotion created 45 days ago: the clone deepens and finds it
    assert repo.find_commit(TRAILERS, since=NOW - dt.timedelta(days=45)) == ours
    assert held < clone_commits(repo) < commit_count(bare)
    # no bound at all: the whole history
    assert repo.find_commit(TRAILERS) == ours
    assert clone_commits(repo) == commit_count(bare)


def test_the_parent_of_a_shallow_clones_oldest_commit_is_fetched_not_taken_for_empty(
    tmp_path: Path,
) -> None:
    # A crash recovery reads the overlay at the found commit's parent for the previous
    # version and the diff; at the edge of the kept history git has no parent to show.
    bare = tmp_path / "remote.git"
    old_history(bare, recent=False)
    bumped = SEED[OVERLAY].replace("v20250812-a1b2c3d", "v20250819-f3b8541")
    repo = repository(bare, tmp_path / "cache", dt.timedelta(days=7))
    subprocess.run(["git", "clone", "-q", str(bare), str(tmp_path / "human")], check=True)
    (tmp_path / "human" / OVERLAY).write_text(bumped)
    for args in (["add", "."], ["commit", "-qm", "bump"], ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run(["git", "-c", "user.name=h", "-c", "user.email=h@x", *args],
                       cwd=tmp_path / "human", check=True)  # fmt: skip
    head = repo.sync()
    assert clone_commits(repo) == 1  # only the tip: every older commit is a month old
    assert repo.file_at(head, OVERLAY) == bumped
    assert repo.file_at(f"{head}^", OVERLAY) == SEED[OVERLAY]
    assert clone_commits(repo) == 2


def test_a_bounded_clone_pushes_and_a_quiet_branch_still_clones(tmp_path: Path) -> None:
    bare = tmp_path / "remote.git"
    old_history(bare, recent=False)  # nothing newer than the bound: the tip alone
    repo = repository(bare, tmp_path / "cache", dt.timedelta(days=7))

    assert repo.sync() == branch_head(bare)
    assert clone_commits(repo) == 1
    before = commit_count(bare)

    def bump(read: object) -> dict[str, str]:
        del read
        return {OVERLAY: SEED[OVERLAY].replace("v20250812-a1b2c3d", "v20250819-f3b8541")}

    pushed = repo.commit_and_push(bump, "Promote prod\n\nPromotion-UID: new\n").commit
    assert pushed == branch_head(bare)
    assert commit_count(bare) == before + 1


def test_eviction_removes_idle_clones_and_never_one_in_use(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    repos = []
    for name in ("idle", "promoting", "refreshing", "fresh"):
        bare = tmp_path / f"{name}.git"
        init_bare_repo(bare, SEED)
        repo = repository(bare, cache, None)
        repo.sync()
        repos.append(repo)
    idle, promoting, refreshing, fresh = repos
    hour_ago = time.time() - 3600
    for repo in (idle, promoting, refreshing):
        lock = cache / f"{repo.worktree.name}.lock"
        os.utime(lock, (hour_ago, hour_ago))
    assert [c.path for c in clones(cache)][-1] == fresh.worktree  # least recent first

    held = threading.Event()
    release = threading.Event()

    def promote() -> None:  # a promotion in another thread holds its lock
        with promoting.lock():
            held.set()
            release.wait(30)

    worker = threading.Thread(target=promote)
    worker.start()
    held.wait(30)
    try:
        with shared_use(use_lock_path(cache / f"{refreshing.worktree.name}.lock")):
            # the promotion's lock() touched its clone: backdate it again while it holds it
            os.utime(cache / f"{promoting.worktree.name}.lock", (hour_ago, hour_ago))
            swept = evict(cache, idle=600, budget=1 << 40)
    finally:
        release.set()
        worker.join()

    assert swept.evicted == [idle.worktree]
    assert sorted(swept.busy) == sorted([promoting.worktree, refreshing.worktree])
    assert not idle.worktree.exists()
    assert fresh.worktree.is_dir() and promoting.worktree.is_dir()
    # an evicted clone is cloned again on its next use
    assert idle.sync() == branch_head(tmp_path / "idle.git")


def test_over_the_budget_the_least_recently_used_go_first(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    repos = []
    for n in range(3):
        bare = tmp_path / f"r{n}.git"
        init_bare_repo(bare, SEED)
        repo = repository(bare, cache, None)
        repo.sync()
        os.utime(cache / f"{repo.worktree.name}.lock", (1000 + n, 1000 + n))
        repos.append(repo)
    sizes = {c.path: c.size for c in clones(cache)}
    budget = sizes[repos[1].worktree] + sizes[repos[2].worktree]

    swept = evict(cache, idle=1e12, budget=budget, now=2000)

    assert swept.evicted == [repos[0].worktree]
    assert swept.kept_bytes <= budget
    assert [c.path for c in clones(cache)] == [repos[1].worktree, repos[2].worktree]


def test_leftovers_of_a_killed_clone_are_removed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    bare = tmp_path / "r.git"
    init_bare_repo(bare, SEED)
    repo = repository(bare, cache, None)
    repo.sync()
    leftover = cache / f"{repo.worktree.name}.partial-x1y2"
    (leftover / "objects").mkdir(parents=True)

    evict(cache, idle=1e12, budget=1 << 40)

    assert not leftover.exists()
    assert repo.worktree.is_dir()
