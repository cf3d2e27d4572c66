"""Conditions: upsert by type, lastTransitionTime only on a status change, observedGeneration."""

from __future__ import annotations

import pytest

from promotion_operator.domain.conditions import find_condition, set_condition
from promotion_operator.domain.models import Condition

T0 = "2025-01-01T10:00:00Z"
T1 = "2025-01-01T10:05:00Z"


def _ready(
    *,
    status: bool | None,
    now: str,
    conditions: list[Condition] | None = None,
    reason: str = "Observed",
    message: str = "",
    generation: int | None = 1,
) -> list[Condition]:
    return set_condition(
        conditions,
        type_="Ready",
        status=status,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )


@pytest.mark.parametrize(("status", "wire"), [(True, "True"), (False, "False"), (None, "Unknown")])
def test_adds_a_missing_condition(status: bool | None, wire: str) -> None:
    [condition] = _ready(status=status, now=T0, reason="Pending", message="waiting", generation=4)
    assert condition == Condition(
        type="Ready",
        status=wire,
        reason="Pending",
        message="waiting",
        last_transition_time=T0,
        observed_generation=4,
    )


@pytest.mark.parametrize("empty", [None, []])
def test_no_conditions_yet(empty: list[Condition] | None) -> None:
    assert [c.type for c in _ready(status=True, now=T0, conditions=empty)] == ["Ready"]


def test_same_status_keeps_transition_time_but_follows_reason_message_generation() -> None:
    before = _ready(status=False, now=T0, reason="Pending", message="waiting", generation=1)
    [after] = _ready(
        status=False,
        now=T1,
        conditions=before,
        reason="Verifying",
        message="checking",
        generation=2,
    )
    assert after.last_transition_time == T0
    assert (after.status, after.reason, after.message, after.observed_generation) == (
        "False",
        "Verifying",
        "checking",
        2,
    )


@pytest.mark.parametrize(
    ("first", "second"), [(False, True), (True, False), (None, True), (True, None)]
)
def test_status_change_moves_transition_time(first: bool | None, second: bool | None) -> None:
    before = _ready(status=first, now=T0)
    [after] = _ready(status=second, now=T1, conditions=before)
    assert after.last_transition_time == T1


def test_upsert_replaces_in_place_and_keeps_other_types() -> None:
    conditions = set_condition(
        None, type_="Verified", status=True, reason="Ok", message="", now=T0, generation=1
    )
    conditions = _ready(status=False, now=T0, conditions=conditions)
    conditions = set_condition(
        conditions, type_="Stalled", status=False, reason="No", message="", now=T0, generation=1
    )
    updated = _ready(status=True, now=T1, conditions=conditions, reason="Succeeded")
    assert [c.type for c in updated] == ["Verified", "Ready", "Stalled"]
    assert updated[0] == conditions[0]
    assert updated[2] == conditions[2]
    assert (updated[1].status, updated[1].reason, updated[1].last_transition_time) == (
        "True",
        "Succeeded",
        T1,
    )


def test_does_not_mutate_its_input() -> None:
    before = _ready(status=False, now=T0, reason="Pending")
    snapshot = [c.model_copy(deep=True) for c in before]
    _ready(status=True, now=T1, conditions=before, reason="Succeeded")
    assert before == snapshot


def test_observed_generation_can_be_cleared() -> None:
    before = _ready(status=True, now=T0, generation=3)
    [after] = _ready(status=True, now=T1, conditions=before, generation=None)
    assert after.observed_generation is None


def test_find_condition() -> None:
    conditions = set_condition(
        None, type_="Verified", status=True, reason="Ok", message="", now=T0, generation=1
    )
    conditions = _ready(status=False, now=T1, conditions=conditions, reason="Pending")
    ready = find_condition(conditions, "Ready")
    assert ready is not None
    assert (ready.type, ready.reason) == ("Ready", "Pending")
    verified = find_condition(conditions, "Verified")
    assert verified is not None
    assert verified.reason == "Ok"
    assert find_condition(conditions, "Stalled") is None
    assert find_condition(None, "Ready") is None
    assert find_condition([], "Ready") is None
