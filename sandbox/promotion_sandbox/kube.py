"""A cluster reached through the real kubectl: the one client the demo, tests and bench use."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KUBECTL_TIMEOUT = 120.0


class KubectlError(AssertionError):
    """kubectl exited non-zero (an AssertionError, so a test shows it as a failed check)."""


@dataclass(frozen=True)
class Kube:
    """A cluster, its admin kubeconfig and the matching kubectl and helm."""

    kubeconfig: Path
    kubectl_path: str
    helm_path: str

    def kubectl_argv(self, *args: str) -> list[str]:
        """The command line of `kubectl args...` against this cluster."""
        return [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args]

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raise `KubectlError` on failure when `check`."""
        result = subprocess.run(
            self.kubectl_argv(*args),
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=KUBECTL_TIMEOUT,
        )
        if check and result.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def apply(
        self, *objects: dict[str, Any], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` the objects in one call (one object, or a List of several)."""
        document = (
            objects[0]
            if len(objects) == 1
            else {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        )
        return self.kubectl("apply", "-f", "-", input_text=json.dumps(document), check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        """`kubectl get -o json` of one object."""
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        result: dict[str, Any] = json.loads(out)
        return result

    def create_namespace(self, name: str) -> str:
        """Create the namespace `name`; return it."""
        self.kubectl("create", "namespace", name)
        return name

    @contextlib.contextmanager
    def namespace(self, prefix: str) -> Iterator[str]:
        """A fresh namespace `<prefix>-<random>`, deleted (without waiting) afterwards."""
        name = self.create_namespace(f"{prefix}-{uuid.uuid4().hex[:8]}")
        try:
            yield name
        finally:
            self.kubectl("delete", "namespace", name, "--wait=false", check=False)
