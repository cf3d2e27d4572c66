"""The Helm chart, rendered as `helm install` would apply it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from support.kube import Kube

CHART = Path(__file__).resolve().parents[2] / "charts" / "promotion-operator"


def render_chart(kube: Kube, release_namespace: str, *values: str) -> list[dict[str, Any]]:
    """`helm template` the chart: the same manifests `helm install` would apply.

    `values` are `--set` arguments, e.g. `watchNamespaces={team-a}`.
    """
    out = subprocess.run(
        [
            kube.helm_path,
            "template",
            "promotion-operator",
            str(CHART),
            f"--namespace={release_namespace}",
            *(f"--set={value}" for value in values),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]
