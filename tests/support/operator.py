"""The operator as a real process, and polling helpers for end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promotion_sandbox.procs import terminate
from support.kube import Kube


class OperatorProcess:
    """`promotion-operator run` in a subprocess, logging to a file."""

    def __init__(
        self,
        kube: Kube,
        workdir: Path,
        namespaces: list[str],
        *,
        kubeconfig: Path | None = None,
        **env: str,
    ) -> None:
        self.kube = kube
        self.kubeconfig = kubeconfig or kube.kubeconfig
        self.log = workdir / f"operator-{uuid.uuid4().hex[:6]}.log"
        self.cache = workdir / "cache"
        self.namespaces = namespaces
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        args = [
            sys.executable,
            "-m",
            "promotion_operator",
            "run",
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache}",
            "--allow-local-git",
            "--environment-refresh=1",
            "--max-backoff=2",
        ]
        for namespace in self.namespaces:
            args.append(f"--namespace={namespace}")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        return self

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        terminate(self.proc, grace=15)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_for(
    what: str, probe: Callable[[], Any], *, timeout: float = 60, logs: Callable[[], str] = str
) -> Any:
    """Poll `probe` until it returns something truthy; fail with `what` and the logs."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}\n{logs()[-4000:]}")


def status_of(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """A Promotion's status ({} before the operator wrote one)."""
    obj = kube.get("promotion", name, namespace)
    status: dict[str, Any] = obj.get("status") or {}
    return status


def events_of(kube: Kube, namespace: str, name: str) -> list[str]:
    """The reasons of the Events posted on an object, oldest first."""
    out = kube.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "json",
    ).stdout
    items = sorted(json.loads(out)["items"], key=lambda e: e["metadata"]["creationTimestamp"])
    return [e["reason"] for e in items]


class PhaseRecorder:
    """Records every phase a namespace's Promotions pass through, from a real kubectl watch."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def __enter__(self) -> PhaseRecorder:
        template = '{.metadata.name} {.status.phase}{"\\n"}'
        self.proc = subprocess.Popen(
            [
                self.kube.kubectl_path,
                f"--kubeconfig={self.kube.kubeconfig}",
                "get",
                "promotions",
                "-n",
                self.namespace,
                "--watch",
                f"--output=jsonpath={template}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        return self

    def __exit__(self, *_: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        self.lines = out.splitlines()

    def phases(self, name: str) -> list[str]:
        """The distinct phases `name` went through, in order."""
        seen: list[str] = []
        for line in self.lines:
            parts = line.split()
            if len(parts) == 2 and parts[0] == name and (not seen or seen[-1] != parts[1]):
                seen.append(parts[1])
        return seen
