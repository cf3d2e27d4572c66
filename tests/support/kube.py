"""A cluster the tests talk to through the real kubectl."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Kube:
    """A cluster the tests may use, with the matching kubectl."""

    kubeconfig: Path
    kubectl_path: str
    helm_path: str

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster."""
        result = subprocess.run(
            [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def apply(self, obj: dict[str, Any], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """kubectl apply one object."""
        return self.kubectl("apply", "-f", "-", input_text=json.dumps(obj), check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        """kubectl get -o json."""
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        result: dict[str, Any] = json.loads(out)
        return result
