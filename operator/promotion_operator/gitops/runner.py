"""The hermetic git process: our options only, credentials for one call, a hard deadline.

Every git process runs with no system or global git config (nor a global attributes
file), no ssh config, no credential helper but ours, no `ext::` transport, no prompts
and no HTTP redirects. Credentials live
only in the child's environment or in a private temporary folder for the length of one
network call; they never reach a URL, a git config file or argv. A call that outlives its
deadline is killed with its whole process group (git, ssh, remote helpers), with nothing
but the standard library: the image has no `ps` or `pgrep` to lean on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from promotion_operator.gitops.credentials import GitAuth, HTTPSAuth, SSHAuth
from promotion_operator.metrics import CALL_ERRORS, timed_call

DEFAULT_AUTHOR = ("Promotion Operator", "promotion-operator@gitops.dev")

# Environment variables the HTTPS credential helper reads; git passes them through.
_USERNAME_ENV = "PROMOTION_GIT_USERNAME"
_PASSWORD_ENV = "PROMOTION_GIT_PASSWORD"  # noqa: S105 - the variable's name, not a password
_HOST_ENV = "PROMOTION_GIT_HOST"
_PROTOCOL_ENV = "PROMOTION_GIT_PROTOCOL"
# An inline credential helper: answers `get` from the environment, and only for the
# remote's own protocol and host, so a server that sends git elsewhere (a redirect, a
# submodule URL) never receives the token. It ignores store/erase, so nothing is written.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; h=; p=; '
    "while IFS= read -r l; do case $l in host=*) h=${l#host=};; protocol=*) p=${l#protocol=};; "
    "esac; done; "
    f'test -n "$h" && test "$h" = "${_HOST_ENV}" && test "$p" = "${_PROTOCOL_ENV}" || exit 0; '
    f'printf \'username=%s\\npassword=%s\\n\' "${_USERNAME_ENV}" "${_PASSWORD_ENV}"; }}; f'
)
# Inherited git variables that are deployment configuration (a custom CA bundle), kept.
_KEEP_GIT_VARS = frozenset({"GIT_SSL_CAINFO", "GIT_SSL_CAPATH"})
# The SSH key lives in `<tmp>/promotion-ssh-<pid>-*` for one network call.
SECRETS_PREFIX = "promotion-ssh-"
# One SSH connection per (credentials, host) is kept open between git calls for this
# long (OpenSSH ControlMaster/ControlPersist), in `<tmp>/promotion-ssh-<pid>-mux/`: over
# a WAN a fresh connection costs several round trips before git says a word, and the
# refresh's fetch every 30 s keeps it open.
SSH_PERSIST_SECONDS = 300
# A push's ref update the server refused for where the branch is (not a transport error).
_REFUSED_UPDATE = re.compile(r"\[rejected\]|non-fast-forward|fetch first|stale info")
# Local git (checkout, commit, log) on a big repository is slow, never endless.
LOCAL_TIMEOUT = 300.0


@dataclass(frozen=True)
class Result:
    """What one git run returned."""

    status: int
    raw: bytes  # stdout as git wrote it
    err: str

    @property
    def out(self) -> str:
        """Stdout as text."""
        return self.raw.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """Whether git exited 0."""
        return self.status == 0

    @property
    def output(self) -> str:
        """Both streams, for classifying a failure."""
        return f"{self.err}\n{self.out}"


class GitRunner:
    """Runs git hermetically for one remote with one set of credentials."""

    def __init__(
        self,
        url: str,
        auth: GitAuth,
        *,
        allow_file: bool,
        timeout: float,
        author: tuple[str, str] = DEFAULT_AUTHOR,
        ca_bundle: Path | None = None,
        secrets_dir: Path | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._url = url
        self._auth = auth
        self._allow_file = allow_file
        self._timeout = timeout
        if any(ch in part for part in author for ch in "<>\n\0"):
            raise ValueError("a commit author's name and email cannot hold <, > or a newline")
        self._author = author
        self._ca_bundle = ca_bundle
        self._secrets_dir = secrets_dir

    @property
    def author(self) -> tuple[str, str]:
        """The (name, email) our commits carry as author and committer."""
        return self._author

    def run(
        self,
        args: list[str],
        *,
        cwd: Path,
        network: bool,
        config: tuple[str, ...] = (),
        stdin: bytes | None = None,
    ) -> Result:
        """Run `git <args>` in `cwd`; a network call gets the credentials and the deadline.

        `config` adds `-c key=value` options for this run only.
        """
        operation = args[0] if args else "git"
        with (
            timed_call("git", operation),
            self._environment(network=network) as env,
        ):
            extra = [arg for option in config for arg in ("-c", option)]
            command = ["git", *self._config_args(), *extra, *args]
            result = _run_killable(
                command,
                cwd=cwd,
                env=env,
                timeout=self._timeout if network else LOCAL_TIMEOUT,
                stdin=stdin,
            )
            if network and not result.ok:  # a local non-zero is often an answer (diff --quiet)
                CALL_ERRORS.labels("git", operation).inc()
                if not _REFUSED_UPDATE.search(result.output):
                    # the connection may be what failed: the next call starts afresh; a
                    # push the server refused (the branch moved) was an answer over a
                    # working connection, and its retry's fetch would pay the SSH
                    # handshake again (about 6 round trips over a WAN)
                    self._close_shared_connection(env)
            return result

    def _control_path(self) -> Path | None:
        """The socket of the shared SSH connection of these credentials and this host:
        a different key or known_hosts never rides on another's connection."""
        if not isinstance(self._auth, SSHAuth):
            return None
        # always the system temporary folder: a socket path has at most 107 bytes
        folder = Path(tempfile.gettempdir()) / f"{SECRETS_PREFIX}{os.getpid()}-mux"
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
        parts = urlsplit(self._url) if "://" in self._url else None
        where = parts.netloc if parts else self._url.partition(":")[0]
        digest = hashlib.sha256(
            "\0".join((self._auth.private_key, self._auth.known_hosts, where)).encode()
        ).hexdigest()[:16]
        return folder / digest

    def _close_shared_connection(self, env: dict[str, str]) -> None:
        """After a failed network call, end the shared connection (it may be dead)."""
        control = self._control_path()
        if control is None or not control.exists():
            return
        command = [*shlex.split(env["GIT_SSH_COMMAND"]), "-O", "exit", "promotion-mux"]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(command, env=env, capture_output=True, timeout=10, check=False)

    def _config_args(self) -> list[str]:
        options = [
            "protocol.ext.allow=never",
            "credential.helper=",  # drop any helper; only ours below may answer
            "core.hooksPath=/dev/null",
            "core.attributesFile=/dev/null",  # only the repository's own .gitattributes
            "core.askPass=",
            "gc.autoDetach=false",  # no background gc outliving our lock
            "commit.gpgSign=false",
            "http.sslVerify=true",
            "http.followRedirects=false",  # a redirect could carry our token to another host
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
        """The child environment; for network calls, credentials exist only inside this block.

        Inherited `GIT_*` variables (GIT_SSL_NO_VERIFY, GIT_DIR, GIT_CONFIG_PARAMETERS…) are
        dropped, so the operator's own environment cannot weaken or redirect git.
        """
        name, email = self._author
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("GIT_") or key in _KEEP_GIT_VARS
        }
        env.update(
            {
                "LC_ALL": "C",  # failures are classified from git's English output
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
                _HOST_ENV: "",
                _PROTOCOL_ENV: "",
            }
        )
        if self._ca_bundle is not None:
            env["GIT_SSL_CAINFO"] = str(self._ca_bundle)  # the variable beats http.sslCAInfo
        if not network:
            yield env
            return
        if isinstance(self._auth, HTTPSAuth):
            parts = urlsplit(self._url)
            env[_USERNAME_ENV] = self._auth.username
            env[_PASSWORD_ENV] = self._auth.password
            env[_HOST_ENV] = parts.netloc.rpartition("@")[2]
            env[_PROTOCOL_ENV] = parts.scheme
            yield env
        elif isinstance(self._auth, SSHAuth):
            with tempfile.TemporaryDirectory(  # mode 0700
                prefix=f"{SECRETS_PREFIX}{os.getpid()}-", dir=self._secrets_dir
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
            control = self._control_path()
            if control is not None:
                args += [
                    "-o", "ControlMaster=auto",
                    "-o", f"ControlPath={control}",
                    "-o", f"ControlPersist={SSH_PERSIST_SECONDS}",
                ]  # fmt: skip
        return shlex.join(args)


def _run_killable(
    command: list[str], *, cwd: Path, env: dict[str, str], timeout: float, stdin: bytes | None
) -> Result:
    """Run a command in its own process group; past `timeout` kill the whole group."""
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return Result(-9, b"", f"no answer within {timeout:g} s (timed out)")
    return Result(process.returncode, out, err.decode("utf-8", "replace"))


def remove_stale_secrets(folder: Path | None = None) -> list[Path]:
    """Remove SSH key folders that a killed operator left behind; return them.

    A folder is stale when the process that made it (its pid is in the name) is gone; a
    SIGKILL skips the cleanup that normally removes it at once.
    """
    removed: list[Path] = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{SECRETS_PREFIX}*"):
        pid = path.name[len(SECRETS_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _normalise_key(key: str) -> str:
    """OpenSSH refuses keys with CRLF line ends or without a final newline."""
    return key.replace("\r\n", "\n").strip() + "\n"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
