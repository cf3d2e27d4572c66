"""The real `kubectl promote`: kubectl finds this checkout's console script on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from promotion_sandbox.kube import Kube

PLUGIN_TIMEOUT = 180.0


def plugin_bin(folder: Path, kube: Kube) -> str:
    """A PATH with kubectl and only this checkout's kubectl-promote (plus git)."""
    (folder / "kubectl-promote").symlink_to(Path(sys.executable).parent / "kubectl-promote")
    (folder / "kubectl").symlink_to(kube.kubectl_path)
    return os.pathsep.join([str(folder), "/usr/bin", "/bin"])


def plugin_env(kube: Kube, path: str) -> dict[str, str]:
    """The environment of a plugin run: that PATH, the sandbox kubeconfig, wide rows."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NO_COLOR")}
    return {**env, "PATH": path, "KUBECONFIG": str(kube.kubeconfig), "COLUMNS": "200"}


def run_plugin(
    kube: Kube, path: str, namespace: str, *args: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """`kubectl promote ARGS -n NAMESPACE --kubeconfig K`, through kubectl's plugin lookup."""
    return subprocess.run(
        ["kubectl", "promote", *args, "-n", namespace, "--kubeconfig", str(kube.kubeconfig)],
        env=plugin_env(kube, path),
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=PLUGIN_TIMEOUT,
        check=False,
    )
