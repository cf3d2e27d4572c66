"""GitRepository failures against real servers: typed, sorted, and free of credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from promotion_operator.domain.errors import PermanentError, PromotionError, Reason
from promotion_operator.domain.gitfailures import (
    GitAuthError,
    GitNotFoundError,
    GitUnreachableError,
)
from promotion_operator.gitops import GitRepository, HTTPSAuth, SSHAuth
from promotion_sandbox.gitserver import (
    HTTPGitServer,
    SSHGitServer,
    commit_files,
    commit_messages,
    generate_ssh_key,
)
from support.gitcases import OVERLAY, PASSWORD

pytestmark = pytest.mark.integration


def secret_fragments(*secrets: str) -> list[str]:
    """Every value that must never be shown: each secret and each long line of a key."""
    fragments = [s for s in secrets if s]
    for secret in secrets:
        fragments += [line for line in secret.splitlines() if len(line) >= 16]
    return [f for f in fragments if "PRIVATE KEY" not in f]  # PEM armour is not secret


def assert_clean(error: PromotionError, *secrets: str) -> None:
    for fragment in secret_fragments(*secrets):
        assert fragment not in str(error)
        assert fragment not in repr(error)
        assert fragment not in repr(error.args)


def expect(
    repo: GitRepository, reason: Reason, *, retryable: bool, secrets: tuple[str, ...] = ()
) -> PromotionError:
    with pytest.raises(PromotionError) as caught:
        repo.sync()
    error = caught.value
    assert error.reason is reason, error
    assert error.retryable is retryable
    assert error.__cause__ is None  # git's raw exception (argv, env) is not chained
    assert_clean(error, *secrets)
    return error


# --- SSH ---


def test_a_key_the_server_does_not_know_is_refused(
    ssh_server: SSHGitServer, bare_repo: Path, cache_dir: Path, tmp_path: Path
) -> None:
    wrong_key, _ = generate_ssh_key(tmp_path / "wrong")
    repo = GitRepository(
        ssh_server.url_for(bare_repo.name),
        "main",
        cache_dir=cache_dir,
        auth=SSHAuth(wrong_key, ssh_server.known_hosts),
    )
    error = expect(repo, Reason.GIT_AUTH_FAILED, retryable=False, secrets=(wrong_key,))
    assert isinstance(error, GitAuthError)
    assert "refused the private key" in error.message


@pytest.mark.parametrize(
    "known_hosts", ["", "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ"]
)
def test_an_unknown_host_key_is_refused_and_known_hosts_named(
    ssh_server: SSHGitServer, bare_repo: Path, cache_dir: Path, known_hosts: str
) -> None:
    key = ssh_server.client_private_key
    repo = GitRepository(
        ssh_server.url_for(bare_repo.name),
        "main",
        cache_dir=cache_dir,
        auth=SSHAuth(key, known_hosts),
    )
    error = expect(repo, Reason.GIT_AUTH_FAILED, retryable=False, secrets=(key,))
    assert "known_hosts" in error.message
    assert "host key" in error.message


def test_a_changed_host_key_is_refused(
    ssh_server: SSHGitServer, bare_repo: Path, cache_dir: Path, tmp_path: Path
) -> None:
    _, impostor = generate_ssh_key(tmp_path / "impostor")
    key_type, key_data = impostor.split()[:2]
    known_hosts = f"[127.0.0.1]:{ssh_server.port} {key_type} {key_data}\n"
    repo = GitRepository(
        ssh_server.url_for(bare_repo.name),
        "main",
        cache_dir=cache_dir,
        auth=SSHAuth(ssh_server.client_private_key, known_hosts),
    )
    error = expect(repo, Reason.GIT_AUTH_FAILED, retryable=False)
    assert "known_hosts" in error.message


def test_ssh_without_credentials_fails_closed(
    ssh_server: SSHGitServer, bare_repo: Path, cache_dir: Path
) -> None:
    repo = GitRepository(ssh_server.url_for(bare_repo.name), "main", cache_dir=cache_dir)
    expect(repo, Reason.GIT_AUTH_FAILED, retryable=False)


def test_a_garbled_private_key_is_reported_without_echoing_it(
    ssh_server: SSHGitServer, bare_repo: Path, cache_dir: Path
) -> None:
    garbled = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key-but-a-secret-anyway\n-----END"
    repo = GitRepository(
        ssh_server.url_for(bare_repo.name),
        "main",
        cache_dir=cache_dir,
        auth=SSHAuth(garbled, ssh_server.known_hosts),
    )
    expect(repo, Reason.GIT_AUTH_FAILED, retryable=False, secrets=(garbled,))


def test_the_key_file_is_gone_after_each_operation(
    ssh_server: SSHGitServer, bare_repo: Path, cache_dir: Path, ssh_auth: SSHAuth, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    repo = GitRepository(
        ssh_server.url_for(bare_repo.name),
        "main",
        cache_dir=cache_dir,
        auth=ssh_auth,
        secrets_dir=secrets,
    )
    repo.sync()
    assert list(secrets.iterdir()) == []


def test_a_missing_repository_over_ssh(
    ssh_server: SSHGitServer, cache_dir: Path, ssh_auth: SSHAuth
) -> None:
    repo = GitRepository(
        ssh_server.url_for("no-such-repo.git"), "main", cache_dir=cache_dir, auth=ssh_auth
    )
    error = expect(repo, Reason.GIT_NOT_FOUND, retryable=False)
    assert isinstance(error, GitNotFoundError)
    assert "repository does not exist" in error.message


def test_a_missing_branch_on_first_clone(
    ssh_server: SSHGitServer, bare_repo: Path, cache_dir: Path, ssh_auth: SSHAuth
) -> None:
    repo = GitRepository(
        ssh_server.url_for(bare_repo.name), "no-such-branch", cache_dir=cache_dir, auth=ssh_auth
    )
    error = expect(repo, Reason.GIT_NOT_FOUND, retryable=False)
    assert "branch does not exist" in error.message
    assert not any(cache_dir.glob("*.partial-*"))  # no half clone left behind


def test_a_branch_deleted_after_the_first_clone(ssh_repo: GitRepository, bare_repo: Path) -> None:
    ssh_repo.sync()
    commit_files(bare_repo, {"x": "1\n"}, branch="other")
    (bare_repo / "refs" / "heads" / "main").unlink()
    error = expect(ssh_repo, Reason.GIT_NOT_FOUND, retryable=False)
    assert "branch does not exist" in error.message


def test_a_closed_port_is_unreachable_and_retryable(
    closed_port: int, cache_dir: Path, ssh_auth: SSHAuth
) -> None:
    repo = GitRepository(
        f"ssh://git@127.0.0.1:{closed_port}/srv/repo.git",
        "main",
        cache_dir=cache_dir,
        auth=ssh_auth,
    )
    error = expect(repo, Reason.GIT_UNREACHABLE, retryable=True)
    assert isinstance(error, GitUnreachableError)


def test_a_silent_server_times_out_as_unreachable(
    silent_port: int, cache_dir: Path, ssh_auth: SSHAuth
) -> None:
    repo = GitRepository(
        f"ssh://git@127.0.0.1:{silent_port}/srv/repo.git",
        "main",
        cache_dir=cache_dir,
        auth=ssh_auth,
        timeout=2,
    )
    expect(repo, Reason.GIT_UNREACHABLE, retryable=True)


# --- HTTPS ---


def test_a_wrong_password_is_refused_without_showing_it(
    https_server: HTTPGitServer, bare_repo: Path, cache_dir: Path
) -> None:
    wrong = "wr0ng-Pa55word-visible?"
    repo = GitRepository(
        https_server.url_for(bare_repo.name),
        "main",
        cache_dir=cache_dir,
        auth=HTTPSAuth("ci-robot", wrong),
        ca_bundle=https_server.ca_cert,
    )
    error = expect(repo, Reason.GIT_AUTH_FAILED, retryable=False, secrets=(wrong, PASSWORD))
    assert "username/password" in error.message


def test_https_without_credentials_says_none_were_given(
    https_server: HTTPGitServer, bare_repo: Path, cache_dir: Path
) -> None:
    repo = GitRepository(
        https_server.url_for(bare_repo.name),
        "main",
        cache_dir=cache_dir,
        ca_bundle=https_server.ca_cert,
    )
    error = expect(repo, Reason.GIT_AUTH_FAILED, retryable=False)
    assert "none was given" in error.message


def test_an_untrusted_certificate_is_refused(
    https_server: HTTPGitServer,
    bare_repo: Path,
    cache_dir: Path,
    https_auth: HTTPSAuth,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Even an inherited GIT_SSL_NO_VERIFY must not switch verification off.
    monkeypatch.setenv("GIT_SSL_NO_VERIFY", "1")
    repo = GitRepository(
        https_server.url_for(bare_repo.name), "main", cache_dir=cache_dir, auth=https_auth
    )
    error = expect(repo, Reason.GIT_AUTH_FAILED, retryable=False, secrets=(PASSWORD,))
    assert "TLS certificate" in error.message


def test_a_missing_repository_over_https(
    https_server: HTTPGitServer, cache_dir: Path, https_auth: HTTPSAuth
) -> None:
    repo = GitRepository(
        https_server.url_for("no-such-repo.git"),
        "main",
        cache_dir=cache_dir,
        auth=https_auth,
        ca_bundle=https_server.ca_cert,
    )
    expect(repo, Reason.GIT_NOT_FOUND, retryable=False, secrets=(PASSWORD,))


def test_a_missing_branch_over_https(
    https_server: HTTPGitServer, bare_repo: Path, cache_dir: Path, https_auth: HTTPSAuth
) -> None:
    repo = GitRepository(
        https_server.url_for(bare_repo.name),
        "no-such-branch",
        cache_dir=cache_dir,
        auth=https_auth,
        ca_bundle=https_server.ca_cert,
    )
    expect(repo, Reason.GIT_NOT_FOUND, retryable=False, secrets=(PASSWORD,))


def test_https_unreachable(closed_port: int, cache_dir: Path, https_auth: HTTPSAuth) -> None:
    repo = GitRepository(
        f"https://127.0.0.1:{closed_port}/repo.git", "main", cache_dir=cache_dir, auth=https_auth
    )
    expect(repo, Reason.GIT_UNREACHABLE, retryable=True, secrets=(PASSWORD,))


def test_plain_http_needs_the_local_flag(tmp_path: Path, bare_repo: Path) -> None:
    with HTTPGitServer(bare_repo.parent, tmp_path / "http", password=PASSWORD, tls=False) as server:
        url = server.url_for(bare_repo.name)
        with pytest.raises(PermanentError) as caught:
            GitRepository(url, "main", cache_dir=tmp_path / "c", auth=HTTPSAuth("x", PASSWORD))
        assert caught.value.reason is Reason.INVALID_GIT_URL
        # The local-use flag also allows plain http, for loopback servers.
        local = GitRepository(
            url,
            "main",
            cache_dir=tmp_path / "c",
            auth=HTTPSAuth(server.username, PASSWORD),
            allow_file=True,
        )
        assert local.sync()


# --- secrets never leak ---


def test_credentials_are_not_in_the_clone_config_or_the_commit(
    https_repo: GitRepository, bare_repo: Path
) -> None:
    message = f"Promote\n\nReason: pasted by mistake {PASSWORD}\n\nPromotion-UID: u1\n"
    https_repo.commit_and_push(lambda _: {"a.txt": "a\n"}, message)
    newest = commit_messages(bare_repo)[0]
    assert PASSWORD not in newest
    assert "pasted by mistake ***" in newest
    git_dir = https_repo.worktree / ".git"
    for path in git_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_the_ssh_key_is_not_in_the_clone(ssh_repo: GitRepository, ssh_auth: SSHAuth) -> None:
    ssh_repo.commit_and_push(lambda _: {"a.txt": "a\n"}, "add a")
    body_line = ssh_auth.private_key.splitlines()[1]
    for path in ssh_repo.worktree.parent.rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert body_line.encode() not in path.read_bytes(), path


def test_reprs_hide_credentials(ssh_auth: SSHAuth, https_auth: HTTPSAuth) -> None:
    assert ssh_auth.private_key.splitlines()[1] not in repr(ssh_auth)
    assert PASSWORD not in repr(https_auth)
    assert "ci-robot" in repr(https_auth)


def test_multiline_passwords_are_refused(cache_dir: Path) -> None:
    with pytest.raises(PermanentError) as caught:
        GitRepository(
            "https://git.example.com/r.git",
            "main",
            cache_dir=cache_dir,
            auth=HTTPSAuth("u", "line1\nline2"),
        )
    assert caught.value.reason is Reason.SECRET_INVALID
    assert "line1" not in str(caught.value)


# --- paths ---


def test_a_symlink_out_of_the_clone_is_refused(ssh_repo: GitRepository, bare_repo: Path) -> None:
    commit_files(
        bare_repo,
        {},
        symlinks={"k8s/overlays/evil": "/etc", "k8s/overlays/inside": "prod"},
        message="links",
    )
    ssh_repo.sync()
    with pytest.raises(PermanentError) as caught:
        ssh_repo.read_file("k8s/overlays/evil/passwd")
    assert caught.value.reason is Reason.INVALID_OVERLAY
    assert "outside the repository" in caught.value.message
    # A link that stays inside is fine.
    assert "newTag" in ssh_repo.read_file("k8s/overlays/inside/kustomization.yaml")


def test_edits_cannot_write_through_a_symlink_out_of_the_clone(
    ssh_repo: GitRepository, bare_repo: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    commit_files(bare_repo, {}, symlinks={"escape": str(outside)}, message="link")
    with pytest.raises(PermanentError) as caught:
        ssh_repo.commit_and_push(lambda _: {"escape/pwned.txt": "x\n"}, "bad")
    assert caught.value.reason is Reason.INVALID_OVERLAY
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", ".git/hooks/post-commit"])
def test_edits_cannot_name_paths_outside_the_clone(ssh_repo: GitRepository, path: str) -> None:
    with pytest.raises(PermanentError) as caught:
        ssh_repo.commit_and_push(lambda _: {path: "x\n"}, "bad")
    assert caught.value.reason is Reason.INVALID_OVERLAY


def test_a_missing_file_is_an_overlay_error(ssh_repo: GitRepository) -> None:
    ssh_repo.sync()
    with pytest.raises(PermanentError) as caught:
        ssh_repo.read_file("k8s/overlays/staging/kustomization.yaml")
    assert caught.value.reason is Reason.INVALID_OVERLAY
    assert ssh_repo.read_file(OVERLAY)
