"""Argo CD's Application kind, for clusters without Argo CD: the CRD and status writes.

The operator only *reads* Applications, so most tests need no Argo CD: the sandbox
installs a CRD with the same group, names and status shape (no status subresource, as in
Argo CD's own CRD) and writes `.status` the way Argo CD's application controller does.
The statuses written here also pass Argo CD's own CRD, which `gitops_world.ArgoCDWorld`
installs in its place when it runs the real Argo CD.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from promotion_operator.domain.crdgen import custom_resource_definitions

if TYPE_CHECKING:
    from promotion_sandbox.kube import Kube

APPLICATION_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "applications.argoproj.io"},
    "spec": {
        "group": "argoproj.io",
        "names": {
            "kind": "Application",
            "listKind": "ApplicationList",
            "plural": "applications",
            "singular": "application",
            "shortNames": ["app", "apps"],
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "required": ["metadata", "spec"],
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "operation": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


SYNC_STARTED_AT = "2025-08-19T10:00:00Z"


def application(name: str, namespace: str, repo_url: str, path: str) -> dict[str, Any]:
    """An Application that deploys `path` of `repo_url` (as a user would write it)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "path": path, "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
        },
    }


def application_status(
    images: Sequence[str],
    *,
    health: str = "Healthy",
    sync: str = "Synced",
    revision: str = "0" * 40,
    operation_phase: str = "Succeeded",
) -> dict[str, Any]:
    """`.status` as Argo CD's controller writes it after syncing `images` (name:tag)."""
    return {
        "health": {"status": health},
        "sync": {"status": sync, "revision": revision},
        "summary": {"images": list(images)},
        # `operation` and `startedAt` are required by Argo CD's CRD
        "operationState": {
            "operation": {"sync": {"revision": revision}},
            "phase": operation_phase,
            "startedAt": SYNC_STARTED_AT,
            "syncResult": {"revision": revision},
        },
    }


def install_crds(kube: Kube) -> None:
    """Install our CRDs and Argo CD's Application CRD, and wait until they are served.

    Ours come from the models' generator, which the committed `crds/` files match (a unit
    test fails on drift), so the sandbox needs no checkout to find them.
    """
    ours = custom_resource_definitions().values()
    kube.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(ours)}),
    )
    kube.apply(APPLICATION_CRD)
    kube.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/promotions.promotion.gitops.dev",
        "crd/environments.promotion.gitops.dev",
        "crd/promotionapprovals.promotion.gitops.dev",
        "crd/promotionpolicies.promotion.gitops.dev",
        "crd/applications.argoproj.io",
    )
