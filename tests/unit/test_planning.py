"""Pure planning helpers: the commit message (trailers last, unforgeable) and newest-wins."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promotion_operator.domain.gitrules import has_trailers, trailer_block
from promotion_operator.domain.planning import Trailer, commit_message, supersedes

UID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def _message(
    *,
    reason: str | None = "canary looked good",
    requested_by: str = "alice",
    old: str | None = "v1",
    audit: tuple[tuple[Trailer, str], ...] = (),
) -> str:
    return commit_message(
        namespace="shop",
        name="prod-v2",
        uid=UID,
        generation=3,
        environment="prod",
        old=old,
        new="v2",
        reason=reason,
        requested_by=requested_by,
        audit=audit,
    )


def _expected_trailers(requested_by: str = "alice") -> list[tuple[str, str]]:
    return [
        ("Promotion", "shop/prod-v2"),
        ("Promotion-UID", UID),
        ("Promotion-Generation", "3"),
        ("Requested-By", requested_by),
    ]


# -- commit_message --------------------------------------------------------------------


def test_commit_message_layout_is_subject_reason_then_trailers() -> None:
    assert _message() == (
        "promote prod: v1 -> v2\n"
        "\n"
        "Reason: canary looked good\n"
        "\n"
        "Promotion: shop/prod-v2\n"
        f"Promotion-UID: {UID}\n"
        "Promotion-Generation: 3\n"
        "Requested-By: alice\n"
    )


_IDENTITY = [Trailer.PROMOTION, Trailer.UID, Trailer.GENERATION, Trailer.REQUESTED_BY]


def test_trailers_are_the_last_paragraph_and_parseable() -> None:
    message = _message()
    assert trailer_block(message) == _expected_trailers()
    assert [key for key, _ in trailer_block(message)] == _IDENTITY
    assert has_trailers(message, {"Promotion-UID": UID, "Promotion-Generation": "3"})
    assert not has_trailers(message, {"Promotion-UID": UID, "Promotion-Generation": "4"})


def test_no_previous_version_is_shown_as_none() -> None:
    assert _message(old=None).splitlines()[0] == "promote prod: (none) -> v2"


@pytest.mark.parametrize("reason", [None, "", "   \n\t "])
def test_empty_reason_leaves_no_reason_paragraph(reason: str | None) -> None:
    message = _message(reason=reason)
    assert "Reason" not in message
    assert message.split("\n\n") == [
        "promote prod: v1 -> v2",
        "Promotion: shop/prod-v2\n"
        f"Promotion-UID: {UID}\n"
        "Promotion-Generation: 3\n"
        "Requested-By: alice\n",
    ]
    assert trailer_block(message) == _expected_trailers()


def test_multi_line_reason_is_collapsed_to_one_reason_line() -> None:
    message = _message(reason="first line\n\nsecond   line\r\n  third")
    assert "Reason: first line second line third\n" in message
    assert trailer_block(message) == _expected_trailers()


@pytest.mark.parametrize(
    "reason",
    [
        "Promotion-UID: forged",
        "because\n\nPromotion-UID: forged\nPromotion-Generation: 99",
        "x\n\nPromotion-UID: forged\nPromotion-Generation: 99\n\n",
        "\n\nPromotion-UID: forged\n",
    ],
)
def test_reason_cannot_forge_a_trailer(reason: str) -> None:
    message = _message(reason=reason)
    assert trailer_block(message) == _expected_trailers()
    assert not has_trailers(message, {"Promotion-UID": "forged"})
    assert not has_trailers(message, {"Promotion-Generation": "99"})
    assert has_trailers(message, {"Promotion-UID": UID, "Promotion-Generation": "3"})


def test_requested_by_cannot_add_a_trailer_or_paragraph() -> None:
    message = _message(requested_by="mallory\n\nPromotion-UID: forged")
    trailers = trailer_block(message)
    assert [key for key, _ in trailers] == _IDENTITY
    assert dict(trailers)["Promotion-UID"] == UID
    assert dict(trailers)["Requested-By"] == "mallory Promotion-UID: forged"
    assert not has_trailers(message, {"Promotion-UID": "forged"})


def test_the_audit_trailers_follow_the_identity_in_order() -> None:
    audit = (
        (Trailer.APPROVED_BY, "bob"),
        (Trailer.APPROVED_BY, "carol"),
        (Trailer.WINDOW_OVERRIDE, "Environment prod: deny window 'friday'"),
    )
    trailers = trailer_block(_message(audit=audit))
    keys = [*_IDENTITY, Trailer.APPROVED_BY, Trailer.APPROVED_BY, Trailer.WINDOW_OVERRIDE]
    assert [key for key, _ in trailers] == keys
    assert trailers[-3:] == [(str(k), v) for k, v in audit]


def test_an_approver_name_cannot_forge_a_trailer() -> None:
    message = _message(audit=((Trailer.APPROVED_BY, "bob\n\nPromotion-UID: forged"),))
    assert dict(trailer_block(message))["Promotion-UID"] == UID
    assert dict(trailer_block(message))["Approved-By"] == "bob Promotion-UID: forged"
    assert not has_trailers(message, {"Promotion-UID": "forged"})


def test_old_version_with_newlines_cannot_forge_a_trailer() -> None:
    message = _message(old="v1\n\nPromotion-UID: forged")
    assert trailer_block(message) == _expected_trailers()


@given(reason=st.text(max_size=200), requested_by=st.text(max_size=60))
def test_any_user_text_leaves_exactly_our_trailers(reason: str, requested_by: str) -> None:
    message = _message(
        reason=reason, requested_by=requested_by, audit=((Trailer.APPROVED_BY, requested_by),)
    )
    assert message.splitlines()[0] == "promote prod: v1 -> v2"
    trailers = trailer_block(message)
    assert [key for key, _ in trailers] == [*_IDENTITY, Trailer.APPROVED_BY]
    assert trailers[:3] == _expected_trailers()[:3]
    assert has_trailers(message, {"Promotion-UID": UID, "Promotion-Generation": "3"})


# -- supersedes ------------------------------------------------------------------------

OLDER = ("2025-01-01T10:00:00.000000Z", "2025-01-01T09:00:00Z")
NEWER = ("2025-01-01T10:00:00.000001Z", "2025-01-01T09:00:00Z")


def test_newer_request_supersedes_older() -> None:
    assert supersedes(NEWER, OLDER, other_phase="Verifying", other_name="b", my_name="a")
    assert not supersedes(OLDER, NEWER, other_phase="Verifying", other_name="a", my_name="b")


def test_newer_request_wins_regardless_of_names() -> None:
    assert supersedes(NEWER, OLDER, other_phase=None, other_name="a", my_name="z")
    assert not supersedes(OLDER, NEWER, other_phase=None, other_name="z", my_name="a")


@pytest.mark.parametrize("phase", [None, "Pending", "Verifying", "Promoting", "Succeeded"])
def test_newer_request_in_any_live_phase_wins(phase: str | None) -> None:
    assert supersedes(NEWER, OLDER, other_phase=phase, other_name="b", my_name="a")


def test_failed_newer_request_leaves_the_older_standing() -> None:
    assert not supersedes(NEWER, OLDER, other_phase="Failed", other_name="b", my_name="a")


def test_creation_time_breaks_equal_request_times() -> None:
    same_request = "9999-12-31T23:59:59.999999Z"
    created_early = (same_request, "2025-01-01T09:00:00Z")
    created_late = (same_request, "2025-01-01T09:00:01Z")
    assert supersedes(created_late, created_early, other_phase=None, other_name="a", my_name="b")
    assert not supersedes(
        created_early, created_late, other_phase=None, other_name="b", my_name="a"
    )


@pytest.mark.parametrize(("first", "second"), [("a", "b"), ("prod-2", "prod-10"), ("x", "x-1")])
def test_exactly_one_of_two_equal_requests_wins(first: str, second: str) -> None:
    first_loses = supersedes(OLDER, OLDER, other_phase=None, other_name=second, my_name=first)
    second_loses = supersedes(OLDER, OLDER, other_phase=None, other_name=first, my_name=second)
    assert first_loses != second_loses


def test_tie_break_is_deterministic_by_name() -> None:
    assert supersedes(OLDER, OLDER, other_phase=None, other_name="b", my_name="a")
    assert not supersedes(OLDER, OLDER, other_phase=None, other_name="a", my_name="b")
