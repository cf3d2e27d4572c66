"""The operator as a real process: how the demo, the tests and the benchmark all start it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Self

from promotion_sandbox.kube import Kube
from promotion_sandbox.procs import terminate

_NO_ENV: Mapping[str, str] = MappingProxyType({})
STOP_GRACE = 15.0


class OperatorExitedError(RuntimeError):
    """The operator process ended while it was expected to run."""


class OperatorProcess:
    """`python -m promotion_operator run` watching `namespaces`, logging to a file.

    `kubeconfig` overrides the cluster's admin kubeconfig (to run as a ServiceAccount);
    `env` adds environment variables (such as `PROMOTION_OPERATOR_CRASH_AT`), `extra_args`
    command-line flags (such as `--leader-elect`). The cache
    folder is `workdir/cache` unless given, so a restarted operator finds its clones.
    """

    def __init__(
        self,
        kube: Kube,
        workdir: Path,
        namespaces: Sequence[str],
        *,
        kubeconfig: Path | None = None,
        env: Mapping[str, str] = _NO_ENV,
        environment_refresh: float = 1.0,
        max_backoff: float = 2.0,
        log: Path | None = None,
        cache: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kube = kube
        self.kubeconfig = kubeconfig or kube.kubeconfig
        self.log = log or workdir / f"operator-{uuid.uuid4().hex[:6]}.log"
        self.cache = cache or workdir / "cache"
        self.namespaces = list(namespaces)
        self.env = dict(env)
        self.environment_refresh = environment_refresh
        self.max_backoff = max_backoff
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        """The operator's command line."""
        return [
            sys.executable,
            "-m",
            "promotion_operator",
            "run",
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache}",
            "--allow-local-git",
            f"--environment-refresh={self.environment_refresh:g}",
            f"--max-backoff={self.max_backoff:g}",
            *(f"--namespace={namespace}" for namespace in self.namespaces),
            *self.extra_args,
        ]

    def start(self) -> Self:
        """Start the process (output appended to `log`); return self."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        return self

    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = 60) -> int:
        """Wait for the process to exit on its own; return its exit code."""
        if self.proc is None:
            raise OperatorExitedError("the operator was never started")
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; safe to call twice."""
        terminate(self.proc, grace=STOP_GRACE)

    def logs(self) -> str:
        """The log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_observed(
        self, namespace: str, environments: Collection[str], *, timeout: float = 60
    ) -> float:
        """Wait until each Environment's status names the version git holds; return seconds.

        That is the operator's first full pass: connected, Environments read, remotes cloned.
        """
        began = time.monotonic()
        while True:
            listed = self.kube.kubectl(
                "get",
                "environments",
                "-n",
                namespace,
                "-o",
                "jsonpath={range .items[?(@.status.version)]}{.metadata.name}{'\\n'}{end}",
            ).stdout.split()
            if set(environments) <= set(listed):
                return time.monotonic() - began
            if self.proc is not None and self.proc.poll() is not None:
                raise OperatorExitedError(f"the operator exited:\n{self.logs()[-3000:]}")
            if time.monotonic() - began > timeout:
                raise TimeoutError(
                    f"Environments not observed in {timeout:.0f} s:\n{self.logs()[-3000:]}"
                )
            time.sleep(0.2)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
