"""GitRepository against real remotes: persistent clone, commit and push, trailers, races."""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import os
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from promotion_operator.domain.gitfailures import GitPushRejectedError
from promotion_operator.domain.planning import commit_message
from promotion_operator.gitops import GitRepository, PushResult, Reader, SSHAuth
from promotion_sandbox.gitserver import (
    branch_head,
    commit_files,
    commit_messages,
    read_remote_file,
)
from support.gitcases import OVERLAY, SEED

pytestmark = pytest.mark.integration

GIT_IDENTITY = {
    **os.environ,
    "GIT_AUTHOR_NAME": "ci",
    "GIT_AUTHOR_EMAIL": "ci@example.invalid",
    "GIT_COMMITTER_NAME": "ci",
    "GIT_COMMITTER_EMAIL": "ci@example.invalid",
}

NEW_OVERLAY = SEED[OVERLAY].replace("v20250812-a1b2c3d", "v20250819-f3b8541")
MESSAGE = (
    "Promote tvhub-prod to v20250819-f3b8541\n\n"
    "Reason: color button fix\n\n"
    "Promotion: tvhub/tvhub-prod-v20250819-f3b8541\n"
    "Promotion-UID: 0b6c2d7e-uid\n"
    "Promotion-Generation: 3\n"
)
TRAILERS = {"Promotion-UID": "0b6c2d7e-uid", "Promotion-Generation": "3"}


def bump(read: Reader) -> dict[str, str]:
    """The edit a promotion makes: move prod's newTag."""
    text = read(OVERLAY)
    return {OVERLAY: text.replace("v20250812-a1b2c3d", "v20250819-f3b8541")}


def test_first_sync_clones_and_later_syncs_fetch_into_the_same_clone(
    ssh_repo: GitRepository, bare_repo: Path, cache_dir: Path
) -> None:
    first = ssh_repo.sync()
    assert first == branch_head(bare_repo)
    git_dir = ssh_repo.worktree / ".git"
    inode = git_dir.stat().st_ino
    marker = git_dir / "objects" / "sandbox-marker"
    marker.write_text("a fresh clone would not have this")

    someone_else = commit_files(bare_repo, {"README.md": "hello\n"}, message="docs")
    second = ssh_repo.sync()

    assert second == someone_else  # the fetch brought the new commit
    assert git_dir.stat().st_ino == inode  # ...into the same clone
    assert marker.exists()
    assert (ssh_repo.worktree / "README.md").read_text() == "hello\n"
    clones = [p for p in cache_dir.iterdir() if p.is_dir()]
    assert clones == [ssh_repo.worktree]


def test_a_second_object_for_the_same_remote_reuses_the_clone(
    ssh_repo: GitRepository, cache_dir: Path, ssh_auth: SSHAuth
) -> None:
    ssh_repo.sync()
    inode = (ssh_repo.worktree / ".git").stat().st_ino
    again = GitRepository(ssh_repo.url, "main", cache_dir=cache_dir, auth=ssh_auth)
    again.sync()
    assert again.worktree == ssh_repo.worktree
    assert (again.worktree / ".git").stat().st_ino == inode


def test_sync_discards_local_leftovers(ssh_repo: GitRepository) -> None:
    ssh_repo.sync()
    (ssh_repo.worktree / OVERLAY).write_text("half-written edit")
    (ssh_repo.worktree / "stray.yaml").write_text("left by a crash")
    ssh_repo.sync()
    assert ssh_repo.read_file(OVERLAY) == SEED[OVERLAY]
    assert not (ssh_repo.worktree / "stray.yaml").exists()


def test_read_file_returns_the_text_byte_for_byte(ssh_repo: GitRepository, bare_repo: Path) -> None:
    commit_files(bare_repo, {"crlf.yaml": "a: 1\r\nb: 2\r\n"})
    ssh_repo.sync()
    assert ssh_repo.read_file(OVERLAY) == SEED[OVERLAY]
    assert ssh_repo.read_file("crlf.yaml") == "a: 1\r\nb: 2\r\n"


def test_commit_and_push_lands_one_commit_with_the_message(
    ssh_repo: GitRepository, bare_repo: Path
) -> None:
    before = len(commit_messages(bare_repo))

    result = ssh_repo.commit_and_push(bump, MESSAGE)

    assert result.changed
    assert result.attempts == 1
    assert result.commit == branch_head(bare_repo)
    assert read_remote_file(bare_repo, OVERLAY) == NEW_OVERLAY
    messages = commit_messages(bare_repo)
    assert len(messages) == before + 1
    assert messages[0] == MESSAGE.strip()
    author = subprocess.run(
        ["git", f"--git-dir={bare_repo}", "log", "-1", "--format=%an <%ae>|%cn <%ce>", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert author.strip() == (
        "Promotion Operator <promotion-operator@gitops.dev>|"
        "Promotion Operator <promotion-operator@gitops.dev>"
    )


def test_commit_keeps_comment_like_lines_in_the_message(
    ssh_repo: GitRepository, bare_repo: Path
) -> None:
    message = "Promote\n\n# not a comment: part of the reason\n\nPromotion-UID: x\n"
    ssh_repo.commit_and_push(bump, message)
    assert commit_messages(bare_repo)[0] == message.strip()


def test_commit_and_push_creates_new_folders(ssh_repo: GitRepository, bare_repo: Path) -> None:
    ssh_repo.commit_and_push(lambda _: {"promotions/p1.yaml": "kind: Promotion\n"}, "add")
    assert read_remote_file(bare_repo, "promotions/p1.yaml") == "kind: Promotion\n"


def test_find_commit_finds_the_newest_commit_with_all_trailers(
    ssh_repo: GitRepository, bare_repo: Path
) -> None:
    assert ssh_repo.find_commit(TRAILERS) is None

    first = ssh_repo.commit_and_push(bump, MESSAGE).commit
    commit_files(bare_repo, {"README.md": "unrelated\n"}, message="docs")

    assert ssh_repo.find_commit(TRAILERS) == first
    assert ssh_repo.find_commit({"Promotion-UID": "0b6c2d7e-uid"}) == first
    assert ssh_repo.find_commit({**TRAILERS, "Promotion-Generation": "4"}) is None
    assert ssh_repo.find_commit({"Promotion-UID": "someone-else"}) is None


def test_find_commit_sees_the_remote_without_an_explicit_sync(
    ssh_repo: GitRepository, bare_repo: Path
) -> None:
    ssh_repo.sync()
    theirs = commit_files(bare_repo, {"x": "1\n"}, message=MESSAGE)  # e.g. another replica
    assert ssh_repo.find_commit(TRAILERS) == theirs


def test_find_commit_has_no_window_and_honours_since(
    ssh_repo: GitRepository, bare_repo: Path
) -> None:
    ours = ssh_repo.commit_and_push(bump, MESSAGE).commit
    # 600 later commits: more than the old 500-commit window ever looked at
    head = branch_head(bare_repo)
    for n in range(600):
        head = subprocess.run(
            ["git", "commit-tree", f"{head}^{{tree}}", "-p", head, "-m", f"later {n}"],
            cwd=bare_repo,
            env=GIT_IDENTITY,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    subprocess.run(["git", "update-ref", "refs/heads/main", head], cwd=bare_repo, check=True)

    assert ssh_repo.find_commit(TRAILERS) == ours
    assert (
        ssh_repo.find_commit(TRAILERS, since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        == ours
    )
    assert (
        ssh_repo.find_commit(TRAILERS, since=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        is None
    )


def test_a_concurrent_commit_is_kept_and_our_edit_reapplied(
    ssh_repo: GitRepository, bare_repo: Path
) -> None:
    seen_heads: list[str] = []

    def edit_racing_with_ci(read: Reader) -> Mapping[str, str]:
        seen_heads.append(branch_head(bare_repo))
        if len(seen_heads) == 1:
            # CI pushes to the same branch after our fetch and before our push.
            commit_files(bare_repo, {"k8s/overlays/dev/kustomization.yaml": "dev\n"}, message="ci")
        return bump(read)

    result = ssh_repo.commit_and_push(edit_racing_with_ci, MESSAGE)

    assert result == PushResult(commit=branch_head(bare_repo), attempts=2, changed=True)
    assert len(seen_heads) == 2
    assert (ssh_repo.worktree / "k8s/overlays/dev/kustomization.yaml").exists()
    assert read_remote_file(bare_repo, "k8s/overlays/dev/kustomization.yaml") == "dev\n"
    assert read_remote_file(bare_repo, OVERLAY) == NEW_OVERLAY
    messages = commit_messages(bare_repo)
    assert messages[:2] == [MESSAGE.strip(), "ci"]
    assert messages.count(MESSAGE.strip()) == 1


def test_if_the_race_already_made_our_change_nothing_is_committed(
    ssh_repo: GitRepository, bare_repo: Path
) -> None:
    calls = 0

    def edit(read: Reader) -> Mapping[str, str] | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            commit_files(bare_repo, {OVERLAY: NEW_OVERLAY}, message="a human did it first")
            return bump(read)
        return None if read(OVERLAY) == NEW_OVERLAY else bump(read)

    result = ssh_repo.commit_and_push(edit, MESSAGE)

    assert result == PushResult(commit=None, attempts=2, changed=False)
    assert commit_messages(bare_repo)[0] == "a human did it first"


def test_a_branch_that_keeps_moving_gives_a_retryable_push_rejection(
    ssh_repo: GitRepository, bare_repo: Path
) -> None:
    calls = 0

    def edit_always_losing(read: Reader) -> Mapping[str, str]:
        nonlocal calls
        calls += 1
        commit_files(bare_repo, {"busy.txt": f"{calls}\n"}, message=f"busy {calls}")
        return bump(read)

    with pytest.raises(GitPushRejectedError) as caught:
        ssh_repo.commit_and_push(edit_always_losing, MESSAGE, max_attempts=3)

    assert caught.value.retryable
    assert caught.value.reason == "GitPushRejected"
    assert calls == 3
    assert MESSAGE.strip() not in commit_messages(bare_repo)


@pytest.mark.parametrize("nothing", [None, {}])
def test_no_change_means_no_commit(
    ssh_repo: GitRepository, bare_repo: Path, nothing: Mapping[str, str] | None
) -> None:
    head = branch_head(bare_repo)
    result = ssh_repo.commit_and_push(lambda _: nothing, MESSAGE)
    assert result == PushResult(commit=None, attempts=1, changed=False)
    assert branch_head(bare_repo) == head


def test_rewriting_identical_text_means_no_commit(ssh_repo: GitRepository, bare_repo: Path) -> None:
    head = branch_head(bare_repo)
    result = ssh_repo.commit_and_push(lambda _: {OVERLAY: SEED[OVERLAY]}, MESSAGE)
    assert result == PushResult(commit=None, attempts=1, changed=False)
    assert branch_head(bare_repo) == head


def test_parallel_promotions_in_one_process_both_land(
    ssh_repo: GitRepository, bare_repo: Path, cache_dir: Path, ssh_auth: SSHAuth
) -> None:
    # Two objects, same remote and cache: the shared lock serialises them.
    other = GitRepository(ssh_repo.url, "main", cache_dir=cache_dir, auth=ssh_auth)
    results: list[PushResult] = []
    errors: list[BaseException] = []

    def promote(repo: GitRepository, name: str) -> None:
        try:
            results.append(repo.commit_and_push(lambda _: {name: name + "\n"}, f"add {name}"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=promote, args=(ssh_repo, "one.txt")),
        threading.Thread(target=promote, args=(other, "two.txt")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert all(result.changed and result.attempts == 1 for result in results)
    assert read_remote_file(bare_repo, "one.txt") == "one.txt\n"
    assert read_remote_file(bare_repo, "two.txt") == "two.txt\n"


def test_separate_caches_race_through_push_retries(
    ssh_repo: GitRepository, bare_repo: Path, tmp_path: Path, ssh_auth: SSHAuth
) -> None:
    # Two replicas with their own caches: no shared clone, only the remote decides.
    other = GitRepository(ssh_repo.url, "main", cache_dir=tmp_path / "other", auth=ssh_auth)
    other.sync()
    ssh_repo.commit_and_push(lambda _: {"one.txt": "1\n"}, "one")
    result = other.commit_and_push(lambda _: {"two.txt": "2\n"}, "two")
    assert result.changed
    assert commit_messages(bare_repo)[:2] == ["two", "one"]


def test_the_lock_is_also_a_file_lock_for_other_processes(ssh_repo: GitRepository) -> None:
    lock_files = list(ssh_repo.worktree.parent.glob("*.lock"))
    with ssh_repo.lock(), ssh_repo.lock():  # re-entrant in the holding thread
        lock_files = list(ssh_repo.worktree.parent.glob("*.lock"))
        assert len(lock_files) == 1
        fd = os.open(lock_files[0], os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(lock_files[0], os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on exit
    finally:
        os.close(fd)


def test_https_token_clone_and_push(https_repo: GitRepository, bare_repo: Path) -> None:
    assert https_repo.sync() == branch_head(bare_repo)
    result = https_repo.commit_and_push(bump, MESSAGE)
    assert result.changed
    assert read_remote_file(bare_repo, OVERLAY) == NEW_OVERLAY
    assert https_repo.find_commit(TRAILERS) == result.commit


def test_file_remote_with_the_local_flag(bare_repo: Path, cache_dir: Path) -> None:
    repo = GitRepository(f"file://{bare_repo}", "main", cache_dir=cache_dir, allow_file=True)
    assert repo.sync() == branch_head(bare_repo)
    assert repo.commit_and_push(bump, MESSAGE).changed


def _promotion_message(name: str, old: str, new: str) -> str:
    return commit_message(
        namespace="tvhub",
        name=name,
        uid=f"uid-{name}",
        generation=1,
        environment="tvhub-prod",
        old=old,
        new=new,
        reason=f"Promotion-UID: forged-in-{name}",
        requested_by="alice",
    )


def _unrelated_commits(bare_repo: Path, count: int) -> None:
    """`count` commits on main that leave the overlay alone, written by one git fast-import."""
    head = branch_head(bare_repo)
    stream = [f"reset refs/heads/main\nfrom {head}\n"]
    for n in range(count):
        text = f"{n}\n"
        stream.append(
            f"commit refs/heads/main\ncommitter ci <ci@example.invalid> {1_700_000_000 + n} +0000\n"
            f"data {len(f'later {n}')}\nlater {n}\nM 100644 inline README.md\n"
            f"data {len(text)}\n{text}\n"
        )
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=bare_repo,
        input="".join(stream).encode(),
        env=GIT_IDENTITY,
        check=True,
    )


def test_promotions_of_a_version_are_found_by_one_log_over_the_whole_history(
    bare_repo: Path, cache_dir: Path
) -> None:
    repo = GitRepository(f"file://{bare_repo}", "main", cache_dir=cache_dir, allow_file=True)
    versions = ["v20250812-a1b2c3d", "v20250819-f3b8541", "v20250826-0badc0d"]
    middle = versions[1]
    for old, new in itertools.pairwise(versions):
        text = read_remote_file(bare_repo, OVERLAY).replace(old, new)
        commit_files(bare_repo, {OVERLAY: text}, message=_promotion_message(f"to-{new}", old, new))
    # not promotions of the overlay: a human commit naming the version, an operator-like
    # commit of another file, a reason quoting the version; then 1000 unrelated commits
    overlay = read_remote_file(bare_repo, OVERLAY)
    commit_files(bare_repo, {OVERLAY: overlay + "# x\n"}, message=f"revert to {middle} by hand")
    commit_files(bare_repo, {"README.md": "x\n"}, message=_promotion_message("o", middle, "b"))
    quoting = _promotion_message("q", "a", "b").replace("Reason: ", f"Reason: like {middle} ")
    commit_files(bare_repo, {OVERLAY: overlay + "# y\n"}, message=quoting)
    _unrelated_commits(bare_repo, 1000)

    head = repo.snapshot()
    found = repo.promotions_of(head, OVERLAY, middle)

    assert [(c.old, c.new) for c in found] == [
        ("v20250819-f3b8541", "v20250826-0badc0d"),
        ("v20250812-a1b2c3d", "v20250819-f3b8541"),
    ]
    assert found[1].promotion == "tvhub/to-v20250819-f3b8541"
    assert found[1].requested_by == "alice"
    assert found[1].environment == "tvhub-prod"
    assert dt.datetime.fromisoformat(found[1].when) <= dt.datetime.now(dt.UTC)
    assert repo.promotions_of(head, "k8s/overlays/dev/kustomization.yaml", middle) == []
    assert repo.promotions_of(head, OVERLAY, "v2025.*") == []  # a fixed string, no pattern


def test_promotions_of_reads_only_new_commits_later_and_starts_afresh_after_a_rewrite(
    bare_repo: Path, cache_dir: Path
) -> None:
    repo = GitRepository(f"file://{bare_repo}", "main", cache_dir=cache_dir, allow_file=True)
    old, new = "v20250812-a1b2c3d", "v20250819-f3b8541"
    before = branch_head(bare_repo)
    assert repo.promotions_of(repo.snapshot(), OVERLAY, new) == []  # cached at this head
    text = read_remote_file(bare_repo, OVERLAY).replace(old, new)
    commit_files(bare_repo, {OVERLAY: text}, message=_promotion_message("to-new", old, new))

    (found,) = repo.promotions_of(repo.snapshot(), OVERLAY, new)  # only the commit since
    assert found.promotion == "tvhub/to-new"
    assert repo.promotions_of(repo.snapshot(), OVERLAY, new) == [found]  # nothing new

    # a force-push drops that commit: the cached answer must not survive it
    subprocess.run(["git", "update-ref", "refs/heads/main", before], cwd=bare_repo, check=True)
    commit_files(bare_repo, {"README.md": "rewritten\n"}, message="rewrite")
    assert repo.promotions_of(repo.snapshot(), OVERLAY, new) == []


def test_promotions_of_an_older_head_leaves_out_what_came_after_it(
    bare_repo: Path, cache_dir: Path
) -> None:
    """A check that read the head before a push asks about that head after the push has
    been looked at: the later commit is not in its history."""
    repo = GitRepository(f"file://{bare_repo}", "main", cache_dir=cache_dir, allow_file=True)
    old, new = "v20250812-a1b2c3d", "v20250819-f3b8541"
    before = repo.snapshot()
    assert repo.promotions_of(before, OVERLAY, new) == []
    text = read_remote_file(bare_repo, OVERLAY).replace(old, new)
    commit_files(bare_repo, {OVERLAY: text}, message=_promotion_message("to-new", old, new))
    other = "k8s/overlays/dev/kustomization.yaml"
    commit_files(bare_repo, {other: text}, message=_promotion_message("dev", old, new))
    after = repo.snapshot()
    (found,) = repo.promotions_of(after, OVERLAY, new)  # the other file's is not this one's
    assert found.promotion == "tvhub/to-new"
    assert [c.promotion for c in repo.promotions_of(after, other, new)] == ["tvhub/dev"]
    assert repo.promotions_of(before, OVERLAY, new) == []  # asked at the old head again
    middle = subprocess.run(
        ["git", "-C", str(bare_repo), "rev-parse", "main^"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert repo.promotions_of(middle, OVERLAY, new) == [found]  # a head never looked at
    assert repo.promotions_of(middle, other, new) == []


def test_our_own_push_is_in_the_history_without_reading_git_again(
    bare_repo: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = GitRepository(f"file://{bare_repo}", "main", cache_dir=cache_dir, allow_file=True)
    old, new = "v20250812-a1b2c3d", "v20250819-f3b8541"
    assert repo.promotions_of(repo.snapshot(), OVERLAY, new) == []
    text = read_remote_file(bare_repo, OVERLAY).replace(old, new)
    pushed = repo.commit_and_push(
        lambda _read: {OVERLAY: text}, _promotion_message("ours", old, new), batch=True
    )
    assert pushed.commit == branch_head(bare_repo)
    ran: list[list[str]] = []
    runner = repo._runner  # watching which git commands run
    run = runner.run

    def watched(args: list[str], **options: Any) -> Any:
        ran.append(args)
        return run(args, **options)

    monkeypatch.setattr(runner, "run", watched)
    (found,) = repo.promotions_of(pushed.commit, OVERLAY, new)
    assert found.sha == pushed.commit and found.promotion == "tvhub/ours"
    assert ran == []  # the push told the history what it added
    from_git = GitRepository(
        f"file://{bare_repo}", "main", cache_dir=cache_dir / "x", allow_file=True
    )
    assert from_git.promotions_of(from_git.snapshot(), OVERLAY, new) == [found]  # as git says


def test_a_commit_without_parent_is_no_promotion_of_every_overlay(
    tmp_path: Path, cache_dir: Path
) -> None:
    """A shallow clone's oldest commit (and a root commit) has no parent: git would list
    every file of its tree as changed, and another Environment's promotion naming the
    version would count as a promotion of this overlay (a forward Promotion refused, or a
    rollback vouched for by the wrong commit)."""
    work, bare = tmp_path / "work", tmp_path / "remote.git"
    version = "v20250819-f3b8541"
    dev = "k8s/overlays/dev/kustomization.yaml"
    for path in (OVERLAY, dev):
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(f"images:\n- name: app\n  newTag: {version}\n")
    message = _promotion_message("dev-up", "v20250812-a1b2c3d", version).replace(
        "tvhub-prod", "tvhub-dev"
    )
    for args in (
        ("init", "--quiet", "--initial-branch=main", str(work)),
        ("-C", str(work), "add", "."),
        ("-C", str(work), "commit", "--quiet", "-m", message),
        ("clone", "--quiet", "--bare", str(work), str(bare)),
    ):
        subprocess.run(["git", *args], env=GIT_IDENTITY, check=True)
    repo = GitRepository(f"file://{bare}", "main", cache_dir=cache_dir, allow_file=True)

    head = repo.snapshot()

    assert repo.promotions_of(head, OVERLAY, version) == []
