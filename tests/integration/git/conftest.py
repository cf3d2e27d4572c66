"""Real git remotes for the GitRepository tests: sshd and smart HTTPS on loopback.

The servers start once per session and serve every bare repo under one root; each test
gets its own fresh bare repo and its own empty cache folder.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from promotion_operator.gitops import GitRepository, HTTPSAuth, SSHAuth
from promotion_sandbox.gitserver import HTTPGitServer, SSHGitServer, init_bare_repo
from support.gitcases import PASSWORD, SEED


@pytest.fixture(scope="session")
def repos_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding every bare repo the servers serve."""
    return tmp_path_factory.mktemp("git-repos")


@pytest.fixture(scope="session")
def ssh_server(
    tmp_path_factory: pytest.TempPathFactory, repos_root: Path
) -> Iterator[SSHGitServer]:
    """Debian's sshd on a free loopback port, accepting one generated client key."""
    with SSHGitServer(repos_root, tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def https_server(
    tmp_path_factory: pytest.TempPathFactory, repos_root: Path
) -> Iterator[HTTPGitServer]:
    """git http-backend over TLS (throw-away CA), Basic auth with PASSWORD."""
    workdir = tmp_path_factory.mktemp("git-https")
    with HTTPGitServer(repos_root, workdir, username="ci-robot", password=PASSWORD) as server:
        yield server


@pytest.fixture
def bare_repo(repos_root: Path) -> Path:
    """A fresh bare repo (branch main) holding SEED, under the servers' root."""
    path = Path(tempfile.mkdtemp(dir=repos_root, suffix=".git"))
    init_bare_repo(path, SEED)
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """An empty cache folder for persistent clones."""
    return tmp_path / "cache"


@pytest.fixture
def ssh_auth(ssh_server: SSHGitServer) -> SSHAuth:
    """The key sshd accepts plus the server's known_hosts line."""
    return SSHAuth(ssh_server.client_private_key, ssh_server.known_hosts)


@pytest.fixture
def https_auth() -> HTTPSAuth:
    return HTTPSAuth("ci-robot", PASSWORD)


@pytest.fixture
def ssh_repo(
    ssh_server: SSHGitServer, bare_repo: Path, cache_dir: Path, ssh_auth: SSHAuth
) -> GitRepository:
    """GitRepository over SSH for `bare_repo`, without the local-use flag."""
    return GitRepository(
        ssh_server.url_for(bare_repo.name), "main", cache_dir=cache_dir, auth=ssh_auth
    )


@pytest.fixture
def https_repo(
    https_server: HTTPGitServer, bare_repo: Path, cache_dir: Path, https_auth: HTTPSAuth
) -> GitRepository:
    """GitRepository over HTTPS for `bare_repo`, trusting the server's CA."""
    return GitRepository(
        https_server.url_for(bare_repo.name),
        "main",
        cache_dir=cache_dir,
        auth=https_auth,
        ca_bundle=https_server.ca_cert,
    )


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]
