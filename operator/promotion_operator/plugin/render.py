"""Terminal output for `kubectl promote`: rich tables, the coloured diff, the live line.

Colours and layout come from rich (no hand-written escape codes); on a pipe or with
`NO_COLOR` set rich prints plain text, so the same output is greppable.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from promotion_operator.domain.times import parse_time
from promotion_operator.plugin.views import (
    HistoryRow,
    Progress,
    StatusRow,
    VersionRow,
    format_duration,
)

_CHECK_STYLE = {"Passed": "green", "Waiting": "yellow", "Failed": "bold red"}
_PHASE_STYLE = {
    "Succeeded": "bold green",
    "Failed": "bold red",
    "Superseded": "yellow",
    "Verifying": "yellow",
    "Promoting": "cyan",
    "Pending": "dim",
}


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """Text from others with every control character but newline replaced by `?`: an
    escape sequence in a message, reason, commit or overlay never reaches the terminal."""
    return _CONTROL.sub("?", text)


class SafeConsole(Console):
    """A Console that cleans every string it renders (prints and table cells alike)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        """rich's render_str over the cleaned text."""
        return super().render_str(clean(text), **kwargs)


PIPE_WIDTH = 250  # columns when writing to a pipe without $COLUMNS: rows stay whole


def console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A console for stdout or stderr; on a pipe it is wide, so no row is cut or wrapped.

    Markup is off: messages, reasons and commit text come from other people (tenants, git),
    and `[link=...]` or `[bold]` in them must print as written. rich's Text also drops
    control characters, so no escape sequence from a message reaches the terminal.
    """
    stream = file or (sys.stderr if stderr else sys.stdout)
    wide = not stream.isatty() and not os.environ.get("COLUMNS")
    return SafeConsole(
        file=file,
        stderr=stderr,
        soft_wrap=True,
        highlight=False,
        markup=False,
        emoji=False,
        width=PIPE_WIDTH if wide else None,
    )


def table(*columns: str, title: str | None = None) -> Table:
    """A kubectl-style table: a bold header, no borders; versions and names never cut."""
    made = Table(title=title, title_justify="left", box=None, pad_edge=False, show_edge=False)
    for column in columns:
        made.add_column(column, no_wrap=column in _WHOLE, header_style="bold")
    return made


_WHOLE = frozenset(
    {"VERSION", "FROM", "TO", "GIT", "LIVE", "COMMIT", "ENVIRONMENT", "NAMESPACE", "WHEN"}
)


def age(delta: dt.timedelta) -> str:
    """kubectl's AGE: `40s`, `5m`, `26h`, `3d`."""
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def ago(text: str | None, now: dt.datetime) -> str:
    """`5m ago` for a timestamp, `-` for none."""
    if not text:
        return "-"
    try:
        return age(now - parse_time(text)) + " ago"
    except ValueError:
        return text


def versions_table(rows: Sequence[VersionRow], *, env: str, now: dt.datetime) -> Table:
    """The versions of `kubectl promote versions`, newest first."""
    made = table(
        "VERSION",
        "UPSTREAM",
        "HEALTHY SINCE",
        env.upper(),
        "PROMOTED BEFORE",
        title=f"versions of {env}, newest first",
    )
    for row in rows:
        upstream = Text("running", style="green") if row.upstream_running else Text("-")
        if row.soak_done is not None:
            upstream.append(
                ", soaked" if row.soak_done else ", soaking",
                style="green" if row.soak_done else "yellow",
            )
        here = [label for label, on in (("git", row.current), ("live", row.live)) if on]
        if row.missing_images:
            here.append("missing: " + ", ".join(i.rsplit("/", 1)[-1] for i in row.missing_images))
        before = "; ".join(
            f"{ago(p.when, now)} by {p.by or '?'} via {p.promotion}" for p in row.promoted_before
        )
        made.add_row(
            Text(row.version, style="bold" if row.current else ""),
            upstream,
            ago(row.upstream_healthy_since, now),
            Text(clean(", ".join(here)) or "-", style="cyan" if row.current else ""),
            before or "-",
        )
    return made


def checks_table(checks: Iterable[Mapping[str, Any]]) -> Table:
    """A Promotion's status.checks: name, target, state, message."""
    made = table("CHECK", "TARGET", "STATUS", "MESSAGE", title="checks")
    for check in checks:
        state = str(check.get("status", ""))
        made.add_row(
            str(check.get("name", "")),
            str(check.get("target", "")),
            Text(clean(state), style=_CHECK_STYLE.get(state, "")),
            str(check.get("message", "")),
        )
    return made


def diff_view(diff: str) -> Syntax:
    """The overlay's unified diff, coloured as a diff."""
    return Syntax(clean(diff.rstrip("\n")), "diff", theme="ansi_dark", background_color="default")


def phase_text(phase: str) -> Text:
    """A phase name in its colour."""
    return Text(clean(phase), style=_PHASE_STYLE.get(phase, ""))


class LiveLine:
    """The live line while following: phase, current check, soak countdown.

    rich's Live asks for it a few times a second; it recomputes from the last object the
    watch delivered, so the countdown moves between events without any polling.
    """

    def __init__(self, name: str, compute: Callable[[dt.datetime], Progress]) -> None:
        self._name = name
        self._compute = compute

    def __rich__(self) -> RenderableType:
        """The current line."""
        state = self._compute(dt.datetime.now(dt.UTC))
        line = Text.assemble(f"{self._name}: ", phase_text(state.phase))
        if state.check:
            line.append(f"  check {clean(state.check)}")
        if state.soak_left is not None:
            line.append(f"  soak: {format_duration(state.soak_left)} left", style="yellow")
        if state.message:
            return Group(line, Text(f"  {clean(state.message)}", style="dim"))
        return line


def history_table(rows: Sequence[HistoryRow], *, env: str) -> Table:
    """`kubectl promote history`: newest first."""
    made = table(
        "WHEN",
        "FROM",
        "TO",
        "BY",
        "WHY",
        "COMMIT",
        "PHASE",
        "PROMOTION",
        title=f"history of {env}, newest first",
    )
    for row in rows:
        phase = row.phase.split(" ", 1)[0]
        made.add_row(
            row.when or "-",
            row.previous or "-",
            row.version or "-",
            row.by or "-",
            row.reason or "-",
            row.commit or "-",
            Text(clean(row.phase), style=_PHASE_STYLE.get(phase, "")),
            row.promotion or "-",
        )
    return made


def _window_cell(window: str | None) -> Text:
    if window is None:
        return Text("-")
    return Text(clean(window), style="green" if window == "open" else "yellow")


def status_table(rows: Sequence[StatusRow], *, namespaces: bool) -> Table:
    """`kubectl promote status`: every Environment."""
    columns = ["ENVIRONMENT", "GIT", "LIVE", "HEALTH", "IN FLIGHT"]
    gated = any(row.approvals or row.window for row in rows)
    if gated:
        columns += ["APPROVALS", "WINDOW"]
    if namespaces:
        columns.insert(0, "NAMESPACE")
    made = table(*columns)
    for row in rows:
        health = row.health or "-"
        style = {"Healthy": "green", "Degraded": "red", "Progressing": "yellow"}.get(health, "")
        cells: list[str | Text] = [
            row.environment,
            row.git_version or "-",
            Text(
                clean(row.live_version or "-"),
                style="yellow" if row.live_version != row.git_version else "",
            ),
            Text(clean(health), style=style),
            row.in_flight or "-",
        ]
        if gated:
            cells += [row.approvals or "-", _window_cell(row.window)]
        if namespaces:
            cells.insert(0, row.namespace)
        made.add_row(*cells)
    return made
