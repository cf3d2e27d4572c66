"""The Helm chart's RBAC is enough for a whole promotion, and no more than that.

The operator runs under the chart's ServiceAccount token against the RBAC-enabled API
server; every API call it makes must be allowed, and what it must never do is denied.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from promotion_sandbox.world import NEW_VERSION, World, promotion
from support.chart import render_chart
from support.kube import Kube
from support.operator import OperatorProcess, status_of, wait_for

pytestmark = pytest.mark.e2e


RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


@pytest.fixture
def installed(kube: Kube) -> Iterator[tuple[str, str]]:
    """The chart's ServiceAccount and RBAC in a fresh namespace; yields (namespace, sa)."""
    release_ns = f"rbac-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", release_ns)
    documents = render_chart(kube, release_ns)
    kinds = {doc["kind"] for doc in documents}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"} <= kinds
    rbac = [d for d in documents if d["kind"] in RBAC_KINDS]
    for doc in rbac:
        # one cluster, many test runs: give the cluster-scoped objects unique names
        if doc["kind"].startswith("Cluster"):
            doc["metadata"]["name"] += f"-{release_ns}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] += f"-{release_ns}"
        kube.apply(doc)
    account = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    yield release_ns, account
    for doc in rbac:
        if doc["kind"].startswith("Cluster"):
            kube.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], check=False)
    kube.kubectl("delete", "namespace", release_ns, "--wait=false", check=False)


@pytest.fixture
def requested_by_policy(kube: Kube) -> Iterator[str]:
    """The chart's requested-by admission policy, bound to one fresh namespace only."""
    work_ns = f"rbac-work-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", work_ns)
    policy = [
        d
        for d in render_chart(kube, "promotion-system")
        if d["kind"].startswith("MutatingAdmissionPolicy")
        and "requested-by" in d["metadata"]["name"]
    ]
    assert [d["kind"] for d in policy] == [
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
    ]
    for doc in policy:
        doc["metadata"]["name"] += f"-{work_ns}"
    binding = policy[1]["spec"]
    binding["policyName"] += f"-{work_ns}"
    # the test cluster is shared: stamp only this test's namespace
    binding["matchResources"] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": work_ns}}
    }
    for doc in policy:
        kube.apply(doc)
    yield work_ns
    for doc in policy:
        kube.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], check=False)
    kube.kubectl("delete", "namespace", work_ns, "--wait=false", check=False)


def stamped_by(kube: Kube, obj: dict[str, Any], user: str) -> str | None:
    """What the API server stores as requested-by when `user` creates `obj` (dry run).

    None also while the API server does not serve the kind yet (just after the CRDs).
    """
    created = kube.kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        f"--as={user}",
        "--as-group=system:masters",
        input_text=json.dumps(obj),
        check=False,
    )
    if created.returncode != 0:
        return None
    annotations = json.loads(created.stdout)["metadata"].get("annotations") or {}
    value = annotations.get("promotion.gitops.dev/requested-by")
    return str(value) if value is not None else None


def token_kubeconfig(kube: Kube, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a bound token."""
    token = kube.kubectl(
        "create", "token", account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sa"}}],
                "current-context": "c",
            }
        )
    )
    return path


def can_i(kube: Kube, account: str, namespace: str, verb: str, resource: str) -> bool:
    result = kube.kubectl(
        "auth",
        "can-i",
        verb,
        resource,
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:{account}",
        check=False,
    )
    return result.stdout.strip() == "yes"


def test_operator_promotes_under_the_charts_identity(
    kube: Kube,
    installed: tuple[str, str],
    requested_by_policy: str,
    fresh_world: World,
    tmp_path: Path,
) -> None:
    release_ns, account = installed
    work_ns = requested_by_policy
    request = promotion(work_ns, "rbac", NEW_VERSION)
    request["metadata"]["annotations"] = {"promotion.gitops.dev/requested-by": "spoofed"}
    # the policy is active once the API server stamps the real user over the spoofed one
    wait_for("the admission policy", lambda: stamped_by(kube, request, "alice") == "alice")
    for obj in fresh_world.objects(work_ns):
        kube.apply(obj)
    config = token_kubeconfig(kube, release_ns, account, tmp_path / "sa.kubeconfig")
    operator = OperatorProcess(
        kube,
        tmp_path,
        [work_ns],
        kubeconfig=config,
        # as the chart runs it: the Lease proves the leader-election RBAC too
        extra_args=("--leader-elect", f"--leader-election-namespace={release_ns}"),
    ).start()
    try:
        kube.kubectl(
            "apply",
            "-f",
            "-",
            "--as=alice",
            "--as-group=system:masters",
            input_text=json.dumps(request),
        )
        status = wait_for(
            "the promotion under the chart's RBAC",
            lambda: (
                (s := status_of(kube, work_ns, "rbac")).get("phase") in ("Succeeded", "Failed")
                and s
            ),
            timeout=90,
            logs=operator.logs,
        )
        assert status["phase"] == "Succeeded", status
        env = wait_for(
            "the Environment status written under the chart's RBAC",
            lambda: (kube.get("environment", "tvhub-dev", work_ns).get("status") or {}).get(
                "health"
            ),
            logs=operator.logs,
        )
        assert env == "Healthy"
    finally:
        operator.stop()
    assert fresh_world.remote_file("k8s/overlays/prod/kustomization.yaml").count(NEW_VERSION) == 2
    assert "Requested-By: alice" in fresh_world.remote_messages()[0]
    logs = operator.logs()
    assert "Forbidden" not in logs and " 403" not in logs, logs[-3000:]


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("get", "secrets", True),
        ("list", "secrets", False),
        ("watch", "secrets", False),
        ("create", "secrets", False),
        ("patch", "promotions.promotion.gitops.dev/status", True),
        ("watch", "promotions.promotion.gitops.dev", True),
        ("create", "promotions.promotion.gitops.dev", False),
        ("update", "promotions.promotion.gitops.dev", False),
        ("delete", "promotions.promotion.gitops.dev", False),
        ("delete", "environments.promotion.gitops.dev", False),
        # the gates: read approvals and policies, never write them (no self-approval)
        ("list", "promotionapprovals.promotion.gitops.dev", True),
        ("create", "promotionapprovals.promotion.gitops.dev", False),
        ("delete", "promotionapprovals.promotion.gitops.dev", False),
        ("list", "promotionpolicies.promotion.gitops.dev", True),
        ("patch", "promotionpolicies.promotion.gitops.dev", False),
        ("get", "applications.argoproj.io", True),
        # only to set the refresh annotation after a push
        ("patch", "applications.argoproj.io", True),
        ("get", "appprojects.argoproj.io", True),  # health.argocd.syncWindows
        ("patch", "appprojects.argoproj.io", False),
        ("update", "leases.coordination.k8s.io", True),
        ("delete", "leases.coordination.k8s.io", False),
        ("list", "deployments.apps", True),
        ("patch", "deployments.apps", False),
        ("create", "pods", False),
        ("get", "configmaps", False),
    ],
)
def test_chart_rbac_is_least(
    kube: Kube, installed: tuple[str, str], verb: str, resource: str, allowed: bool
) -> None:
    release_ns, account = installed
    assert can_i(kube, account, release_ns, verb, resource) is allowed


# -- watchNamespaces: Secrets only where the operator watches ----------------------------


@pytest.fixture
def installed_watching(kube: Kube) -> Iterator[tuple[str, str, str, str]]:
    """The chart's RBAC with watchNamespaces={watched}; yields (release, sa, watched, other)."""
    suffix = uuid.uuid4().hex[:8]
    release_ns, watched, other = (f"{kind}-{suffix}" for kind in ("rbac", "watched", "other"))
    for name in (release_ns, watched, other):
        kube.kubectl("create", "namespace", name)
    documents = render_chart(kube, release_ns, f"watchNamespaces={{{watched}}}")
    rbac = [doc for doc in documents if doc["kind"] in RBAC_KINDS]
    assert sorted(
        (d["kind"], d["metadata"].get("namespace") or "") for d in rbac if "Role" in d["kind"]
    ) == sorted(
        [
            ("ClusterRole", ""),
            ("ClusterRole", ""),  # the approver role, for people (bound by the platform team)
            ("ClusterRoleBinding", ""),
            ("Role", release_ns),  # the leader-election Lease
            ("RoleBinding", release_ns),
            ("Role", watched),
            ("RoleBinding", watched),
        ]
    )
    for doc in rbac:
        if doc["kind"].startswith("Cluster"):
            doc["metadata"]["name"] += f"-{release_ns}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] += f"-{release_ns}"
        kube.apply(doc)
    account = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    yield release_ns, account, watched, other
    for doc in rbac:
        if doc["kind"].startswith("Cluster"):
            kube.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], check=False)
    for name in (release_ns, watched, other):
        kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def can_i_in(kube: Kube, account: str, account_ns: str, namespace: str, verb: str) -> bool:
    result = kube.kubectl(
        "auth",
        "can-i",
        verb,
        "secrets",
        "-n",
        namespace,
        f"--as=system:serviceaccount:{account_ns}:{account}",
        check=False,
    )
    return result.stdout.strip() == "yes"


def test_with_watch_namespaces_secrets_are_readable_only_there(
    kube: Kube, installed_watching: tuple[str, str, str, str]
) -> None:
    release_ns, account, watched, other = installed_watching

    assert can_i_in(kube, account, release_ns, watched, "get")
    assert not can_i_in(kube, account, release_ns, other, "get")
    assert not can_i_in(kube, account, release_ns, release_ns, "get")
    assert not can_i_in(kube, account, release_ns, watched, "list")


def test_with_watch_namespaces_a_secret_elsewhere_is_forbidden(
    kube: Kube, installed_watching: tuple[str, str, str, str], tmp_path: Path
) -> None:
    # the real request under the ServiceAccount's token, not only the access review
    release_ns, account, watched, other = installed_watching
    for namespace in (watched, other):
        kube.kubectl(
            "create", "secret", "generic", "registry", "-n", namespace, "--from-literal=k=v"
        )
    config = token_kubeconfig(kube, release_ns, account, tmp_path / "sa.kubeconfig")

    def get_secret(namespace: str) -> subprocess.CompletedProcess[str]:
        command = [kube.kubectl_path, f"--kubeconfig={config}", "get", "secret", "registry"]
        return subprocess.run(
            [*command, "-n", namespace, "-o", "name"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    assert get_secret(watched).stdout.strip() == "secret/registry"
    refused = get_secret(other)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr


def test_without_watch_namespaces_secrets_stay_a_cluster_wide_get(kube: Kube) -> None:
    documents = render_chart(kube, "promotion-system")

    cluster_role = next(
        d
        for d in documents
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "promotion-operator"
    )
    secret_rules = [r for r in cluster_role["rules"] if "secrets" in r["resources"]]
    assert secret_rules == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    roles = [d for d in documents if d["kind"] in ("Role", "RoleBinding")]
    # the only namespaced grant is the leader-election Lease, in the release's namespace
    assert {(d["kind"], d["metadata"]["name"]) for d in roles} == {
        ("Role", "promotion-operator-leader"),
        ("RoleBinding", "promotion-operator-leader"),
    }


def test_a_namespace_pattern_cannot_get_per_namespace_roles(kube: Kube) -> None:
    with pytest.raises(subprocess.CalledProcessError) as caught:
        render_chart(kube, "promotion-system", "watchNamespaces={team-*}")

    assert "is a pattern" in str(caught.value.stderr)


def test_operator_promotes_with_secrets_granted_per_namespace(
    kube: Kube,
    installed_watching: tuple[str, str, str, str],
    fresh_world: World,
    tmp_path: Path,
) -> None:
    # the registry pull Secret of the world is read through the per-namespace Role only
    release_ns, account, watched, _ = installed_watching
    for obj in fresh_world.objects(watched):
        kube.apply(obj)
    config = token_kubeconfig(kube, release_ns, account, tmp_path / "sa.kubeconfig")
    operator = OperatorProcess(kube, tmp_path, [watched], kubeconfig=config).start()
    try:
        kube.apply(promotion(watched, "scoped", NEW_VERSION))
        status = wait_for(
            "the promotion with per-namespace Secret access",
            lambda: (
                (s := status_of(kube, watched, "scoped")).get("phase") in ("Succeeded", "Failed")
                and s
            ),
            timeout=90,
            logs=operator.logs,
        )
    finally:
        operator.stop()
    assert status["phase"] == "Succeeded", status
    logs = operator.logs()
    assert "Forbidden" not in logs and " 403" not in logs, logs[-3000:]
