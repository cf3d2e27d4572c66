"""The plugin's view of the gates: the approval it creates, what the Approval check says
of it, and the APPROVALS and WINDOW columns of `kubectl promote status`."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from promotion_operator.plugin.approve import _refusal
from promotion_operator.plugin.render import console, status_table
from promotion_operator.plugin.views import (
    approval_body,
    approval_counted,
    approvals_view,
    status_rows,
    window_view,
)

NOW = dt.datetime(2025, 8, 20, 12, 0, 0, tzinfo=dt.UTC)
HINT = "; an allowed approver other than the requester runs `kubectl promote approve r -n t`"


def env(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "prod", "namespace": "team"}, "spec": spec, "status": {}}


def flying(*checks: dict[str, Any], phase: str = "Verifying", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "r", "namespace": "team", "generation": 3},
        "spec": {"environment": "prod", "version": "v2"},
        "status": {"phase": phase, "observedGeneration": 3, "checks": list(checks), **status},
    }


def approval_check(message: str, status: str = "Waiting") -> dict[str, Any]:
    return {"name": "Approval", "status": status, "message": message}


def window_check(message: str, status: str = "Waiting") -> dict[str, Any]:
    return {"name": "PromotionWindow", "status": status, "message": message}


def test_the_approval_names_generation_and_version_and_leaves_the_approver_out() -> None:
    body = approval_body(flying(), "checked dev")
    assert body["kind"] == "PromotionApproval"
    assert body["metadata"] == {"generateName": "r-", "namespace": "team"}
    assert body["spec"] == {"promotion": "r", "generation": 3, "version": "v2",
                            "comment": "checked dev"}  # fmt: skip
    assert "comment" not in approval_body(flying(), None)["spec"]


def test_finished_promotions_and_dry_runs_are_not_approved() -> None:
    assert _refusal(flying()) is None
    done = flying(phase="Succeeded", conditions=[{"type": "Ready", "reason": "Promoted"}])
    assert _refusal(done) == "is finished (Succeeded: Promoted)"
    assert "dry run" in str(_refusal({**flying(), "spec": {"dryRun": True}}))
    # a finished status of an earlier generation: the new generation may be approved
    assert _refusal({**done, "metadata": {**done["metadata"], "generation": 4}}) is None


def test_the_check_says_whether_an_approval_counts() -> None:
    waiting = flying(approval_check("0 of 1 approval" + HINT))
    assert approval_counted(waiting, "bob") is None  # not seen yet
    own = flying(approval_check(
        "0 of 1 approval; not counted: alice (the requester cannot approve their own "
        "Promotion); mallory (not in approval.users or approval.groups)" + HINT))  # fmt: skip
    said = approval_counted(own, "alice")
    assert said == (
        "does not count: 0 of 1 approval; not counted: alice (the requester cannot approve "
        "their own Promotion); mallory (not in approval.users or approval.groups)"
    )
    assert approval_counted(own, "mallory") is not None
    assert approval_counted(own, "ali") is None  # a prefix of a name is not the name
    counted = flying(approval_check("1 of 2 approvals (carol)" + HINT), approvedBy=["carol"])
    assert approval_counted(counted, "carol") == "counts: 1 of 2 approvals (carol)"


def test_status_shows_pending_approvals_and_the_next_window() -> None:
    gated = env(approval={"required": 2, "users": ["bob"]})
    assert approvals_view(env(), None) is None
    assert approvals_view(gated, None) == "2 required"
    assert approvals_view(gated, flying(approvedBy=["bob"])) == "1 of 2 (bob)"
    message = "1 of 2 approvals (bob); not counted: alice (the requester cannot approve"
    assert approvals_view(gated, flying(approval_check(message + HINT))) == message

    closed = window_check(
        "promotion window closed by Environment prod: deny window 'freeze'; opens at "
        "2025-08-20T13:00:00Z (spec.overrideWindow: true promotes anyway, with the approvals "
        "required)"
    )
    shown = window_view(env(), flying(closed), now=NOW)
    assert shown == "opens at 2025-08-20T13:00:00Z (Environment prod: deny window 'freeze')"
    frozen = window_check("promotions are frozen by PromotionPolicy stop: incident 42 (the …)")
    assert window_view(env(), flying(frozen), now=NOW) == "frozen by PromotionPolicy stop"
    assert window_view(env(), flying(window_check("open", "Passed")), now=NOW) == "open"
    assert window_view(env(), None, now=NOW) is None


def test_without_a_promotion_in_flight_the_environment_windows_are_evaluated() -> None:
    until = "2025-08-20T12:30:00Z"
    frozen = env(windows=[{"kind": "deny", "name": "release-freeze", "until": until}])
    assert window_view(frozen, None, now=NOW) == (
        f"opens at {until} (Environment prod: deny window 'release-freeze')"
    )
    assert window_view(frozen, None, now=NOW + dt.timedelta(hours=1)) == "open"


def test_the_gate_columns_appear_only_when_an_environment_has_gates() -> None:
    plain = status_rows([env()], [], now=NOW)
    out = io.StringIO()
    console(file=out).print(status_table(plain, namespaces=False))
    assert "APPROVALS" not in out.getvalue()
    gated = status_rows([env(approval={"required": 1, "groups": ["g"]})], [], now=NOW)
    assert gated[0].as_json()["approvals"] == "1 required"
    out = io.StringIO()
    console(file=out).print(status_table(gated, namespaces=False))
    assert "APPROVALS" in out.getvalue()
    assert "1 required" in out.getvalue()
