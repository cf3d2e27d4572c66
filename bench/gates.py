"""The gates' own cost: window evaluation and approval counting, pure code, no I/O.

- `evaluate` for a typical Environment (office hours, a lunch break, a holiday freeze)
  inside and outside its windows, and across a weekend;
- the hostile worst case: 32 distinct deny windows every minute for a minute or so, and 32
  distinct deny windows every 6 hours for 7 hours (the search gives up after
  SEARCH_BUDGET look-ups);
- parsing a window whose cron never fires: the first time (cronsim's 50-year search) and
  cached;
- `tally_approvals` over 500 approvals of one Promotion (the most one list call returns).

Run: `.venv/bin/python bench/gates.py` (a few seconds). It prints a Markdown table.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable
from typing import Any

from promotion_operator.domain.approvals import tally_approvals
from promotion_operator.domain.models import ApprovalPolicy, Window
from promotion_operator.domain.windows import Schedule, evaluate, schedule_fires


def _window(**spec: Any) -> Schedule:
    return Window.model_validate(spec).schedule_of("Environment prod")


def _timed(run: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of `repeat` runs."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    """Print the figures as a Markdown table."""
    typical = [
        _window(kind="allow", schedule="0 9 * * 1-4", duration="8h", timeZone="Europe/Berlin"),
        _window(kind="deny", schedule="0 12 * * *", duration="1h", timeZone="Europe/Berlin"),
        _window(kind="deny", until="2026-01-04T00:00:00+01:00", **{"from": "2025-12-18T00:00:00Z"}),
    ]  # fmt: skip
    # distinct windows (identical ones are looked at once)
    minutes = [_window(kind="deny", schedule="* * * * *", duration=f"{60 + i}s") for i in range(32)]
    overlapping = [
        _window(kind="deny", schedule=f"{i} */6 * * *", duration="7h") for i in range(32)
    ]
    tuesday = dt.datetime(2025, 8, 19, 10, tzinfo=dt.UTC)
    friday_night = dt.datetime(2025, 8, 22, 20, tzinfo=dt.UTC)
    approvals = [
        {
            "metadata": {"name": f"a{i}", "creationTimestamp": "2025-08-19T12:00:05Z"},
            "spec": {"promotion": "p1", "generation": 1, "version": "v1",
                     "approver": {"username": f"user{i}", "groups": ["developers"]}},
        }
        for i in range(500)
    ]  # fmt: skip
    policy = ApprovalPolicy(required=2, groups=["release-managers"])
    never = "0 0 30 2 1"  # 30 February (never) or a Monday in February: fires
    dead = "* * */20 * 1L"  # the 1st or 21st that is also the last Monday: never
    rows = [
        ("typical, open (3 windows)", _timed(lambda: evaluate(typical, tuesday), 200)),
        ("typical, closed over a weekend", _timed(lambda: evaluate(typical, friday_night), 200)),
        ("hostile: 32 deny windows every minute", _timed(lambda: evaluate(minutes, tuesday), 5)),
        ("hostile: 32 overlapping deny windows", _timed(lambda: evaluate(overlapping, tuesday), 5)),
        ("a cron that never fires, first parse", _timed(lambda: schedule_fires(dead), 1)),
        ("the same, cached", _timed(lambda: schedule_fires(dead), 100)),
        ("a rare cron (Feb 30 or Feb Mondays)", _timed(lambda: schedule_fires(never), 1)),
        ("500 approvals of one Promotion", _timed(lambda: tally_approvals(
            policy, approvals, requesters={"alice"}, generation=1, version="v1",
            created_at="2025-08-19T12:00:00Z"), 20)),
    ]  # fmt: skip
    print("| what | median ms |")
    print("| --- | ---: |")
    for what, ms in rows:
        print(f"| {what} | {ms:.2f} |")


if __name__ == "__main__":
    main()
