"""The one narrow git class: a persistent clone per (url, branch) that syncs, commits and pushes.

Every git process runs hermetically: no system or global git config, no ssh config, no
credential helpers other than ours, no `ext::` transport, no prompts, a timeout on network
operations. Credentials live only in the child's environment or in a private temp dir for
the length of one network operation; they never reach a URL, a git config file, argv or an
error message. Failures come back as `PromotionError`s with a GIT_* reason, sorted into
permanent (fix the Secret or spec) and retryable (try again later).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import git

from promotion_operator.domain.errors import (
    PermanentError,
    PromotionError,
    Reason,
    RetryableError,
)
from promotion_operator.domain.gitrules import (
    confine_path,
    has_trailers,
    redact,
    validate_branch,
    validate_git_url,
)

DEFAULT_AUTHOR = ("Promotion Operator", "promotion-operator@gitops.dev")

# Environment variables the HTTPS credential helper reads; git passes them through.
_USERNAME_ENV = "PROMOTION_GIT_USERNAME"
_PASSWORD_ENV = "PROMOTION_GIT_PASSWORD"  # noqa: S105 - the variable's name, not a password
# An inline credential helper: answers `get` from the environment and ignores store/erase,
# so nothing is ever written to disk and the secret never appears on a command line.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    f'printf \'username=%s\\npassword=%s\\n\' "${_USERNAME_ENV}" "${_PASSWORD_ENV}"; }}; f'
)
_MAX_DETAIL = 600
# Inherited git variables that are deployment configuration (a custom CA bundle), kept.
_KEEP_GIT_VARS = frozenset({"GIT_SSL_CAINFO", "GIT_SSL_CAPATH"})


# --- credentials -------------------------------------------------------------------------


@dataclass(frozen=True)
class SSHAuth:
    """An SSH private key and the known_hosts lines the server's host key must match."""

    private_key: str
    known_hosts: str

    def __repr__(self) -> str:
        return f"SSHAuth(private_key='***', known_hosts={self.known_hosts!r})"


@dataclass(frozen=True)
class HTTPSAuth:
    """A username and password (or token) for HTTP Basic authentication."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"HTTPSAuth(username={self.username!r}, password='***')"


GitAuth = SSHAuth | HTTPSAuth | None


# --- typed errors ------------------------------------------------------------------------


class GitAuthError(PermanentError):
    """The server refused our credentials, or we refused its identity (host key, TLS)."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.GIT_AUTH_FAILED, message)


class GitNotFoundError(PermanentError):
    """The repository or the branch does not exist (or is invisible to these credentials)."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.GIT_NOT_FOUND, message)


class GitUnreachableError(RetryableError):
    """The server could not be reached or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.GIT_UNREACHABLE, message)


class GitPushRejectedError(RetryableError):
    """The branch kept moving under us: every push attempt was a non-fast-forward."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.GIT_PUSH_REJECTED, message)


class GitOperationError(RetryableError):
    """Any other git failure; retried because we cannot tell it is permanent."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.GIT_ERROR, message)


@dataclass(frozen=True)
class PushResult:
    """Outcome of commit_and_push: the pushed commit (None when nothing changed)."""

    commit: str | None
    attempts: int
    changed: bool


# --- the process-wide lock registry ------------------------------------------------------


@dataclass
class _LockEntry:
    """One (url, branch): a re-entrant thread lock plus the file locks its holder owns."""

    thread_lock: threading.RLock = field(default_factory=threading.RLock)
    # lock file -> (open fd, nesting depth); only touched while thread_lock is held.
    file_locks: dict[Path, tuple[int, int]] = field(default_factory=dict)


_LOCKS: dict[tuple[str, str], _LockEntry] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_entry(url: str, branch: str) -> _LockEntry:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault((url, branch), _LockEntry())


# --- the repository ----------------------------------------------------------------------


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
    ) -> None:
        """Validate the remote and credentials; touches neither the network nor the disk.

        `allow_file` is the operator's local-use flag: it also allows `file://` and plain
        `http://` remotes (loopback servers in tests and demos). `ca_bundle` adds a CA
        certificate file trusted for https remotes (a private or self-signed server).
        `secrets_dir` is where the SSH key and known_hosts are written for the length of
        one network call (default: the system temporary folder).
        """
        validate_git_url(url, allow_file=allow_file)
        validate_branch(branch)
        if isinstance(auth, HTTPSAuth) and any(
            ch in value for value in (auth.username, auth.password) for ch in "\r\n\x00"
        ):
            raise PermanentError(
                Reason.SECRET_INVALID, "git username and password must be single lines"
            )
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url
        self.branch = branch
        self._auth = auth
        self._allow_file = allow_file
        self._author = author
        self._timeout = timeout
        self._ca_bundle = ca_bundle
        self._secrets_dir = secrets_dir
        self._cache_dir = cache_dir
        key = hashlib.sha256(f"{url}\n{branch}".encode()).hexdigest()[:24]
        self._clone_dir = cache_dir / key
        self._lock_path = cache_dir / f"{key}.lock"
        self._remote_ref = f"refs/remotes/origin/{branch}"
        self._secrets: tuple[str, ...] = ()
        if isinstance(auth, SSHAuth):
            self._secrets = (auth.private_key,)
        elif isinstance(auth, HTTPSAuth):
            self._secrets = (auth.password,)

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
        entry = _lock_entry(self.url, self.branch)
        with entry.thread_lock:
            fd, depth = entry.file_locks.get(self._lock_path, (-1, 0))
            if depth == 0:
                self._cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
            entry.file_locks[self._lock_path] = (fd, depth + 1)
            try:
                yield
            finally:
                fd, depth = entry.file_locks[self._lock_path]
                if depth == 1:
                    del entry.file_locks[self._lock_path]
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                else:
                    entry.file_locks[self._lock_path] = (fd, depth - 1)

    def sync(self) -> str:
        """Clone on first use, else fetch; hard-reset the worktree to origin/<branch>.

        Returns the head commit sha.
        """
        with self.lock():
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
        self, trailers: Mapping[str, str], *, max_count: int = 500, refresh: bool = True
    ) -> str | None:
        """Return the newest commit on origin/<branch> whose trailers include all of these.

        Looks at the newest `max_count` commits. With `refresh` (the default) it fetches
        first, so the answer reflects the remote rather than the last sync.
        """
        with self.lock():
            if refresh or not self._has_clone():
                self._fetch_or_clone()
            with git.Repo(self._clone_dir) as repo:
                for commit in repo.iter_commits(self._remote_ref, max_count=max_count):
                    message = commit.message
                    if isinstance(message, bytes):
                        message = message.decode("utf-8", "replace")
                    if has_trailers(message, trailers):
                        return str(commit.hexsha)
        return None

    def commit_and_push(
        self,
        edit: Callable[[Path], Mapping[str, str] | None],
        message: str,
        *,
        max_attempts: int = 5,
        before_push: Callable[[], None] | None = None,
        synced: bool = False,
    ) -> PushResult:
        """Apply `edit` to a fresh worktree, commit and push; re-apply on a moved branch.

        `edit(worktree)` returns {repository-relative path: new full text}, or None/{} when
        nothing needs to change. When the push is rejected as non-fast-forward, the clone is
        reset to the new remote head and `edit` runs again on that tree, so a concurrent
        commit is kept and our change lands on top of it. After `max_attempts` rejections:
        GitPushRejectedError (retryable). `before_push` runs between commit and push (the
        crash-safety tests stop the process there). `synced`: the caller holds the lock and
        has just synced, so the first attempt skips its own fetch.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        # Defence in depth: the caller builds the message, but a credential must never land
        # in the repository's history even if one slipped into a reason text.
        message = redact(message, self._secrets)
        with self.lock():
            for attempt in range(1, max_attempts + 1):
                if attempt > 1 or not synced:
                    self._sync_locked()
                changes = edit(self._clone_dir)
                if not changes:
                    return PushResult(None, attempt, False)
                for relative, text in changes.items():
                    path = self._confined(relative)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(text.encode("utf-8"))
                self._git("add", "--all", "--", ".")
                if self._git_ok("diff", "--cached", "--quiet"):
                    return PushResult(None, attempt, False)  # edit rewrote identical text
                # whitespace cleanup keeps lines starting with '#' (a reason may have them).
                self._git("commit", "--no-verify", "--quiet", "--cleanup=whitespace", "-m", message)
                commit = self._git("rev-parse", "HEAD")
                if before_push is not None:
                    before_push()
                if self._push():
                    return PushResult(commit, attempt, True)
        raise GitPushRejectedError(
            f"push to branch {self.branch} of {self._shown_url} was rejected as "
            f"non-fast-forward {max_attempts} times in a row: the branch keeps moving"
        )

    def file_at(self, revision: str, relative: str) -> str | None:
        """Return a file's text at a commit of the clone, or None if it has no such file."""
        confine_path(self._clone_dir, relative)
        with self.lock(), git.Repo(self._clone_dir) as repo:
            try:
                blob = repo.commit(revision).tree / relative
            except (KeyError, ValueError, git.BadName):
                return None
            data: bytes = blob.data_stream.read()
        return data.decode("utf-8", "replace")

    # -- internals --

    @property
    def _shown_url(self) -> str:
        return redact(self.url, self._secrets)

    def _has_clone(self) -> bool:
        return (self._clone_dir / ".git" / "HEAD").is_file()

    def _sync_locked(self) -> str:
        self._fetch_or_clone()
        # checkout -B also repairs a detached or renamed HEAD; clean drops files a failed
        # edit may have left, so every edit starts from exactly the remote tree.
        self._git(
            "checkout", "--quiet", "--force", "--no-track", "-B", self.branch, self._remote_ref
        )
        self._git("clean", "-ffdx", "--quiet")
        return self._git("rev-parse", "HEAD")

    def _fetch_or_clone(self) -> None:
        if self._has_clone():
            refspec = f"+refs/heads/{self.branch}:{self._remote_ref}"
            self._network("fetch", "--quiet", "--prune", "--no-tags", "origin", refspec)
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
            self._network(
                "clone",
                "--quiet",
                "--no-tags",
                "--single-branch",
                f"--branch={self.branch}",
                "--",
                self.url,
                str(scratch),
                cwd=self._cache_dir,
            )
            scratch.rename(self._clone_dir)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)

    def _push(self) -> bool:
        """Push HEAD to the branch: True when accepted, False on a non-fast-forward."""
        status, out, err = self._execute(
            ["push", "--porcelain", "--", "origin", f"HEAD:refs/heads/{self.branch}"],
            cwd=self._clone_dir,
            network=True,
        )
        if status == 0:
            return True
        rejected = re.search(r"\[rejected\]|non-fast-forward|fetch first", out + err)
        if rejected and "[remote rejected]" not in out + err:
            return False
        raise self._error("push to", out, err)

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

    def _git(self, *args: str) -> str:
        """Run a local git command in the clone; return stdout."""
        status, out, err = self._execute(list(args), cwd=self._clone_dir, network=False)
        if status != 0:
            raise self._error(f"git {args[0]} in the clone of", out, err)
        return out

    def _git_ok(self, *args: str) -> bool:
        status, _, _ = self._execute(list(args), cwd=self._clone_dir, network=False)
        return status == 0

    def _network(self, *args: str, cwd: Path | None = None) -> None:
        status, out, err = self._execute(list(args), cwd=cwd or self._clone_dir, network=True)
        if status != 0:
            raise self._error(f"git {args[0]} from", out, err)

    def _execute(self, args: list[str], *, cwd: Path, network: bool) -> tuple[int, str, str]:
        """Run git with the hermetic options; return (status, stdout, stderr)."""
        runner = git.Git(str(cwd))
        with self._environment(network=network) as env:
            # GitPython always starts from os.environ, and git obeys inherited variables
            # such as GIT_SSL_NO_VERIFY, GIT_DIR or GIT_CONFIG_PARAMETERS; `env --unset`
            # drops them so the operator's own environment cannot weaken or redirect git.
            inherited = sorted(
                name
                for name in os.environ
                if name.startswith("GIT_") and name not in env and name not in _KEEP_GIT_VARS
            )
            scrub = ["env", *(f"--unset={name}" for name in inherited)] if inherited else []
            command = [*scrub, "git", *self._config_args(), *args]
            status, out, err = runner.execute(
                command,
                env=env,
                with_extended_output=True,
                with_exceptions=False,
                kill_after_timeout=self._timeout if network else None,
            )
        err = str(err)
        if network and "did not complete in" in err and err.startswith("Timeout:"):
            # GitPython killed it; its text repeats the whole command line, ours is enough.
            err = f"no answer within {self._timeout:g} s (timed out)"
        return int(status), str(out), err

    def _config_args(self) -> list[str]:
        options = [
            "protocol.ext.allow=never",
            "credential.helper=",  # drop any helper; only ours below may answer
            "core.hooksPath=/dev/null",
            "core.askPass=",
            "gc.autoDetach=false",  # no background gc outliving our lock
            "commit.gpgSign=false",
            "http.sslVerify=true",
            # abort transfers slower than 1 KB/s for `timeout` seconds
            "http.lowSpeedLimit=1024",
            f"http.lowSpeedTime={max(1, int(self._timeout))}",
        ]
        if isinstance(self._auth, HTTPSAuth):
            options.append(f"credential.helper={_CREDENTIAL_HELPER}")
        if self._ca_bundle is not None:
            options.append(f"http.sslCAInfo={self._ca_bundle}")
        return [arg for option in options for arg in ("-c", option)]

    @contextlib.contextmanager
    def _environment(self, *, network: bool) -> Iterator[dict[str, str]]:
        """The child environment; for network calls, credentials exist only inside this block."""
        name, email = self._author
        env = {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",  # empty stops git from falling back to SSH_ASKPASS
            "SSH_ASKPASS": "",
            "GIT_ALLOW_PROTOCOL": "https:ssh:file:http" if self._allow_file else "https:ssh",
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            # Without SSHAuth there is no known_hosts, so an ssh:// remote fails closed.
            "GIT_SSH_COMMAND": self._ssh_command(None, Path(os.devnull)),
            _USERNAME_ENV: "",
            _PASSWORD_ENV: "",
        }
        if self._ca_bundle is not None:
            env["GIT_SSL_CAINFO"] = str(self._ca_bundle)  # the variable beats http.sslCAInfo
        if not network:
            yield env
            return
        if isinstance(self._auth, HTTPSAuth):
            env[_USERNAME_ENV] = self._auth.username
            env[_PASSWORD_ENV] = self._auth.password
            yield env
        elif isinstance(self._auth, SSHAuth):
            with tempfile.TemporaryDirectory(  # mode 0700
                prefix="promotion-ssh-", dir=self._secrets_dir
            ) as private:
                key_file = Path(private) / "id"
                hosts_file = Path(private) / "known_hosts"
                _write_private(key_file, _normalise_key(self._auth.private_key))
                _write_private(hosts_file, self._auth.known_hosts.strip() + "\n")
                env["GIT_SSH_COMMAND"] = self._ssh_command(key_file, hosts_file)
                yield env
        else:
            yield env

    def _ssh_command(self, key_file: Path | None, known_hosts: Path) -> str:
        args = [
            "ssh",
            "-F", os.devnull,  # ignore ~/.ssh/config and /etc/ssh/ssh_config
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", f"GlobalKnownHostsFile={os.devnull}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "UpdateHostKeys=no",
            "-o", "BatchMode=yes",
            "-o", "PasswordAuthentication=no",
            "-o", f"ConnectTimeout={max(1, int(self._timeout))}",
            "-o", "ServerAliveInterval=15",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        if key_file is not None:
            args[1:1] = ["-i", str(key_file)]
        return shlex.join(args)

    def _error(self, operation: str, out: str, err: str) -> PromotionError:
        """Sort a failed git command into a typed, redacted error."""
        detail = _detail(f"{err}\n{out}", self._secrets)
        kind, explanation = classify_git_failure(err + "\n" + out)
        message = f"{explanation} ({operation} {self._shown_url}, branch {self.branch})"
        if detail:
            message += f": {detail}"
        return kind(redact(message, self._secrets))


def classify_git_failure(output: str) -> tuple[Callable[[str], PromotionError], str]:
    """Map git/ssh/curl output to (error type, what it means for the user)."""
    text = output.lower()
    auth_rules: list[tuple[str, str]] = [
        (
            r"host key verification failed|no \S+ host key is known|"
            r"remote host identification has changed",
            "the SSH server's host key is not in known_hosts (or does not match it): "
            "add the server's known_hosts line to the Secret",
        ),
        (
            r"load key|invalid format|error in libcrypto",
            "the SSH private key in the Secret could not be loaded",
        ),
        (
            r"permission denied \(publickey|permission denied",
            "the SSH server refused the private key: add its public key to the repository",
        ),
        (
            r"authentication failed|returned error: 40[13]|invalid username or password",
            "the server rejected the username/password (token) from the Secret",
        ),
        (
            r"could not read (username|password)",
            "the server asks for a username/password (token) and none was given",
        ),
        (
            r"ssl certificate problem|certificate verify failed|"
            r"server certificate verification failed|unable to get local issuer",
            "the server's TLS certificate is not trusted",
        ),
    ]
    for pattern, explanation in auth_rules:
        if re.search(pattern, text):
            return GitAuthError, explanation
    if re.search(r"remote branch .* not found|couldn't find remote ref", text):
        return GitNotFoundError, "the branch does not exist in the repository"
    if re.search(
        r"does not appear to be a git repository|repository .*not found|"
        r"returned error: 404|no such repository",
        text,
    ):
        return (
            GitNotFoundError,
            "the repository does not exist (or these credentials cannot see it)",
        )
    if re.search(
        r"could not resolve|connection refused|timed out|no route to host|"
        r"network is unreachable|failed to connect|connection reset|connection closed|"
        r"did not complete in|operation too slow|kex_exchange_identification|"
        r"returned error: 5\d\d|broken pipe",
        text,
    ):
        return GitUnreachableError, "the git server could not be reached"
    return GitOperationError, "git failed"


# ssh's host-key banner and hints name temporary files; the classified message says it all
_BOILERPLATE = (
    "Please make sure",
    "and the repository exists",
    "@",
    "IT IS POSSIBLE",
    "Someone could be",
    "It is also possible",
    "The fingerprint for",
    "Please contact",
    "Add correct host key",
    "Offending",
    "Host key for",
)


def _detail(text: str, secrets: tuple[str, ...]) -> str:
    """The informative part of git's output: no boilerplate, one line, bounded length.

    Redacts before truncating, so a cut can never leave half a secret behind.
    """
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith(_BOILERPLATE)
    ]
    joined = redact(" | ".join(lines), secrets)
    return joined if len(joined) <= _MAX_DETAIL else joined[: _MAX_DETAIL - 3] + "..."


def _normalise_key(key: str) -> str:
    """OpenSSH refuses keys with CRLF line ends or without a final newline."""
    return key.replace("\r\n", "\n").strip() + "\n"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
