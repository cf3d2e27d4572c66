"""Batch pushes against a real remote: queued edits of one branch share one push, and each
Promotion keeps its own commit and trailers (so crash safety still finds each one)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from promotion_operator.domain.errors import PermanentError, PromotionError, Reason
from promotion_operator.gitops import GitRepository, PushResult, Reader
from promotion_operator.gitops import repository as repository_module
from promotion_sandbox.gitserver import (
    branch_head,
    commit_files,
    commit_messages,
    read_remote_file,
)

pytestmark = pytest.mark.integration


def _message(index: int) -> str:
    return (
        f"promote prod-{index}: v1 -> v2\n\n"
        f"Promotion: ns/p-{index}\nPromotion-UID: uid-{index}\nPromotion-Generation: 1\n"
    )


def _trailers(index: int) -> dict[str, str]:
    return {"Promotion-UID": f"uid-{index}", "Promotion-Generation": "1"}


def _edit(index: int) -> Callable[[Reader], dict[str, str]]:
    return lambda _read: {f"k8s/overlays/prod-{index}/kustomization.yaml": f"tag: {index}\n"}


def _count_pushes(bare_repo: Path) -> Path:
    """A post-receive hook in the remote writes one line per accepted push."""
    log = bare_repo / "pushes.log"
    hook = bare_repo / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\necho push >> {log}\n")
    hook.chmod(0o755)
    return log


def _repo(bare_repo: Path, cache_dir: Path) -> GitRepository:
    return GitRepository(f"file://{bare_repo}", "main", cache_dir=cache_dir, allow_file=True)


def _run_queued(
    bare_repo: Path,
    cache_dir: Path,
    jobs: list[tuple[Callable[[Reader], dict[str, str]], str, Callable[[], None] | None]],
) -> list[PushResult | Exception]:
    """Queue every job while the branch's lock is held, then let one batch take them all."""
    holder = _repo(bare_repo, cache_dir)
    holder.sync()
    results: list[PushResult | Exception] = [RuntimeError("not run")] * len(jobs)

    def one(index: int) -> None:
        edit, message, before = jobs[index]
        try:
            results[index] = _repo(bare_repo, cache_dir).commit_and_push(
                edit, message, before_push=before, batch=True
            )
        except PromotionError as error:
            results[index] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    with holder.lock():
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(repository_module._QUEUES.get(holder.worktree, [])) < len(jobs):
            assert time.monotonic() < deadline, "jobs were not queued"
            time.sleep(0.01)
    for thread in threads:
        thread.join(60)
    return results


def test_queued_edits_share_one_push_each_with_its_own_commit(
    bare_repo: Path, cache_dir: Path
) -> None:
    pushes = _count_pushes(bare_repo)
    count = 12
    results = _run_queued(
        bare_repo, cache_dir, [(_edit(i), _message(i), None) for i in range(count)]
    )
    assert all(isinstance(r, PushResult) and r.changed for r in results), results
    commits = {r.commit for r in results if isinstance(r, PushResult)}
    assert len(commits) == count
    assert pushes.read_text().count("push") == 1
    messages = commit_messages(bare_repo)
    assert sum("Promotion-UID: uid-" in m for m in messages) == count
    finder = _repo(bare_repo, cache_dir)
    for index, result in enumerate(results):
        assert isinstance(result, PushResult)
        assert finder.find_commit(_trailers(index)) == result.commit  # crash safety finds it


def test_a_bad_edit_or_a_refused_push_fails_alone(bare_repo: Path, cache_dir: Path) -> None:
    def broken(_read: Reader) -> dict[str, str]:
        raise PermanentError(Reason.INVALID_OVERLAY, "not YAML")

    def superseded() -> None:
        raise PermanentError(Reason.SUPERSEDED, "a newer Promotion")

    results = _run_queued(
        bare_repo,
        cache_dir,
        [
            (_edit(0), _message(0), None),
            (broken, _message(1), None),
            (_edit(2), _message(2), superseded),
            (_edit(3), _message(3), None),
        ],
    )
    assert isinstance(results[0], PushResult) and results[0].changed
    assert isinstance(results[1], PermanentError) and results[1].reason == Reason.INVALID_OVERLAY
    assert isinstance(results[2], PermanentError) and results[2].reason == Reason.SUPERSEDED
    assert isinstance(results[3], PushResult) and results[3].changed
    finder = _repo(bare_repo, cache_dir)
    assert finder.find_commit(_trailers(2)) is None  # its commit never left the clone
    assert finder.read_file("k8s/overlays/prod-3/kustomization.yaml") == "tag: 3\n"
    with pytest.raises(PermanentError):
        finder.read_file("k8s/overlays/prod-2/kustomization.yaml")


def test_a_moved_branch_replays_the_whole_batch_on_top(bare_repo: Path, cache_dir: Path) -> None:
    moved = threading.Event()

    def someone_else_pushes() -> None:
        if not moved.is_set():
            moved.set()
            commit_files(bare_repo, {"README.md": "a human was here\n"}, message="human")

    results = _run_queued(
        bare_repo,
        cache_dir,
        [(_edit(i), _message(i), someone_else_pushes if i == 0 else None) for i in range(3)],
    )
    assert all(isinstance(r, PushResult) and r.changed and r.attempts == 2 for r in results)
    messages = commit_messages(bare_repo)
    assert "human" in "".join(messages)
    assert sum("Promotion-UID: uid-" in m for m in messages) == 3
    assert branch_head(bare_repo) in {r.commit for r in results if isinstance(r, PushResult)}


def test_a_push_after_a_fetch_skips_the_next_fetch_only_while_nothing_failed(
    bare_repo: Path, cache_dir: Path
) -> None:
    repo = _repo(bare_repo, cache_dir)
    head = repo.sync()
    other = commit_files(bare_repo, {"README.md": "moved\n"}, message="ci")
    assert repo.sync(if_stale=True) == head  # known fresh: no fetch
    assert repo.sync() == other  # a plain sync always fetches
    bare_repo.rename(bare_repo.with_suffix(".moved"))
    with pytest.raises(PromotionError):
        repo.sync()
    bare_repo.with_suffix(".moved").rename(bare_repo)
    latest = commit_files(bare_repo, {"README.md": "moved again\n"}, message="ci")
    assert repo.sync(if_stale=True) == latest  # after a failure it fetches again


def test_nothing_to_change_is_checked_against_the_remote(bare_repo: Path, cache_dir: Path) -> None:
    repo = _repo(bare_repo, cache_dir)
    path = "k8s/overlays/prod-0/kustomization.yaml"
    assert repo.commit_and_push(_edit(0), _message(0), batch=True).changed  # clone is current
    commit_files(bare_repo, {path: "tag: someone-else\n"}, message="a human moved it")
    # locally the overlay already says "tag: 0"; the remote does not: it must be pushed
    again = repo.commit_and_push(_edit(0), _message(1), batch=True)
    assert again.changed
    assert _repo(bare_repo, cache_dir).find_commit(_trailers(1)) == again.commit


def test_a_known_current_clone_whose_remote_ref_moved_checks_it_out_before_editing(
    bare_repo: Path, cache_dir: Path
) -> None:
    # A lookup that fetched (find_commit, a deepen) moves origin/<branch> but not the
    # worktree; the next promotion skips its fetch, and must still edit the remote's tree.
    repo = _repo(bare_repo, cache_dir)
    repo.sync()
    other = commit_files(bare_repo, {"README.md": "ci was here\n"}, message="ci")
    assert repo.find_commit(_trailers(9)) is None  # fetches: the remote ref is at `other`
    assert repo.sync(if_stale=True) == other
    assert repo.read_file("README.md") == "ci was here\n"


def test_the_known_head_is_the_last_fetch_push_or_snapshot_of_this_process(
    bare_repo: Path, cache_dir: Path
) -> None:
    repo = _repo(bare_repo, cache_dir)
    assert repo.known_head() is None  # this process has not looked yet
    head = repo.sync()
    assert repo.known_head() == head
    pushed = repo.commit_and_push(_edit(0), _message(0), batch=True)
    assert pushed.commit is not None
    assert repo.known_head() == pushed.commit == branch_head(bare_repo)
    assert repo.snapshot() == pushed.commit
    assert repo.known_head() == pushed.commit  # the snapshot agreed
    other = commit_files(bare_repo, {"README.md": "ci was here\n"}, message="ci")
    assert repo.known_head() == pushed.commit  # nobody told this process yet
    assert repo.snapshot() == other  # a status refresh round, say
    assert repo.known_head() == other  # git moved origin/main with the snapshot's ref
    assert repo.sync(if_stale=True) == other  # checked out without a fetch
    assert repo.read_file("README.md") == "ci was here\n"
    bare_repo.rename(bare_repo.with_suffix(".moved"))
    with pytest.raises(PromotionError):
        repo.sync()
    bare_repo.with_suffix(".moved").rename(bare_repo)
    assert repo.known_head() is None  # after a failure this process knows nothing


def test_a_branch_reset_backwards_is_not_pushed_over_with_the_dropped_commits(
    bare_repo: Path, cache_dir: Path
) -> None:
    """The clone knows the branch at its own last push; then someone resets the branch
    back past it. A fast-forward from the reset head would bring the dropped commit back
    (and build on a tree the edit never read): the lease refuses, and the edit runs
    again on the branch as it is."""
    repo = _repo(bare_repo, cache_dir)
    start = repo.sync()
    dropped = repo.commit_and_push(_edit(0), _message(0), batch=True).commit
    assert dropped is not None and repo.known_head() == dropped
    subprocess.run(
        ["git", "-C", str(bare_repo), "update-ref", "refs/heads/main", start, dropped],
        check=True,
    )
    again = repo.commit_and_push(_edit(1), _message(1), batch=True)
    assert again.changed and again.attempts == 2
    history = subprocess.run(
        ["git", "-C", str(bare_repo), "rev-list", "refs/heads/main"],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert history[0] == again.commit
    assert history[1] == start  # built on the reset head
    assert dropped not in history


def test_a_head_start_fetch_moves_the_known_head_and_is_skipped_while_knowledge_is_new(
    bare_repo: Path, cache_dir: Path
) -> None:
    repo = _repo(bare_repo, cache_dir)
    head = repo.sync()
    other = commit_files(bare_repo, {"README.md": "ci was here\n"}, message="ci")
    ran: list[Callable[[], None]] = []
    assert not repo.prefetch(ran.append)  # fetched just now: no head start needed
    time.sleep(repository_module.PREFETCH_AFTER + 0.1)  # this process's knowledge ages
    assert repo.prefetch(ran.append)
    assert not repo.prefetch(ran.append)  # one per clone at a time
    assert repo.known_head() == head
    (fetch,) = ran
    fetch()
    assert repo.known_head() == other  # the push will build on what it found
    assert repo.prefetch(ran.append)  # done: the next one may start


# --- the batch's commits: one fast-import per push ---


def test_two_edits_of_one_file_go_in_two_pushes_the_later_reading_the_earlier(
    bare_repo: Path, cache_dir: Path
) -> None:
    pushes = _count_pushes(bare_repo)
    path = "k8s/overlays/prod-0/kustomization.yaml"
    seen: list[str] = []

    def append(line: str) -> Callable[[Reader], dict[str, str]]:
        def edit(read: Reader) -> dict[str, str]:
            try:
                text = read(path)
            except PermanentError:
                text = ""
            seen.append(text)
            return {path: text + line}

        return edit

    results = _run_queued(
        bare_repo,
        cache_dir,
        [(append("one\n"), _message(0), None), (append("two\n"), _message(1), None)],
    )
    assert all(isinstance(r, PushResult) and r.changed for r in results), results
    assert read_remote_file(bare_repo, path) == "one\ntwo\n"  # nothing lost
    assert pushes.read_text().count("push") == 2
    assert seen[-1] == "one\n"  # the later edit ran again, on what the earlier pushed


def test_a_batch_commit_stores_what_git_add_would_and_keeps_the_file_mode(
    bare_repo: Path, cache_dir: Path, tmp_path: Path
) -> None:
    script, crlf = "k8s/run.sh", "k8s/overlays/prod-1/kustomization.yaml"
    commit_files(
        bare_repo,
        {".gitattributes": "k8s/overlays/** text eol=crlf\n", crlf: "tag: 0\n"},
        message="attributes",
    )
    work = tmp_path / "work"  # an executable file, committed by hand
    subprocess.run(["git", "clone", "--quiet", str(bare_repo), str(work)], check=True)
    (work / script).write_text("#!/bin/sh\n")
    (work / script).chmod(0o755)
    ident = ["-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run(["git", "-C", str(work), "add", script], check=True)
    subprocess.run(["git", "-C", str(work), *ident, "commit", "-qm", "x"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True)

    repo = _repo(bare_repo, cache_dir)
    edit = {script: "#!/bin/sh\necho 2\n", crlf: "tag: 1\r\n"}  # as the checkout shows it
    assert repo.commit_and_push(lambda _read: edit, _message(0), batch=True).changed
    tree = subprocess.run(
        ["git", "-C", str(bare_repo), "ls-tree", "-r", "main"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "100755 blob" in next(line for line in tree.splitlines() if line.endswith(script))
    assert read_remote_file(bare_repo, crlf) == "tag: 1\n"  # normalised, as `git add` does
    assert read_remote_file(bare_repo, script) == "#!/bin/sh\necho 2\n"


@pytest.mark.parametrize(
    "message",
    [
        "subject\n\nbody\n",
        "\n\n  subject  \t\n\n\n\nbody line   \n# kept\n\n\n",
        "subject\r\n\r\nbody\r\n",
        "one line",
        "a\n \n\t\nb\n\n",
    ],
)
def test_a_batch_commit_message_is_what_git_commit_would_store(
    bare_repo: Path, cache_dir: Path, message: str
) -> None:
    repo = _repo(bare_repo, cache_dir)
    result = repo.commit_and_push(_edit(0), message, batch=True)
    stored = subprocess.run(
        ["git", "-C", str(bare_repo), "cat-file", "commit", str(result.commit)],
        check=True, capture_output=True, text=True,
    ).stdout.split("\n\n", 1)[1]  # fmt: skip
    cleaned = subprocess.run(
        ["git", "stripspace"], input=message, check=True, capture_output=True, text=True
    ).stdout
    assert stored == cleaned


def test_the_crash_safety_lookup_of_a_known_current_clone_takes_no_lock(
    bare_repo: Path, cache_dir: Path
) -> None:
    repo = _repo(bare_repo, cache_dir)
    pushed = repo.commit_and_push(_edit(0), _message(0), batch=True).commit
    answers: list[str | None] = []
    with repo.lock():  # a batch push holds it, for as long as it takes
        reader = threading.Thread(
            target=lambda: answers.append(
                _repo(bare_repo, cache_dir).find_commit(_trailers(0), refresh=False)
            )
        )
        reader.start()
        reader.join(30)
        assert answers == [pushed]  # answered while the lock was held
