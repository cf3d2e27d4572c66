"""The git runner's own process hygiene: deadlines kill the whole group, no key outlives a kill."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from promotion_operator.gitops.runner import SECRETS_PREFIX, GitRunner, remove_stale_secrets


def test_key_folders_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    dead = tmp_path / f"{SECRETS_PREFIX}{dead_pid.pid}-abc"
    alive = tmp_path / f"{SECRETS_PREFIX}{os.getpid()}-def"
    unrelated = tmp_path / "something-else"
    for folder in (dead, alive, unrelated):
        folder.mkdir()
        (folder / "id").write_text("key")

    removed = remove_stale_secrets(tmp_path)

    assert removed == [dead]
    assert not dead.exists()
    assert alive.exists()
    assert unrelated.exists()


def test_a_hanging_git_is_killed_with_its_children_at_the_deadline(tmp_path: Path) -> None:
    # an upload-pack that never answers and leaves a grandchild: both must go at the deadline
    helper = tmp_path / "hanging-upload-pack"
    marker = tmp_path / "grandchild.pid"
    helper.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {marker}\nwait\n")
    helper.chmod(0o755)
    remote = f"file://{tmp_path}/nowhere.git"
    runner = GitRunner(remote, None, allow_file=True, timeout=1)

    result = runner.run(
        ["ls-remote", f"--upload-pack={helper}", remote], cwd=tmp_path, network=True
    )

    assert not result.ok
    assert "timed out" in result.err
    grandchild = Path(f"/proc/{int(marker.read_text())}/stat")
    # gone, or a zombie waiting for init to reap it: either way no longer running
    assert not grandchild.exists() or grandchild.read_text().split(")")[1].split()[0] == "Z"
