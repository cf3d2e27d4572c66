"""Kubernetes conditions as a small pure module: upsert by type, transition time on change."""

from __future__ import annotations

from collections.abc import Sequence

from promotion_operator.domain.models import Condition


def set_condition(
    conditions: Sequence[Condition] | None,
    *,
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> list[Condition]:
    """Return `conditions` with the one of `type_` replaced or added.

    `lastTransitionTime` moves only when the status value changes, as the Kubernetes API
    conventions require; reason, message and observedGeneration always follow the input.
    """
    value = "Unknown" if status is None else ("True" if status else "False")
    result: list[Condition] = []
    found = False
    for condition in conditions or ():
        if condition.type != type_:
            result.append(condition)
            continue
        found = True
        changed = condition.status != value
        result.append(
            Condition(
                type=type_,
                status=value,
                reason=reason,
                message=message,
                last_transition_time=now if changed else condition.last_transition_time,
                observed_generation=generation,
            )
        )
    if not found:
        result.append(
            Condition(
                type=type_,
                status=value,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    return result


def find_condition(conditions: Sequence[Condition] | None, type_: str) -> Condition | None:
    """Return the condition of `type_`, or None."""
    return next((c for c in conditions or () if c.type == type_), None)
