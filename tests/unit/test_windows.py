"""Promotion windows: the arithmetic of domain/windows.py, time zones and DST included."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from promotion_operator.domain.models import Window
from promotion_operator.domain.windows import (
    HORIZON,
    MAX_STEPS,
    Schedule,
    argocd_sync_windows,
    evaluate,
)

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC


def window(**spec: Any) -> Schedule:
    """A window as an Environment would write it."""
    return Window.model_validate(spec).schedule_of("Environment prod")


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
    *, tz: dt.tzinfo = UTC,
) -> dt.datetime:  # fmt: skip
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)


def test_no_windows_is_open() -> None:
    assert evaluate([], at(2025, 1, 1)).open


def test_a_one_off_freeze_is_closed_inside_and_opens_at_its_end() -> None:
    freeze = window(kind="deny", name="holidays", **{"from": "2025-12-20T00:00:00Z"},
                    until="2026-01-02T00:00:00+01:00")  # fmt: skip

    assert evaluate([freeze], at(2025, 12, 19, 23, 59)).open
    state = evaluate([freeze], at(2025, 12, 24, 12))
    assert not state.open
    assert "deny window 'holidays'" in state.blocking
    assert state.opens_at == at(2026, 1, 1, 23)  # +01:00 read as an instant
    assert evaluate([freeze], at(2026, 1, 1, 23)).open  # the end is not inside


def test_an_allow_window_opens_next_working_day_in_its_time_zone() -> None:
    office = window(kind="allow", schedule="0 9 * * 1-5", duration="8h", timeZone="Europe/Berlin")

    saturday = at(2025, 8, 16, 12)
    state = evaluate([office], saturday)
    assert not state.open
    assert "outside every allow window" in state.blocking
    assert state.opens_at == at(2025, 8, 18, 9, tz=BERLIN)  # Monday 09:00 CEST = 07:00 UTC
    assert state.opens_at == at(2025, 8, 18, 7)
    assert evaluate([office], at(2025, 8, 18, 14, 59)).open
    assert not evaluate([office], at(2025, 8, 18, 15)).open  # 17:00 in Berlin: closed


def test_the_same_schedule_in_two_time_zones_is_two_instants() -> None:
    tokyo = window(kind="allow", schedule="0 9 * * *", duration="1h", timeZone="Asia/Tokyo")
    new_york = window(
        kind="allow", schedule="0 9 * * *", duration="1h", timeZone="America/New_York"
    )

    assert evaluate([tokyo], at(2025, 1, 15, 0, 30)).open  # 09:30 JST
    assert evaluate([tokyo], at(2025, 1, 15, 1)).opens_at == at(2025, 1, 16, 0)  # 10:00 JST
    assert evaluate([new_york], at(2025, 1, 15, 0, 30)).opens_at == at(2025, 1, 15, 14)  # EST


def test_duration_is_real_time_across_the_spring_dst_change() -> None:
    # 01:00 CET on 30 March 2025 + 3h of real time ends 05:00 CEST (03:00 UTC), not 04:00
    night = window(kind="deny", schedule="0 1 * * *", duration="3h", timeZone="Europe/Berlin")

    state = evaluate([night], at(2025, 3, 30, 4, 30, tz=BERLIN))
    assert not state.open
    assert state.opens_at == at(2025, 3, 30, 3)
    assert state.opens_at == at(2025, 3, 30, 5, tz=BERLIN)


def test_a_start_in_the_skipped_hour_fires_when_the_clock_jumps() -> None:
    # 02:30 does not exist in Berlin on 30 March 2025; cron (and cronsim) fire at 03:00
    skipped = window(kind="allow", schedule="30 2 * * *", duration="30m", timeZone="Europe/Berlin")

    state = evaluate([skipped], at(2025, 3, 29, 12))
    assert state.opens_at == at(2025, 3, 30, 3, tz=BERLIN)


def test_a_start_in_the_repeated_hour_fires_once_in_autumn() -> None:
    # 02:30 happens twice in Berlin on 26 October 2025: the window opens at the first one
    repeated = window(kind="allow", schedule="30 2 * * *", duration="30m", timeZone="Europe/Berlin")

    first = evaluate([repeated], at(2025, 10, 25, 12)).opens_at
    assert first == at(2025, 10, 26, 0, 30)  # 02:30 CEST
    assert evaluate([repeated], at(2025, 10, 26, 0, 45)).open
    # the second 02:30 (CET, 01:30 UTC) is no start: closed, next is the 27th
    later = evaluate([repeated], at(2025, 10, 26, 1, 45))
    assert later.opens_at == at(2025, 10, 27, 2, 30, tz=BERLIN)


def test_overlapping_deny_windows_chain_to_the_last_end() -> None:
    first = window(kind="deny", name="a", until="2025-05-01T10:00:00Z")
    second = window(kind="deny", name="b", **{"from": "2025-05-01T09:30:00Z"},
                    until="2025-05-01T11:00:00Z")  # fmt: skip

    state = evaluate([first, second], at(2025, 5, 1, 9))
    assert state.blocking.endswith("deny window 'a'")
    assert state.opens_at == at(2025, 5, 1, 11)


def test_deny_wins_over_allow_and_the_lunch_break_is_waited_out() -> None:
    office = window(kind="allow", schedule="0 9 * * *", duration="8h")
    lunch = window(kind="deny", name="lunch", schedule="0 12 * * *", duration="1h")

    assert evaluate([office, lunch], at(2025, 5, 1, 11, 59)).open
    state = evaluate([office, lunch], at(2025, 5, 1, 12, 15))
    assert "lunch" in state.blocking
    assert state.opens_at == at(2025, 5, 1, 13)


def test_a_deny_window_longer_than_its_period_overlaps_itself() -> None:
    # every 6 hours for 7 hours: always denied; the search gives up, bounded
    always = window(kind="deny", schedule="0 */6 * * *", duration="7h")

    state = evaluate([always], at(2025, 5, 1, 3))
    assert not state.open
    assert state.opens_at is None
    assert state.searched_until is not None
    assert state.searched_until <= at(2025, 5, 1, 3) + HORIZON


def test_a_hostile_schedule_is_searched_a_bounded_number_of_times() -> None:
    # a deny every minute for a minute: each jump moves one minute, MAX_STEPS jumps at most
    minutes = [window(kind="deny", schedule="* * * * *", duration="1m") for _ in range(32)]
    moment = at(2025, 5, 1, 3, 0, 30)

    state = evaluate(minutes, moment)

    assert not state.open
    assert state.opens_at is None
    assert state.searched_until == at(2025, 5, 1, 3, 1) + dt.timedelta(minutes=MAX_STEPS - 1)


def test_an_allow_window_beyond_the_horizon_is_not_searched_for() -> None:
    # 29 February: next in 2028, beyond the year searched
    rare = window(kind="allow", schedule="0 0 29 2 *", duration="1h")

    state = evaluate([rare], at(2025, 1, 1))
    assert not state.open
    assert state.opens_at is None
    assert state.searched_until == at(2025, 1, 1) + HORIZON


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"kind": "deny", "schedule": "0 0 31 2 *", "duration": "1h"}, "invalid cron schedule"),
        ({"kind": "deny", "schedule": "61 * * * *", "duration": "1h"}, "invalid cron schedule"),
        ({"kind": "deny", "schedule": "0 0 * * *"}, r"either schedule \+ duration"),
        ({"kind": "deny", "until": "2025-01-01T00:00:00Z", "duration": "1h"}, "either"),
        ({"kind": "deny", "until": "2025-01-01T00:00:00"}, "timezone"),
        ({"kind": "allow", "schedule": "* * * * *", "duration": "9000h"}, "at most 8784h"),
        (
            {"kind": "allow", "schedule": "* * * * *", "duration": "1h", "timeZone": "Mars/Base"},
            "unknown time zone",
        ),
    ],
)
def test_bad_windows_are_refused_with_what_to_fix(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Window.model_validate(spec)


def _sync_windows(*windows: dict[str, Any]) -> list[Schedule]:
    return argocd_sync_windows(
        "tv",
        windows,
        application="tvhub-prod",
        namespace="tvhub",
        clusters=("https://kubernetes.default.svc", "in-cluster"),
    )


def test_argocd_sync_windows_match_like_argocd() -> None:
    base = {"kind": "deny", "schedule": "0 12 * * *", "duration": "1h30m"}

    assert _sync_windows({**base, "applications": ["*-prod"]})[0].duration == dt.timedelta(
        minutes=90
    )
    assert _sync_windows({**base, "namespaces": ["tv*"]})
    assert _sync_windows({**base, "clusters": ["in-cluster"]})
    assert not _sync_windows({**base, "applications": ["*-dev"]})
    assert not _sync_windows(base)  # a window that names nothing applies to nothing
    # andOperator: every given selector must match
    both = {**base, "applications": ["*-prod"], "namespaces": ["payments"], "andOperator": True}
    assert not _sync_windows(both)
    assert _sync_windows({**both, "andOperator": False})


@pytest.mark.parametrize(
    "broken",
    [{"duration": "an hour"}, {"schedule": "every day"}, {"kind": "maybe"}, {"timeZone": "X/Y"}],
)
def test_an_unreadable_sync_window_raises_rather_than_opens(broken: dict[str, Any]) -> None:
    window = {"kind": "deny", "schedule": "0 12 * * *", "duration": "1h", "applications": ["*"]}
    with pytest.raises(ValueError, match="sync window 0"):
        _sync_windows({**window, **broken})
