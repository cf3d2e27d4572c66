"""The shared SSH connection (ControlMaster) never carries another Secret's credentials.

A tenant whose Environment names the same git host as another tenant's must not ride on
the other's open, authenticated connection: a wrong key or a wrong known_hosts still
fails while the good connection is open.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from promotion_operator.domain.errors import PromotionError, Reason
from promotion_operator.gitops import GitRepository, SSHAuth
from promotion_sandbox.gitserver import SSHGitServer, commit_files, generate_ssh_key

pytestmark = pytest.mark.integration


def _repo(server: SSHGitServer, bare_repo: Path, cache: Path, auth: SSHAuth) -> GitRepository:
    return GitRepository(server.url_for(bare_repo.name), "main", cache_dir=cache, auth=auth)


def test_an_open_connection_is_reused_by_the_same_credentials_only(
    ssh_server: SSHGitServer, bare_repo: Path, tmp_path: Path
) -> None:
    good = SSHAuth(ssh_server.client_private_key, ssh_server.known_hosts)
    first = _repo(ssh_server, bare_repo, tmp_path / "a", good)
    first.sync()  # opens the shared connection
    sockets = list(Path("/tmp").glob("promotion-ssh-*-mux/*"))
    assert any(s.is_socket() for s in sockets)
    assert _repo(ssh_server, bare_repo, tmp_path / "b", good).sync()  # same credentials

    wrong_key, _ = generate_ssh_key(tmp_path / "wrong")
    other_tenant = _repo(
        ssh_server, bare_repo, tmp_path / "c", SSHAuth(wrong_key, ssh_server.known_hosts)
    )
    with pytest.raises(PromotionError) as refused:
        other_tenant.sync()
    assert refused.value.reason is Reason.GIT_AUTH_FAILED

    _, impostor = generate_ssh_key(tmp_path / "impostor")
    key_type, key_data = impostor.split()[:2]
    wrong_hosts = f"[127.0.0.1]:{ssh_server.port} {key_type} {key_data}\n"
    unverified = _repo(
        ssh_server,
        bare_repo,
        tmp_path / "d",
        SSHAuth(ssh_server.client_private_key, wrong_hosts),
    )
    with pytest.raises(PromotionError) as unknown_host:
        unverified.sync()
    assert unknown_host.value.reason is Reason.GIT_AUTH_FAILED
    first.sync()  # the good connection still serves its own credentials


def _sockets() -> dict[Path, int]:
    """The shared connections' sockets, with their inodes (a reopened one has another)."""
    found = Path("/tmp").glob("promotion-ssh-*-mux/*")
    return {path: path.stat().st_ino for path in found if path.is_socket()}


def test_a_push_refused_because_the_branch_moved_keeps_the_connection(
    ssh_server: SSHGitServer, bare_repo: Path, tmp_path: Path
) -> None:
    """A rejected push is the server's answer over a working connection: its retry (a
    fetch and a push) rides on the same one instead of a new SSH handshake."""
    good = SSHAuth(ssh_server.client_private_key, ssh_server.known_hosts)
    repo = _repo(ssh_server, bare_repo, tmp_path / "a", good)
    repo.sync()  # known current: the next push is optimistic
    opened = _sockets()
    assert opened
    commit_files(bare_repo, {"README.md": "someone else\n"}, message="ci")

    pushed = repo.commit_and_push(lambda _read: {"app.txt": "ours\n"}, "ours", batch=True)

    assert pushed.changed and pushed.attempts == 2  # refused once, then on the new head
    assert _sockets() == opened  # none closed and opened again
