"""The gates on real parts: four-eyes approval with distinct users, and promotion windows.

Users are impersonated (`kubectl --as --as-group`, and the same flags of the real
`kubectl promote` plugin) on the sandbox API server, with the chart's admission policies
(approver and requested-by) bound to the test's namespace: who asked and who approved are
the API server's, never what a client wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from promotion_operator.domain.gitrules import trailer_block
from promotion_operator.domain.times import parse_time, timestamp
from promotion_operator.plugin.kube import Kube as PluginKube
from promotion_operator.plugin.kube import KubeError, KubeFlags
from promotion_sandbox.argocd import application
from promotion_sandbox.gitops_world import argocd_module_dir
from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.world import NEW_VERSION, World, promotion
from support.chart import render_chart
from support.operator import status_of, wait_for, wait_phase
from support.plugin import plugin_bin, run_plugin

pytestmark = pytest.mark.e2e
POLICY_KINDS = (
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)
APPROVERS = "release-managers"


def as_user(
    kube: Kube, user: str, *args: str, groups: tuple[str, ...] = (), input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl as `user` in `groups` (and system:masters: RBAC allows, admission applies)."""
    flags = [f"--as={user}", *(f"--as-group={g}" for g in (*groups, "system:masters"))]
    return kube.kubectl(*args, *flags, input_text=input_text, check=False)


def impersonated(user: str, *groups: str) -> list[str]:
    """The plugin's flags for `user` in `groups` (and system:masters, as `as_user`)."""
    return [f"--as={user}", *(f"--as-group={g}" for g in (*groups, "system:masters"))]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory, kube: Kube) -> str:
    """A PATH on which kubectl finds this checkout's kubectl-promote."""
    return plugin_bin(tmp_path_factory.mktemp("plugin-bin"), kube)


def approval(namespace: str, name: str, generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "PromotionApproval",
        "metadata": {"name": f"{name}-{uuid.uuid4().hex[:6]}", "namespace": namespace},
        "spec": {"promotion": name, "generation": generation, "version": NEW_VERSION, **spec},
    }


def create_as(kube: Kube, user: str, obj: dict[str, Any], *groups: str) -> str:
    made = as_user(kube, user, "create", "-f", "-", groups=groups, input_text=json.dumps(obj))
    assert made.returncode == 0, made.stderr
    return str(obj["metadata"]["name"])


@pytest.fixture
def policed(kube: Kube, e2e_namespace: str) -> Iterator[str]:
    """The chart's approver and requested-by policies, bound to the test's namespace."""
    ns = e2e_namespace
    policies = [d for d in render_chart(kube, "promotion-system") if d["kind"] in POLICY_KINDS]
    assert len(policies) == 8
    for doc in policies:
        doc["metadata"]["name"] += f"-{ns}"
        if doc["kind"].endswith("Binding"):
            doc["spec"]["policyName"] += f"-{ns}"
            doc["spec"]["matchResources"] = {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}
            }
    kube.apply(*policies)
    probe = approval(ns, "probe")

    def stamped() -> bool:  # the API server compiles new policies asynchronously
        dry = as_user(
            kube, "probe", "create", "--dry-run=server", "-o", "json", "-f", "-",
            input_text=json.dumps(probe),
        )  # fmt: skip
        return dry.returncode == 0 and "approver" in json.loads(dry.stdout)["spec"]

    def guarded() -> bool:
        spoof = {**probe, "spec": {**probe["spec"], "approver": {"username": "someone"}}}
        dry = as_user(kube, "probe", "create", "--dry-run=server", "-f", "-",
                      input_text=json.dumps(spoof))  # fmt: skip
        return dry.returncode != 0

    wait_for("the approver policy", stamped)
    wait_for("the approver guard", guarded)
    yield ns
    for doc in policies:
        kube.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], check=False)


def gated_world(kube: Kube, world: World, namespace: str, **prod_spec: Any) -> None:
    objects = world.objects(namespace)
    objects[-1]["spec"].update(prod_spec)
    kube.apply(*objects)


def checks_message(kube: Kube, namespace: str, name: str, check: str) -> str:
    records = status_of(kube, namespace, name).get("checks") or []
    return " ".join(c.get("message", "") for c in records if c["name"] == check)


def test_four_eyes_with_distinct_users(
    kube: Kube, operator: OperatorProcess, fresh_world: World, policed: str, plugin_path: str
) -> None:
    ns = policed
    approval_spec = {"required": 1, "users": ["bob"], "groups": [APPROVERS]}
    gated_world(kube, fresh_world, ns, approval=approval_spec)
    create_as(kube, "alice", promotion(ns, "release", NEW_VERSION))

    def waiting_with(fragment: str) -> bool:
        status = status_of(kube, ns, "release")
        ready = {c["type"]: c for c in status.get("conditions") or ()}.get("Verified", {})
        return (
            status.get("phase") == "Verifying"
            and ready.get("reason") == "AwaitingApproval"
            and fragment in checks_message(kube, ns, "release", "Approval")
        )

    wait_for("the Promotion to await approval", lambda: waiting_with("0 of 1 approval"),
             logs=operator.logs)  # fmt: skip

    # the requester approving themselves with `kubectl promote approve`: recorded, never
    # counted, and the plugin prints what the Approval check says of it
    own = run_plugin(kube, plugin_path, ns, "approve", "release", *impersonated("alice", APPROVERS))
    assert own.returncode == 0, own.stdout + own.stderr
    assert f"approved release generation 1 ({NEW_VERSION}) as alice" in own.stdout
    assert "does not count: 0 of 1 approval; not counted: alice (the requester cannot " \
        "approve their own Promotion)" in " ".join(own.stdout.split())  # fmt: skip
    assert waiting_with("alice (the requester cannot approve their own Promotion)")

    # an outsider: not in approval.users or approval.groups
    create_as(kube, "mallory", approval(ns, "release"), "developers")
    wait_for("the outsider to be refused", logs=operator.logs, probe=lambda: waiting_with(
        "mallory (not in approval.users or approval.groups)"))  # fmt: skip

    # an approver spoofing another user: refused by the API server, nothing stored
    spoof = approval(ns, "release", approver={"username": "bob", "groups": [APPROVERS]})
    refused = as_user(kube, "mallory", "create", "-f", "-", groups=("developers",),
                      input_text=json.dumps(spoof))  # fmt: skip
    assert refused.returncode != 0
    assert "is the user who creates it (mallory)" in refused.stderr
    assert 'not "bob"' in refused.stderr
    # ... and the plugin's client (impersonating as `--as` does) relays the policy's words
    groups = ("developers", "system:masters")
    as_mallory = KubeFlags(str(kube.kubeconfig), namespace=ns, as_user="mallory", as_groups=groups)
    with pytest.raises(KubeError) as relayed:
        PluginKube(as_mallory).create_approval(spoof)
    assert str(relayed.value).startswith("the API server refused the approval: ")
    assert "is the user who creates it (mallory)" in str(relayed.value)
    # ... nor by rewriting an approval that exists (the spec is immutable)
    mine = create_as(kube, "mallory", approval(ns, "release"), "developers")
    rewrite = {"spec": {"approver": {"username": "bob", "groups": [APPROVERS]}}}
    edited = as_user(kube, "mallory", "patch", "promotionapproval", mine, "-n", ns,
                     "--type=merge", "-p", json.dumps(rewrite))  # fmt: skip
    assert edited.returncode != 0
    assert "an approval cannot be changed" in edited.stderr
    assert status_of(kube, ns, "release")["phase"] == "Verifying"
    assert len(fresh_world.remote_messages()) == 1  # nothing pushed yet

    # `kubectl promote status` shows the pending approval and who did not count
    shown = run_plugin(kube, plugin_path, ns, "status", "-o", "json", *impersonated("bob"))
    assert shown.returncode == 0, shown.stderr
    prod = next(row for row in json.loads(shown.stdout) if row["environment"] == "tvhub-prod")
    assert prod["inFlight"] == f"release -> {NEW_VERSION} (Verifying)"
    # (both were created within one second of each other, the API server's clock resolution,
    # so their order is the order of their generated names)
    assert prod["approvals"].startswith("0 of 1 approval; not counted: ")
    assert "alice (the requester cannot approve their own Promotion)" in prod["approvals"]
    assert "mallory (not in approval.users or approval.groups)" in prod["approvals"]

    # a valid approver (by group) with `kubectl promote approve`: it counts, and promotes
    args = ("approve", "release", "-c", "checked dev", *impersonated("carol", APPROVERS))
    approved = run_plugin(kube, plugin_path, ns, *args)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "Approval: counts: 1 of 1 approval (carol)" in approved.stdout
    status = wait_phase(kube, operator, ns, "release", "Succeeded")
    late = run_plugin(kube, plugin_path, ns, "approve", "release", *impersonated("bob"))
    assert late.returncode == 1
    assert "promotions/release is finished (Succeeded: Promoted)" in late.stderr

    assert status["approvedBy"] == ["carol"]
    assert status["requestedBy"] == "alice"
    trailers = trailer_block(fresh_world.remote_messages()[0])
    assert ("Requested-By", "alice") in trailers
    assert [v for k, v in trailers if k == "Approved-By"] == ["carol"]
    stored = kube.kubectl("get", "promotionapprovals", "-n", ns, "-o", "json").stdout
    approvers = {i["spec"]["approver"]["username"] for i in json.loads(stored)["items"]}
    assert approvers == {"alice", "mallory", "carol"}


def test_a_closed_window_waits_then_promotes_when_it_opens(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    gated_world(kube, fresh_world, ns)
    # closed for a few seconds from now: long enough to be seen waiting on a loaded machine
    until = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=15)
    deploy_freeze = {"kind": "deny", "name": "deploy-freeze", "until": timestamp(until)}
    patch = json.dumps({"spec": {"windows": [deploy_freeze]}})
    kube.kubectl("patch", "environment", "tvhub-prod", "-n", ns, "--type=merge", "-p", patch)
    kube.apply(promotion(ns, "after-freeze", NEW_VERSION))

    waiting = wait_for(
        "the Promotion to wait for the window",
        lambda: (
            (s := status_of(kube, ns, "after-freeze")).get("phase") == "Verifying"
            and "WindowClosed" in json.dumps(s.get("conditions"))
            and s
        ),
        logs=operator.logs,
    )
    assert f"deny window 'deploy-freeze'; opens at {timestamp(until)}" in waiting["message"]
    assert len(fresh_world.remote_messages()) == 1

    status = wait_phase(kube, operator, ns, "after-freeze", "Succeeded", timeout=60)

    assert parse_time(status["finishedAt"]) >= until  # pushed only once the window opened
    window = next(c for c in status["checks"] if c["name"] == "PromotionWindow")
    assert window["status"] == "Passed"
    assert len(fresh_world.remote_messages()) == 2


def test_a_policy_freeze_stops_the_line_until_it_is_lifted(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    name = f"freeze-{ns}"
    policy = {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "PromotionPolicy",
        "metadata": {"name": name},
        # the test cluster is shared: this freeze covers this test's namespace only
        "spec": {"namespaces": [ns], "freeze": True, "message": "incident 42"},
    }
    kube.apply(policy)
    try:
        gated_world(kube, fresh_world, ns)
        kube.apply(promotion(ns, "frozen", NEW_VERSION, overrideWindow=True))
        frozen = wait_for(
            "the Promotion to wait for the freeze",
            lambda: (
                "PromotionsFrozen" in json.dumps(status_of(kube, ns, "frozen"))
                and status_of(kube, ns, "frozen")
            ),
            logs=operator.logs,
        )
        assert f"frozen by PromotionPolicy {name}: incident 42" in frozen["message"]
        assert len(fresh_world.remote_messages()) == 1

        # the one command the platform team runs to lift it
        patch = json.dumps({"spec": {"freeze": False}})
        kube.kubectl("patch", "promotionpolicy", name, "--type=merge", "-p", patch)
        status = wait_phase(kube, operator, ns, "frozen", "Succeeded")
    finally:
        kube.kubectl("delete", "promotionpolicy", name, check=False)
    assert len(fresh_world.remote_messages()) == 2
    assert "Window-Override" not in fresh_world.remote_messages()[0]  # no window was closed
    assert status["phase"] == "Succeeded"


def test_an_argocd_sync_window_holds_the_push_until_it_is_lifted(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    # Argo CD's own AppProject CRD (from its module source, as the Argo CD tier installs it)
    crd = argocd_module_dir() / "manifests" / "crds" / "appproject-crd.yaml"
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    wait_for("the AppProject CRD", lambda: kube.kubectl(
        "wait", "--for=condition=Established", "--timeout=5s", "crd/appprojects.argoproj.io",
        check=False).returncode == 0)  # fmt: skip
    ns = e2e_namespace
    app = application("tvhub-prod", ns, fresh_world.git_url, "k8s/overlays/prod")
    app["spec"]["project"] = "tv"
    project = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "tv", "namespace": ns},
        "spec": {
            "sourceRepos": ["*"],
            "destinations": [{"server": "*", "namespace": "*"}],
            # no automated sync of prod apps, all day: a push now would sit unsynced
            "syncWindows": [
                {"kind": "deny", "schedule": "0 0 * * *", "duration": "24h",
                 "applications": ["*-prod"], "timeZone": "Europe/Berlin"},
            ],
        },
    }  # fmt: skip
    kube.apply(app, project)
    health = {"argocd": {"application": "tvhub-prod", "namespace": ns, "syncWindows": True}}
    gated_world(kube, fresh_world, ns, health=health)
    kube.apply(promotion(ns, "synced-later", NEW_VERSION))

    held = wait_for(
        "the Promotion to wait for the sync window",
        lambda: "WindowClosed" in json.dumps(s := status_of(kube, ns, "synced-later")) and s,
        logs=operator.logs,
    )
    assert (
        "Argo CD AppProject tv: deny sync window '0 0 * * *' (Europe/Berlin, 24h)"
        in (held["message"])
    )
    assert len(fresh_world.remote_messages()) == 1

    lifted = json.dumps({"spec": {"syncWindows": []}})
    kube.kubectl("patch", "appproject", "tv", "-n", ns, "--type=merge", "-p", lifted)
    wait_phase(kube, operator, ns, "synced-later", "Succeeded")
    assert len(fresh_world.remote_messages()) == 2
