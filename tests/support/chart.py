"""The Helm chart, rendered as `helm install` would apply it."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from support.kube import Kube

CHART = Path(__file__).resolve().parents[2] / "charts" / "promotion-operator"
# image.repository is required (no registry publishes the image); tests that do not run
# the image name any repository, as a user installing their own build would
TEST_IMAGE = "registry.example.com/platform/promotion-operator"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def helm(kube: Kube, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm (the one built beside kubectl); output captured as text."""
    return subprocess.run(
        [kube.helm_path, *args], capture_output=True, text=True, check=check, timeout=120
    )


def template_args(release_namespace: str, *values: str, flags: Sequence[str] = ()) -> list[str]:
    """`helm template` arguments for the chart; see `render_chart`."""
    return [
        "template",
        "promotion-operator",
        str(CHART),
        f"--namespace={release_namespace}",
        f"--set=image.repository={TEST_IMAGE}",
        *(f"--set={value}" for value in values),
        *flags,
    ]


def render_chart(
    kube: Kube, release_namespace: str, *values: str, flags: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """`helm template` the chart: the same manifests `helm install` would apply.

    `values` are `--set` arguments, e.g. `watchNamespaces={team-a}`, and `flags` other helm
    flags (`--set-json=...`); image.repository is TEST_IMAGE unless a value sets it.
    """
    out = helm(kube, *template_args(release_namespace, *values, flags=flags)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def apply_rbac(kube: Kube, documents: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """Apply the rendered ServiceAccount and RBAC; return what was applied.

    One cluster serves many tests, so the cluster-scoped objects get `-<suffix>` names.
    """
    rbac = [doc for doc in documents if doc["kind"] in RBAC_KINDS]
    for doc in rbac:
        if doc["kind"].startswith("Cluster"):
            doc["metadata"]["name"] += f"-{suffix}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] += f"-{suffix}"
        kube.apply(doc)
    return rbac


def delete_rbac(kube: Kube, rbac: list[dict[str, Any]]) -> None:
    """Delete the cluster-scoped objects `apply_rbac` made (namespaced ones go with theirs)."""
    for doc in rbac:
        if doc["kind"].startswith("Cluster"):
            kube.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], check=False)
