"""The chart's admission policies keep `promotion.gitops.dev/requested-by` honest.

The mutating policy stamps the requesting user on create and on a spec change; the
validating one refuses any other change of the annotation, such as
`kubectl annotate ... requested-by=bob --overwrite` by someone who is not bob, or its
removal. Both run on the real API server, bound to one fresh namespace.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from promotion_sandbox.world import NEW_VERSION, promotion
from support.chart import render_chart
from support.kube import Kube
from support.operator import wait_for

pytestmark = pytest.mark.e2e
KEY = "promotion.gitops.dev/requested-by"
POLICY_KINDS = (
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)


@pytest.fixture
def guarded(kube: Kube) -> Iterator[str]:
    """Both requested-by policies of the chart, bound to a fresh namespace; yields it."""
    work_ns = f"guard-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", work_ns)
    policies = [
        d
        for d in render_chart(kube, "promotion-system")
        if d["kind"] in POLICY_KINDS and "requested-by" in d["metadata"]["name"]
    ]
    assert sorted(d["kind"] for d in policies) == sorted(POLICY_KINDS)
    for doc in policies:
        doc["metadata"]["name"] += f"-{work_ns}"
        if doc["kind"].endswith("Binding"):
            doc["spec"]["policyName"] += f"-{work_ns}"
            # the test cluster is shared: only this test's namespace is policed
            doc["spec"]["matchResources"] = {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": work_ns}}
            }
        kube.apply(doc)
    yield work_ns
    for doc in policies:
        kube.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], check=False)
    kube.kubectl("delete", "namespace", work_ns, "--wait=false", check=False)


def as_user(
    kube: Kube, user: str, *args: str, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl as `user` (in system:masters: RBAC allows all, admission still applies)."""
    return kube.kubectl(
        *args, f"--as={user}", "--as-group=system:masters", input_text=input_text, check=False
    )


def requested_by(kube: Kube, namespace: str, name: str) -> str | None:
    annotations = kube.get("promotion", name, namespace)["metadata"].get("annotations") or {}
    value = annotations.get(KEY)
    return str(value) if value is not None else None


@pytest.fixture
def alices_promotion(kube: Kube, guarded: str) -> tuple[str, str]:
    """A Promotion alice created (stamped by the mutating policy); (namespace, name)."""
    namespace, name = guarded, "release"
    request = promotion(namespace, name, NEW_VERSION)
    request["metadata"]["annotations"] = {KEY: "spoofed-at-create"}
    probe = promotion(namespace, "probe", NEW_VERSION)
    probe["metadata"]["annotations"] = {KEY: "spoofed"}

    def stamped() -> bool:
        dry = as_user(
            kube, "alice", "create", "--dry-run=server", "-o", "json", "-f", "-",
            input_text=json.dumps(probe),
        )  # fmt: skip
        return dry.returncode == 0 and json.loads(dry.stdout)["metadata"]["annotations"] == {
            KEY: "alice"
        }

    def refused() -> bool:
        spoof = as_user(
            kube, "mallory", "annotate", "promotion", "probe", "-n", namespace,
            f"{KEY}=bob", "--overwrite", "--dry-run=server",
        )  # fmt: skip
        return spoof.returncode != 0

    # the API server compiles new policies asynchronously: wait for each to act
    wait_for("the mutating requested-by policy", stamped)
    made = as_user(kube, "alice", "create", "-f", "-", input_text=json.dumps(probe))
    assert made.returncode == 0, made.stderr
    wait_for("the validating requested-by policy", refused)
    created = as_user(kube, "alice", "create", "-f", "-", input_text=json.dumps(request))
    assert created.returncode == 0, created.stderr
    assert requested_by(kube, namespace, name) == "alice"
    return namespace, name


def test_annotating_someone_else_as_requester_is_refused(
    kube: Kube, alices_promotion: tuple[str, str]
) -> None:
    namespace, name = alices_promotion

    spoof = as_user(
        kube, "mallory", "annotate", "promotion", name, "-n", namespace, f"{KEY}=bob",
        "--overwrite",
    )  # fmt: skip

    assert spoof.returncode != 0
    assert "can only be set to the user who makes the request (mallory)" in spoof.stderr
    assert 'not to "bob"' in spoof.stderr
    assert requested_by(kube, namespace, name) == "alice"


def test_removing_the_requester_is_refused(kube: Kube, alices_promotion: tuple[str, str]) -> None:
    namespace, name = alices_promotion

    removal = as_user(kube, "mallory", "annotate", "promotion", name, "-n", namespace, f"{KEY}-")

    assert removal.returncode != 0
    assert "can only be set to the user who makes the request" in removal.stderr
    assert requested_by(kube, namespace, name) == "alice"


def test_patching_the_annotation_through_a_merge_patch_is_refused(
    kube: Kube, alices_promotion: tuple[str, str]
) -> None:
    namespace, name = alices_promotion
    patch = {"metadata": {"annotations": {KEY: "alice-really"}}}

    patched = as_user(
        kube, "alice", "patch", "promotion", name, "-n", namespace, "--type=merge",
        "-p", json.dumps(patch),
    )  # fmt: skip

    assert patched.returncode != 0
    assert requested_by(kube, namespace, name) == "alice"


def test_other_metadata_changes_leave_the_requester_alone(
    kube: Kube, alices_promotion: tuple[str, str]
) -> None:
    namespace, name = alices_promotion

    labelled = as_user(kube, "mallory", "label", "promotion", name, "-n", namespace, "team=tv")
    noted = as_user(
        kube, "mallory", "annotate", "promotion", name, "-n", namespace, "note=looks good"
    )

    assert labelled.returncode == 0, labelled.stderr
    assert noted.returncode == 0, noted.stderr
    assert requested_by(kube, namespace, name) == "alice"


def test_a_new_request_by_bob_names_bob(kube: Kube, alices_promotion: tuple[str, str]) -> None:
    # a spec change is a new request: the mutating policy stamps bob, the guard agrees
    namespace, name = alices_promotion
    patch = {"spec": {"version": "v20250101-0000000"}}

    patched = as_user(
        kube, "bob", "patch", "promotion", name, "-n", namespace, "--type=merge",
        "-p", json.dumps(patch),
    )  # fmt: skip

    assert patched.returncode == 0, patched.stderr
    assert requested_by(kube, namespace, name) == "bob"
