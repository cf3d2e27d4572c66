"""Four eyes, pure: which approvals of a Promotion count, and why the others do not.

An approval counts when it names this generation and version, was created after the
Promotion (the API server's clock, so an approval of a deleted namesake never counts),
carries the approver the admission policy stamped, is not by the requester, and its
approver is one of the allowed users or in one of the allowed groups. Each person counts
once, however many approvals they create.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from promotion_operator.domain.models import ApprovalPolicy, PromotionApprovalSpec
from promotion_operator.domain.times import parse_time


@dataclass(frozen=True)
class Tally:
    """The approvals of one generation, sorted."""

    counted: tuple[str, ...]  # distinct approvers, in the order they approved
    refused: tuple[str, ...]  # "<who> (<why it does not count>)"
    stale: int  # approvals of another generation or version

    def describe(self, required: int) -> str:
        """One line for status: how many of how many, who, and what did not count."""
        text = f"{len(self.counted)} of {required} approval{'s' if required != 1 else ''}"
        if self.counted:
            text += f" ({', '.join(self.counted)})"
        if self.refused:
            text += f"; not counted: {'; '.join(self.refused)}"
        if self.stale:
            text += f"; {self.stale} for an earlier generation or another version"
        return text


def tally_approvals(
    policy: ApprovalPolicy,
    approvals: Sequence[Mapping[str, Any]],
    *,
    requesters: Collection[str],
    generation: int,
    version: str,
    created_at: str,
) -> Tally:
    """Sort `approvals` (objects as the API server stores them) into counted and refused."""
    born = parse_time(created_at) if created_at else None
    counted: list[str] = []
    refused: list[str] = []
    stale = 0
    # creationTimestamp has whole seconds: the name breaks ties, so the order is stable
    for obj in sorted(approvals, key=lambda obj: (_created(obj), _name(obj))):
        meta = obj.get("metadata") or {}
        try:
            spec = PromotionApprovalSpec.model_validate(obj.get("spec") or {})
        except ValidationError:
            refused.append(f"{meta.get('name', '?')} (not a valid PromotionApproval)")
            continue
        if spec.generation != generation or spec.version != version:
            stale += 1
            continue
        if born is not None and (not meta.get("creationTimestamp") or _created(obj) < born):
            stale += 1  # made for an earlier Promotion of the same name
            continue
        if spec.approver is None:
            refused.append(
                f"{meta.get('name', '?')} (no approver stamped: the chart's approval "
                "admission policy is not installed)"
            )
            continue
        who = spec.approver.username
        if who in counted:
            continue
        if who in requesters:
            refused.append(f"{who} (the requester cannot approve their own Promotion)")
        elif not policy.allows(who, list(spec.approver.groups or ())):
            refused.append(f"{who} (not in approval.users or approval.groups)")
        else:
            counted.append(who)
    return Tally(tuple(counted), tuple(dict.fromkeys(refused)), stale)


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _created(obj: Mapping[str, Any]) -> dt.datetime:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp") or ""
    return parse_time(stamp) if stamp else parse_time("1970-01-01T00:00:00Z")
