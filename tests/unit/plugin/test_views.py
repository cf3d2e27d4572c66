"""The plugin's pure views: sorting, marks, the history join, rollback target, status."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from promotion_operator.plugin.render import console, history_table
from promotion_operator.plugin.views import (
    Commit,
    format_duration,
    history_rows,
    newest_first,
    parse_commit,
    progress,
    rollback_target,
    status_rows,
    version_rows,
)

NOW = dt.datetime(2025, 8, 20, 12, 0, 0, tzinfo=dt.UTC)
IMAGES = ["reg.example/team/frontend", "reg.example/team/backend"]


def env(name: str = "prod", **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "git": {"url": "https://git.example/x.git"},
        "overlay": {"path": "k8s/prod"},
        "images": [{"name": i} for i in IMAGES],
        "upstream": "dev",
        "soak": "10m",
    }
    return {
        "metadata": {"name": name, "namespace": "team"},
        "spec": spec,
        "status": status,
    }


def promo(
    name: str,
    version: str,
    *,
    phase: str | None = "Succeeded",
    reason: str = "Promoted",
    finished: str = "2025-08-19T10:00:00Z",
    uid: str | None = None,
    dry_run: bool = False,
    generation: int = 1,
    observed: int = 1,
    **status: Any,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team",
            "uid": uid or f"uid-{name}",
            "generation": generation,
            "creationTimestamp": finished,
        },
        "spec": {"environment": "prod", "version": version, "dryRun": dry_run, "reason": "r"},
        "status": {
            "phase": phase,
            "observedGeneration": observed,
            "finishedAt": finished,
            "conditions": [{"type": "Ready", "reason": reason, "message": "m"}],
            **status,
        },
    }


def test_newest_first_orders_dates_then_numbers() -> None:
    tags = ["v20250812-a1b2c3d", "v20250819-f3b8541", "v1.9.0", "v1.10.0", "v20250819-f3b8541"]
    assert newest_first(tags) == ["v20250819-f3b8541", "v20250812-a1b2c3d", "v1.10.0", "v1.9.0"]


@given(st.lists(st.from_regex(r"v2025[01][0-9][0-3][0-9]-[0-9a-f]{7}", fullmatch=True)))
def test_date_tagged_versions_sort_by_date_descending(tags: list[str]) -> None:
    ordered = newest_first(tags)
    dates = [tag[1:9] for tag in ordered]
    assert dates == sorted(dates, reverse=True)
    assert set(ordered) == set(tags)


def test_version_rows_mark_upstream_soak_current_and_history() -> None:
    prod = env(version="v20250812-a1b2c3d", liveVersion="v20250812-a1b2c3d")
    dev = env(
        "dev",
        liveVersion="v20250819-f3b8541",
        health="Healthy",
        healthySince="2025-08-20T11:55:00Z",
    )
    tags = {
        IMAGES[0]: ["v20250812-a1b2c3d", "v20250819-f3b8541", "latest", "v20250826-0badc0d"],
        IMAGES[1]: ["v20250812-a1b2c3d", "v20250819-f3b8541"],
    }
    promotions = [
        promo("prod-old", "v20250812-a1b2c3d", requestedBy="alice", shortCommit="9f2c4e1"),
        promo("prod-dry", "v20250819-f3b8541", dry_run=True, reason="DryRunSucceeded"),
        promo("prod-noop", "v20250819-f3b8541", reason="AlreadyAtVersion"),
    ]
    rows = version_rows(prod, dev, tags, promotions, now=NOW)
    assert [r.version for r in rows] == [
        "v20250826-0badc0d",
        "v20250819-f3b8541",
        "v20250812-a1b2c3d",
    ]
    untested, tested, current = rows
    assert untested.missing_images == [IMAGES[1]]
    assert not untested.upstream_running
    assert tested.upstream_running
    assert tested.upstream_healthy_since == "2025-08-20T11:55:00Z"
    assert tested.soak_done is False  # 5 of the 10 minutes
    assert tested.promoted_before == []  # a dry run and a no-op are not promotions
    assert current.current and current.live
    assert [(p.promotion, p.by, p.commit) for p in current.promoted_before] == [
        ("prod-old", "alice", "9f2c4e1")
    ]
    later = version_rows(prod, dev, tags, promotions, now=NOW + dt.timedelta(minutes=6))
    assert later[1].soak_done is True
    assert later[1].as_json()["soakDone"] is True


def test_version_rows_follow_the_environments_pattern() -> None:
    prod = env()
    prod["spec"]["versionPattern"] = r"^v\d+\.\d+\.\d+$"
    rows = version_rows(prod, None, {IMAGES[0]: ["v1.2.3", "v20250812-a1b2c3d"]}, [], now=NOW)
    assert [r.version for r in rows] == ["v1.2.3"]


def test_progress_names_the_waiting_check_and_counts_the_soak_down() -> None:
    waiting = promo(
        "p",
        "v20250819-f3b8541",
        phase="Verifying",
        checks=[
            {"name": "TagExists", "target": IMAGES[0], "status": "Passed"},
            {"name": "Soak", "target": "dev", "status": "Waiting"},
        ],
        message="waiting: soak",
    )
    dev = env("dev", healthySince="2025-08-20T11:55:00Z")
    state = progress(waiting, env(), dev, now=NOW)
    assert state.phase == "Verifying"
    assert state.check == "Soak (dev)"
    assert state.soak_left == dt.timedelta(minutes=5)
    assert format_duration(state.soak_left) == "5m00s"
    stale = promo("p", "v1", generation=2, observed=1)
    assert progress(stale, env(), dev, now=NOW).phase == "Pending"


def test_a_commit_is_a_promotion_only_by_its_trailer_block() -> None:
    message = (
        "promote prod: v20250812-a1b2c3d -> v20250819-f3b8541\n\n"
        "Reason: color fix\n\n"
        "Promotion: team/prod-new\nPromotion-UID: u-1\nPromotion-Generation: 1\n"
        "Requested-By: bob\n"
    )
    commit = parse_commit("abcdef1234567", "2025-08-19T11:00:00+00:00", message)
    assert commit is not None
    assert (commit.old, commit.new, commit.uid, commit.requested_by, commit.reason) == (
        "v20250812-a1b2c3d",
        "v20250819-f3b8541",
        "u-1",
        "bob",
        "color fix",
    )
    forged = "fix typo\n\nPromotion-UID: u-1 quoted in a paragraph\n\nSigned-off-by: eve"
    assert parse_commit("1", "2025-08-19T11:00:00+00:00", forged) is None


def test_history_joins_promotions_with_their_commits_and_keeps_orphans() -> None:
    promotions = [
        promo("prod-new", "v20250819-f3b8541", uid="u-1", finished="2025-08-19T11:00:05Z"),
        promo(
            "prod-bad",
            "v20250826-0badc0d",
            phase="Failed",
            reason="UpstreamVersionMismatch",
            finished="2025-08-19T12:00:00Z",
        ),
        promo("prod-dry", "v20250819-f3b8541", dry_run=True),
    ]
    commits = [
        Commit(
            "abcdef1234567",
            "2025-08-19T11:00:00+00:00",
            "prod",
            "v20250812-a1b2c3d",
            "v20250819-f3b8541",
            "team/prod-new",
            "u-1",
            "bob",
            "color fix",
        ),
        Commit(
            "1111111aaaaaa",
            "2025-08-01T09:00:00+00:00",
            "prod",
            None,
            "v20250801-aaaaaaa",
            "team/pruned",
            "u-0",
            "carol",
            "first",
        ),
        Commit(
            "2222222bbbbbb",
            "2025-08-02T09:00:00+00:00",
            "dev",
            "a",
            "b",
            "team/dev-x",
            "u-dev",
            "ci",
            None,
        ),
    ]
    rows = history_rows("prod", promotions, commits)
    assert [(r.promotion, r.commit, r.phase) for r in rows] == [
        ("prod-bad", None, "Failed (UpstreamVersionMismatch)"),
        ("prod-new", "abcdef1", "Succeeded"),
        ("pruned", "1111111", "Succeeded (object gone)"),
    ]
    assert (rows[1].previous, rows[1].by) == ("v20250812-a1b2c3d", "bob")


def test_rollback_targets_the_previous_promoted_version() -> None:
    promotions = [
        promo("a", "v20250801-aaaaaaa", finished="2025-08-01T00:00:00Z"),
        promo("b", "v20250812-a1b2c3d", finished="2025-08-12T00:00:00Z"),
        promo("c", "v20250819-f3b8541", finished="2025-08-19T00:00:00Z"),
        promo(
            "d", "v20250826-0badc0d", phase="Failed", reason="X", finished="2025-08-26T00:00:00Z"
        ),
    ]
    assert rollback_target(env(version="v20250819-f3b8541"), promotions) == "v20250812-a1b2c3d"
    only = [promo("c", "v20250819-f3b8541", previousVersion="v20250812-a1b2c3d")]
    assert rollback_target(env(version="v20250819-f3b8541"), only) == "v20250812-a1b2c3d"
    assert rollback_target(env(version="v20250819-f3b8541"), []) is None


def test_status_rows_show_the_newest_real_promotion_in_flight() -> None:
    envs = [env("prod", version="v1", liveVersion="v1", health="Healthy"), env("dev")]
    promotions = [
        promo("old", "v2", phase="Verifying", finished="2025-08-19T10:00:00Z"),
        promo("new", "v3", phase="Promoting", finished="2025-08-19T11:00:00Z"),
        promo("dry", "v4", phase="Verifying", dry_run=True, finished="2025-08-19T12:00:00Z"),
        promo("done", "v5", finished="2025-08-19T13:00:00Z"),
    ]
    rows = status_rows(envs, promotions, now=NOW)
    assert [r.environment for r in rows] == ["dev", "prod"]
    assert rows[1].in_flight == "new -> v3 (Promoting)"
    assert rows[0].in_flight is None
    assert rows[1].as_json()["gitVersion"] == "v1"


def test_text_from_tenants_and_git_prints_as_written() -> None:
    out = io.StringIO()
    hostile = "[link=https://evil.example]click[/link] [bold]x[/bold]\x1b[2J\x07"
    commit = Commit(
        "abcdef1234567",
        "2025-08-19T11:00:00+00:00",
        "prod",
        "a",
        "b",
        "team/p",
        "u-1",
        hostile,
        hostile,
    )
    console(file=out).print(history_table(history_rows("prod", [], [commit]), env="prod"))
    text = out.getvalue()
    assert "[link=https://evil.example]click[/link]" in text
    assert "[bold]x[/bold]" in text
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "?[2J" in text  # shown, defused
