"""The rollback guard's rules, pure: what an overlay's promotion history says about a version.

A version is *older* than the one an Environment runs when its date (in date-tagged
versions, `v<YYYYMMDD>-...`) is earlier, or when the Environment has already moved away
from it according to the operator's commits on the overlay. A re-created Promotion (Argo
CD re-syncing a pruned file, a restore from backup, a copy-paste) is then refused instead
of silently moving production back.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from promotion_operator.domain.gitrules import trailer_block
from promotion_operator.domain.planning import Trailer

_DATE_TAG = re.compile(r"^v?(\d{4})(\d{2})(\d{2})(?:[^0-9]|$)")
# The subject `commit_message` writes: "promote <environment>: <old> -> <new>"
_SUBJECT = re.compile(r"^promote (?P<env>\S+): (?P<old>\S+) -> (?P<new>\S+)$")


@dataclass(frozen=True)
class PromotionCommit:
    """One operator commit on an overlay: which Promotion moved it from what to what."""

    sha: str
    when: str  # committer date, ISO 8601
    environment: str
    old: str | None  # None when the overlay pinned no single version before
    new: str
    promotion: str  # namespace/name
    requested_by: str


def parse_promotion_commit(sha: str, when: str, message: str) -> PromotionCommit | None:
    """The promotion a commit records, or None for a commit the operator did not write.

    Only a commit whose trailer block names a Promotion and its UID counts (a reason or a
    human's subject cannot make one: user text lives outside the trailer block).
    """
    trailers = {key.lower(): value for key, value in trailer_block(message)}
    promotion = trailers.get(Trailer.PROMOTION.lower())
    if not promotion or not trailers.get(Trailer.UID.lower()):
        return None
    match = _SUBJECT.match(message.split("\n", 1)[0].strip())
    if match is None:
        return None
    old = match["old"]
    return PromotionCommit(
        sha=sha,
        when=when,
        environment=match["env"],
        old=None if old == "(none)" else old,
        new=match["new"],
        promotion=promotion,
        requested_by=trailers.get(Trailer.REQUESTED_BY.lower(), "unknown"),
    )


def version_date(version: str) -> dt.date | None:
    """The date of a date-tagged version (`v20250819-f3b8541` -> 2025-08-19), else None."""
    match = _DATE_TAG.match(version)
    if match is None:
        return None
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


@dataclass(frozen=True)
class Rollback:
    """Why moving to a version is a rollback, and the earlier promotion that vouches for it."""

    why: str
    vouch: PromotionCommit | None  # the newest commit that moved the overlay *to* the version


def rollback_of(
    target: str, current: str | None, history: Sequence[PromotionCommit]
) -> Rollback | None:
    """Whether moving from `current` to `target` is a rollback; None when it is not.

    `history` is the overlay's promotion commits, newest first (those that moved it to or
    from `target` are all that matter). The same version is no rollback (there is nothing
    to move). Linear in the history.
    """
    if target == current:
        return None
    vouch = next((c for c in history if c.new == target), None)
    target_date = version_date(target)
    current_date = version_date(current) if current else None
    if target_date and current_date and target_date < current_date:
        return Rollback(
            f"{target} is dated {target_date.isoformat()}, before {current} "
            f"({current_date.isoformat()})",
            vouch,
        )
    left = vouch or next((c for c in history if c.old == target), None)
    if left is not None:
        return Rollback(f"this Environment already moved away from {target}", vouch)
    return None
