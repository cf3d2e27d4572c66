"""Session fixtures: a real Kubernetes API server (or an existing cluster) with our CRDs.

Set PROMOTION_OPERATOR_TEST_KUBECONFIG to run against an existing cluster (e.g. kind);
otherwise etcd + kube-apiserver are built when missing and started for the session.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from promotion_sandbox.argocd import install_crds
from support.kube import Kube


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """The cluster for the session, with our CRDs and the Argo CD Application CRD."""
    existing = os.environ.get("PROMOTION_OPERATOR_TEST_KUBECONFIG")
    if existing:
        kube = Kube(
            Path(existing), shutil.which("kubectl") or "kubectl", shutil.which("helm") or "helm"
        )
        plane = None
    else:
        from promotion_sandbox.controlplane import ControlPlane

        plane = ControlPlane(tmp_path_factory.mktemp("controlplane"))
        state = plane.start()
        bin_dir = Path(state.bin_dir)
        kube = Kube(plane.kubeconfig, str(bin_dir / "kubectl"), str(bin_dir / "helm"))
    try:
        install_crds(kube.kubectl)
        yield kube
    finally:
        if plane is not None:
            plane.stop()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)
