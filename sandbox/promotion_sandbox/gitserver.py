"""Real git remotes on loopback: bare repos, served over SSH (openssh sshd) and smart HTTP(S).

`SSHGitServer` runs Debian's `sshd` with its own host key, config and authorized_keys in a
work folder, so the operator's SSH path (private key, known_hosts, StrictHostKeyChecking)
is exercised for real. `HTTPGitServer` puts `git http-backend` (the CGI program git ships)
behind a small threaded HTTP server with Basic auth, over TLS by default with a certificate
from a throw-away CA (`ca_cert`), so https:// remotes work without the local-use flag.
"""

from __future__ import annotations

import base64
import getpass
import hmac
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from promotion_sandbox.pki import CertificateAuthority
from promotion_sandbox.procs import Service, free_port, terminate, wait_until

_AUTHOR = ("Sandbox Committer", "sandbox@gitops.dev")
_NO_LINKS: Mapping[str, str] = MappingProxyType({})
_READY_TIMEOUT = 20.0
_START_ATTEMPTS = 3  # a free port can be taken between choosing it and sshd's bind


def _git_env() -> dict[str, str]:
    """Environment for sandbox git commands: no user or system config leaks in."""
    name, email = _AUTHOR
    return {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        "GIT_TERMINAL_PROMPT": "0",
    }


def git(
    *args: str, cwd: Path | None = None, strip: bool = True, input_bytes: bytes | None = None
) -> str:
    """Run git without user or system config as the sandbox committer; return stdout."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=_git_env(), input=input_bytes, capture_output=True, check=False
    )
    stdout, stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {stderr.strip()}")
    return stdout.strip() if strip else stdout


def init_bare_repo(
    path: Path, files: Mapping[str, str], *, branch: str = "main", message: str = "initial"
) -> None:
    """Create a bare repository at `path` whose `branch` holds one commit with `files`."""
    path.mkdir(parents=True, exist_ok=True)
    git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(path))
    commit_files(path, files, branch=branch, message=message)


def commit_files(
    repo: Path,
    files: Mapping[str, str],
    *,
    branch: str = "main",
    message: str = "update",
    symlinks: Mapping[str, str] = _NO_LINKS,
    delete: tuple[str, ...] = (),
) -> str:
    """Commit on top of `branch` of the bare repo at `repo` as "someone else"; return the sha.

    `files` maps paths to full text, `symlinks` maps paths to link targets, `delete` lists
    paths to remove. Used to seed repos and to simulate a concurrent human or CI commit.
    """
    with tempfile.TemporaryDirectory(prefix="sandbox-git-") as scratch:
        work = Path(scratch) / "work"
        git("init", "--quiet", f"--initial-branch={branch}", str(work))
        git("remote", "add", "origin", str(repo), cwd=work)
        has_branch = git("ls-remote", "--heads", "origin", branch, cwd=work) != ""
        if has_branch:
            git("fetch", "--quiet", "origin", branch, cwd=work)
            git("reset", "--quiet", "--hard", "FETCH_HEAD", cwd=work)
        for relative, text in files.items():
            target = work / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode("utf-8"))
        for relative, link in symlinks.items():
            target = work / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(link)
        for relative in delete:
            (work / relative).unlink()
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work)


# -- reading a bare repository: the one reader the tests, the demo and the bench use ---------


def branch_head(repo: Path, branch: str = "main") -> str:
    """The sha `branch` points at in the bare repo."""
    return git("--git-dir", str(repo), "rev-parse", f"refs/heads/{branch}")


def commit_messages(repo: Path, branch: str = "main", *, since: str | None = None) -> list[str]:
    """Full messages of the commits on `branch` (only those after `since`), newest first."""
    revision = f"refs/heads/{branch}" if since is None else f"{since}..refs/heads/{branch}"
    out = git("--git-dir", str(repo), "log", "-z", "--format=%B", revision)
    return [message.strip() for message in out.split("\x00") if message.strip()]


def last_commit(repo: Path, branch: str = "main") -> str:
    """The newest commit on `branch`: short hash and author, then its message."""
    return git("--git-dir", str(repo), "log", "-1", "--format=%h %an%n%B", f"refs/heads/{branch}")


def read_remote_file(repo: Path, relative: str, branch: str = "main") -> str:
    """A file's text as committed on `branch` of the bare repo."""
    return git("--git-dir", str(repo), "show", f"refs/heads/{branch}:{relative}", strip=False)


def commit_count(repo: Path, branch: str = "main") -> int:
    """How many commits `branch` holds."""
    return int(git("--git-dir", str(repo), "rev-list", "--count", f"refs/heads/{branch}"))


def tracked_files(repo: Path, branch: str = "main") -> list[str]:
    """Every file path in `branch`'s tree."""
    return git(
        "--git-dir", str(repo), "ls-tree", "-r", "--name-only", f"refs/heads/{branch}"
    ).split()


def pack_mib(repo: Path) -> float:
    """Size of the bare repo's packs, MiB."""
    return sum(p.stat().st_size for p in (repo / "objects" / "pack").glob("*.pack")) / 2**20


def generate_ssh_key(path: Path, *, comment: str = "promotion-sandbox") -> tuple[str, str]:
    """Create an ed25519 key pair at `path` (and `path`.pub); return (private, public) text."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.read_text(), path.with_name(path.name + ".pub").read_text().strip()


def _find_sshd() -> str:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else "")
    if not found:
        raise RuntimeError("sshd not found: install the Debian package openssh-server")
    return found


class SSHGitServer(Service):
    """`sshd` on a free 127.0.0.1 port serving the bare repos under `root` to one test key.

    Logs in as the current user (root in CI): sshd can only switch to other users when
    it runs as root, and git over SSH only needs a shell that runs git-upload-pack.
    """

    def __init__(self, root: Path, workdir: Path) -> None:
        self.root = Path(root)
        self.workdir = Path(workdir)
        self.user = getpass.getuser()
        self.port = 0
        self.log_path = self.workdir / "sshd.log"
        self.startup_seconds = 0.0
        self.client_private_key = ""
        self.client_public_key = ""
        self._host_public_key = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"SSHGitServer(port={self.port}, root={str(self.root)!r})"

    def url_for(self, repo_relpath: str) -> str:
        """`ssh://<user>@127.0.0.1:<port>/<absolute path of the repo>`."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}{(self.root / repo_relpath).resolve()}"

    @property
    def known_hosts(self) -> str:
        """The known_hosts line for this server: `[127.0.0.1]:<port> ssh-ed25519 AAAA...`."""
        key_type, key = self._host_public_key.split()[:2]
        return f"[127.0.0.1]:{self.port} {key_type} {key}\n"

    def start(self) -> None:
        """Generate keys and config, start sshd and wait until it sends its banner."""
        if self._process is not None:
            return
        began = time.monotonic()
        sshd = _find_sshd()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        self.root.mkdir(parents=True, exist_ok=True)
        host_key, client_key = self.workdir / "ssh_host_ed25519_key", self.workdir / "client_key"
        for key, comment in ((host_key, "sandbox-host"), (client_key, "sandbox-client")):
            if not key.exists():  # a restarted server keeps its identity and its client
                generate_ssh_key(key, comment=comment)
        self._host_public_key = Path(f"{host_key}.pub").read_text().strip()
        self.client_private_key = client_key.read_text()
        self.client_public_key = Path(f"{client_key}.pub").read_text().strip()
        # `restrict`: the key may run git's commands but gets no pty or forwarding.
        (self.workdir / "authorized_keys").write_text(f"restrict {self.client_public_key}\n")
        if os.geteuid() == 0:
            # Debian's sshd insists on its privilege-separation folder when run as root.
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        try:
            for attempt in range(_START_ATTEMPTS):
                self.port = free_port()
                if self._launch(sshd, last=attempt == _START_ATTEMPTS - 1):
                    break
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop sshd; keys and repos stay in their folders."""
        process, self._process = self._process, None
        terminate(process)

    def _config(self) -> str:
        return "\n".join(
            [
                f"Port {self.port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {self.workdir / 'ssh_host_ed25519_key'}",
                "PidFile none",
                f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
                "StrictModes no",  # the work folder lives under /tmp
                "UsePAM no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {self.user}",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "PrintMotd no",
                "MaxStartups 64",
                "LogLevel VERBOSE",
                # bash sources ~/.bashrc for ssh commands; a heavy one (pyenv init...) costs
                # ~0.4 s per git operation. A home without rc files keeps sessions fast.
                f"SetEnv HOME={self.workdir}",
                # The post-quantum default (sntrup761) adds ~0.1 s per connection on a small
                # CI machine; the classic curve is plenty for a loopback test server.
                "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org",
                "",
            ]
        )

    def _launch(self, sshd: str, *, last: bool) -> bool:
        """Start sshd on self.port; False when the port was taken meanwhile (try another)."""
        config = self.workdir / "sshd_config"
        config.write_text(self._config())
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._process = process

        def ready() -> bool:
            if process.poll() is not None:
                return True  # exited: stop waiting, reported below
            return _banner(self.port).startswith(b"SSH-")

        wait_until(ready, timeout=_READY_TIMEOUT, what="sshd", log=self.log_path)
        if process.poll() is None:
            return True
        self._process = None
        if last:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"sshd exited with status {process.returncode}:\n{tail}")
        return False


def _banner(port: int) -> bytes:
    """The first bytes a server sends on connect, or b'' if nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(16)
    except OSError:
        return b""


class HTTPGitServer(Service):
    """Smart HTTP git (`git http-backend`) for the bare repos under `root`, with Basic auth.

    Push is enabled for the authenticated user. With `tls=True` (the default) it serves
    https with a certificate for 127.0.0.1 signed by a throw-away CA written to `ca_cert`;
    point git at it with `http.sslCAInfo` (GitRepository's `ca_bundle`).
    """

    def __init__(
        self,
        root: Path,
        workdir: Path,
        *,
        username: str = "promoter",
        password: str | None = None,
        tls: bool = True,
    ) -> None:
        self.root = Path(root)
        self.workdir = Path(workdir)
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(24)
        self.tls = tls
        self.ca_cert: Path | None = None
        self.requests = 0
        self._count_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"HTTPGitServer(port={self.port}, tls={self.tls})"

    @property
    def port(self) -> int:
        """The listening port (0 before start)."""
        return int(self._server.server_address[1]) if self._server else 0

    def url_for(self, repo_relpath: str) -> str:
        """`https://127.0.0.1:<port>/<repo>` (`http://` when tls=False)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/{repo_relpath}"

    def start(self) -> None:
        """Start serving in a background thread."""
        if self._server is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _backend_handler(self))
        server.daemon_threads = True
        if self.tls:
            ca = CertificateAuthority("promotion-sandbox-git-ca")
            self.ca_cert = self.workdir / "git-ca.crt"
            self.ca_cert.write_bytes(ca.cert_pem)
            cert, key = self.workdir / "git-server.crt", self.workdir / "git-server.key"
            ca.issue("git", hosts=("127.0.0.1", "localhost")).write(cert, key)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert), str(key))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="sandbox-git-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header carries this server's username and password."""
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            username, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(username.encode(), self.username.encode()) and (
            hmac.compare_digest(password.encode(), self.password.encode())
        )

    def count(self) -> None:
        with self._count_lock:
            self.requests += 1


def _backend_handler(server: HTTPGitServer) -> type[BaseHTTPRequestHandler]:
    class GitBackendHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            server.count()
            if not server.authorized(self.headers.get("Authorization")):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="promotion-sandbox-git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            url = urlsplit(self.path)
            body = self._read_body()
            env = {
                **_git_env(),
                "GIT_PROJECT_ROOT": str(server.root.resolve()),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": unquote(url.path),
                "QUERY_STRING": url.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                # http-backend enables receive-pack (push) for an authenticated REMOTE_USER.
                "REMOTE_USER": server.username,
                "REMOTE_ADDR": self.client_address[0],
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            result = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
            )
            self._relay_cgi(result.stdout)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()  # the empty line after the last chunk
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _relay_cgi(self, output: bytes) -> None:
            """Turn CGI output (headers, blank line, body) into an HTTP response."""
            head, separator, payload = output.partition(b"\r\n\r\n")
            if not separator:
                head, _, payload = output.partition(b"\n\n")
            status = 200
            headers: list[tuple[str, str]] = []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name.strip(), value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read results, not access logs."""

    return GitBackendHandler
