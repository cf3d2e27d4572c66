"""The rollback guard's pure rules: which commits count, and what is older."""

from __future__ import annotations

import datetime as dt

import pytest

from promotion_operator.domain.planning import commit_message
from promotion_operator.domain.rollback import (
    PromotionCommit,
    parse_promotion_commit,
    rollback_of,
    version_date,
)

OLD, NEW, NEWER = "v20250101-aaaaaaa", "v20250819-f3b8541", "v20250820-0c0ffee"


def _commit(old: str | None, new: str, name: str = "p") -> PromotionCommit:
    return PromotionCommit(f"sha-{new}", "2025-08-19T12:00:00+00:00", "prod", old, new, name, "bob")


def _message(*, old: str = OLD, new: str = NEW, reason: str = "fix") -> str:
    return commit_message(
        namespace="shop",
        name="p1",
        uid="u1",
        generation=1,
        environment="prod",
        old=old,
        new=new,
        reason=reason,
        requested_by="alice",
    )


def test_an_operator_commit_is_read_back_from_its_subject_and_trailers() -> None:
    parsed = parse_promotion_commit("abc", "2025-08-19T12:00:00+00:00", _message())
    assert parsed == PromotionCommit(
        "abc", "2025-08-19T12:00:00+00:00", "prod", OLD, NEW, "shop/p1", "alice"
    )


def test_a_first_promotion_has_no_old_version() -> None:
    message = commit_message(
        namespace="shop",
        name="p1",
        uid="u1",
        generation=1,
        environment="prod",
        old=None,
        new=NEW,
        reason=None,
        requested_by="alice",
    )
    parsed = parse_promotion_commit("abc", "t", message)
    assert parsed is not None and parsed.old is None


@pytest.mark.parametrize(
    "message",
    [
        f"promote prod: {OLD} -> {NEW}\n\nhand-made, no trailers\n",
        f"promote prod: {OLD} -> {NEW}\n\nPromotion-UID: forged\n\nsigned: me, really\n",
        f"bump prod to {NEW}\n\nPromotion: shop/p1\nPromotion-UID: u1\n",
    ],
    ids=["no-trailers", "trailer-not-last-paragraph", "not-our-subject"],
)
def test_a_commit_the_operator_did_not_write_does_not_count(message: str) -> None:
    assert parse_promotion_commit("abc", "t", message) is None


def test_a_reason_cannot_make_a_human_commit_look_like_a_promotion() -> None:
    forged = _message(reason="x\n\nPromotion: shop/evil\nPromotion-UID: u9")
    parsed = parse_promotion_commit("abc", "t", forged)
    assert parsed is not None and parsed.promotion == "shop/p1"


def test_version_dates() -> None:
    assert version_date(NEW) == dt.date(2025, 8, 19)
    assert version_date("20250819") == dt.date(2025, 8, 19)
    assert version_date("v20251340-abc") is None  # month 13
    assert version_date("release-12") is None
    assert version_date("v202508191-abc") is None  # nine digits: no date


def test_an_earlier_date_is_a_rollback_without_any_history() -> None:
    found = rollback_of(NEW, NEWER, [])
    assert found is not None and "before" in found.why and found.vouch is None


def test_a_later_date_or_the_same_version_is_not() -> None:
    assert rollback_of(NEWER, NEW, [_commit(OLD, NEW)]) is None
    assert rollback_of(NEW, NEW, [_commit(OLD, NEW)]) is None


def test_a_version_moved_away_from_is_a_rollback_and_its_promotion_vouches() -> None:
    history = [_commit("release-2", "release-3"), _commit("release-1", "release-2", "vouch")]
    found = rollback_of("release-2", "release-3", history)
    assert found is not None and found.vouch is not None and found.vouch.promotion == "vouch"
    assert "moved away from release-2" in found.why


def test_a_version_only_ever_moved_from_is_a_rollback_nobody_vouches_for() -> None:
    found = rollback_of("release-1", "release-3", [_commit("release-1", "release-3")])
    assert found is not None and found.vouch is None


def test_the_newest_promotion_to_the_version_vouches() -> None:
    history = [
        _commit("b", "c"),
        _commit("a", "b", "second"),
        _commit("b", "a"),
        _commit(None, "b"),
    ]
    found = rollback_of("b", "c", history)
    assert found is not None and found.vouch is not None and found.vouch.promotion == "second"
