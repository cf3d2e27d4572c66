"""The API server validates the gates' fields and kinds (real kube-apiserver, kubectl)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from support.kube import Kube

pytestmark = pytest.mark.integration
GROUP = "promotion.gitops.dev/v1alpha1"


def environment(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "Environment",
        "metadata": {"name": "prod", "namespace": namespace},
        "spec": {
            "git": {"url": "https://git.example.com/team/gitops.git"},
            "overlay": {"path": "k8s/overlays/prod"},
            "images": [{"name": "registry.example.com/team/app"}],
            **spec,
        },
    }


def approval(namespace: str, name: str = "a1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "PromotionApproval",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"promotion": "p1", "generation": 1, "version": "v20250819-f3b8541", **spec},
    }


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"kind": "deny", "schedule": "0 18 * * 5"}, "a window is either schedule + duration"),
        (
            {"kind": "deny", "schedule": "0 18 * * 5", "duration": "1h",
             "until": "2026-01-01T00:00:00Z"},
            "a window is either schedule + duration",
        ),
        ({"kind": "sometimes", "until": "2026-01-01T00:00:00Z"}, "Unsupported value"),
        ({"kind": "deny", "until": "next tuesday"}, "spec.windows[0].until"),
    ],
)  # fmt: skip
def test_a_malformed_window_is_refused_at_admission(
    kube: Kube, namespace: str, window: dict[str, Any], message: str
) -> None:
    result = kube.apply(environment(namespace, windows=[window]), check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_windows_and_approval_are_stored(kube: Kube, namespace: str) -> None:
    windows = [
        {"kind": "allow", "schedule": "0 9 * * 1-4", "duration": "8h", "timeZone": "Europe/Berlin"},
        {"kind": "deny", "from": "2026-12-18T00:00:00+01:00", "until": "2027-01-04T00:00:00+01:00"},
    ]  # fmt: skip
    approval_spec = {"required": 2, "groups": ["release-managers"]}
    kube.apply(environment(namespace, windows=windows, approval=approval_spec))

    stored = kube.get("environment", "prod", namespace)["spec"]
    assert stored["windows"][0]["timeZone"] == "Europe/Berlin"
    assert stored["windows"][1]["until"] == "2027-01-04T00:00:00+01:00"
    assert stored["approval"] == approval_spec


def test_an_approval_without_approvers_is_refused(kube: Kube, namespace: str) -> None:
    result = kube.apply(environment(namespace, approval={"required": 1}), check=False)
    assert result.returncode != 0
    assert "approval needs users or groups: who may approve" in result.stderr


def test_an_approval_is_immutable_and_selectable_by_promotion(kube: Kube, namespace: str) -> None:
    kube.apply(approval(namespace, "a1", approver={"username": "bob"}))
    kube.apply(approval(namespace, "a2", promotion="p2", approver={"username": "bob"}))

    patch = json.dumps({"spec": {"approver": {"username": "carol"}}})
    edited = kube.kubectl(
        "patch", "promotionapproval", "a1", "-n", namespace, "--type=merge", "-p", patch,
        check=False,
    )  # fmt: skip
    assert edited.returncode != 0
    assert "an approval cannot be changed: delete it and approve again" in edited.stderr
    selected = kube.kubectl(
        "get", "promotionapprovals", "-n", namespace, "--field-selector", "spec.promotion=p1",
        "-o", "name",
    ).stdout.split()  # fmt: skip
    assert selected == ["promotionapproval.promotion.gitops.dev/a1"]


def test_a_promotion_policy_is_cluster_scoped(kube: Kube) -> None:
    name = f"policy-{uuid.uuid4().hex[:8]}"
    policy = {
        "apiVersion": GROUP,
        "kind": "PromotionPolicy",
        "metadata": {"name": name},
        "spec": {"namespaces": ["nobody-here"], "freeze": True, "message": "incident 42"},
    }
    kube.apply(policy)
    try:
        table = kube.kubectl("get", "promotionpolicy", name).stdout
        assert "incident 42" in table and "true" in table
    finally:
        kube.kubectl("delete", "promotionpolicy", name)
