"""Session fixtures: a real Kubernetes API server (or an existing cluster) with our CRDs.

Set PROMOTION_OPERATOR_TEST_KUBECONFIG to run against an existing cluster (e.g. kind);
otherwise etcd + kube-apiserver are built when missing and started for the session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from promotion_sandbox.argocd import install_crds
from promotion_sandbox.controlplane import ControlPlane
from promotion_sandbox.kube import Kube


@pytest.fixture(scope="session")
def kube(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kube]:
    """The cluster for the session, with our CRDs and the Argo CD Application CRD."""
    existing = os.environ.get("PROMOTION_OPERATOR_TEST_KUBECONFIG")
    if existing:
        kube = Kube(
            Path(existing), shutil.which("kubectl") or "kubectl", shutil.which("helm") or "helm"
        )
        install_crds(kube)
        yield kube
        return
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"), repo_root=request.config.rootpath)
    try:
        yield plane.up()
    finally:
        plane.stop()


@pytest.fixture
def new_namespace(kube: Kube) -> Iterator[Callable[[str], str]]:
    """Makes namespaces `<prefix>-<random>` for one test; deletes them after it."""
    with contextlib.ExitStack() as made:
        yield lambda prefix: made.enter_context(kube.namespace(prefix))


@pytest.fixture
def namespace(new_namespace: Callable[[str], str]) -> str:
    """A fresh namespace for one test (no operator watches it)."""
    return new_namespace("t")
