"""Promotion windows: is a moment inside the allowed time, and when does it next become so.

The rules follow Argo CD's sync windows: a deny window that is active closes; when any
allow window exists, the moment must be inside one; deny wins over allow. A scheduled
window starts at each time its cron expression fires (read in its time zone, with cron's
own DST rules: cronsim follows Debian's cron) and lasts `duration` of real time; a one-off
window runs from `from` (or always) until `until`.

Pure and bounded: the search for the next opening takes at most `MAX_STEPS` jumps from one
window boundary to the next (fewer with many windows: `SEARCH_BUDGET` look-ups in all,
duplicates looked at once) and never looks past `HORIZON`, whatever a tenant wrote; a
schedule that never fires is refused when the model is parsed (`schedule_fires`).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

HORIZON = dt.timedelta(days=366)
MAX_STEPS = 64
SEARCH_BUDGET = 256  # window look-ups per evaluation (each a cron search of ~0.1-0.3 ms)
_ORIGIN = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_SECOND = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class Schedule:
    """One window, as the arithmetic needs it (built from `domain.models.Window`)."""

    label: str
    deny: bool
    cron: str | None = None
    duration: dt.timedelta = dt.timedelta(0)
    zone: str = "UTC"
    start: dt.datetime | None = None  # one-off: from (None: since always) ...
    end: dt.datetime | None = None  # ... until

    def active_until(self, moment: dt.datetime) -> dt.datetime | None:
        """The end of this window's occurrence that covers `moment`, or None.

        Of overlapping occurrences the latest start ends last (all last `duration`), so
        only the last start at or before `moment` matters.
        """
        if self.cron is None:
            if self.end is None or moment >= self.end:
                return None
            return self.end if self.start is None or self.start <= moment else None
        # cronsim's reverse search is strictly before its start: start just after `moment`
        since = moment.replace(microsecond=0) + _SECOND
        start = _first(self.cron, since.astimezone(ZoneInfo(self.zone)), reverse=True)
        if start is None:
            return None
        end = start.astimezone(dt.UTC) + self.duration
        return end if end > moment else None

    def next_start(self, moment: dt.datetime) -> dt.datetime | None:
        """When this window next starts after `moment` (None: never again)."""
        if self.cron is None:
            return self.start if self.start is not None and self.start > moment else None
        start = _first(self.cron, moment.astimezone(ZoneInfo(self.zone)), reverse=False)
        return None if start is None else start.astimezone(dt.UTC)


@dataclass(frozen=True)
class WindowState:
    """What the windows say about a moment."""

    open: bool
    blocking: str = ""  # what keeps it closed now (a window's label)
    opens_at: dt.datetime | None = None  # None when open, or not found within the search
    searched_until: dt.datetime | None = None  # how far the search got when it gave up


def evaluate(
    schedules: Sequence[Schedule], moment: dt.datetime, *, horizon: dt.timedelta = HORIZON
) -> WindowState:
    """Whether `moment` is inside the allowed time; if not, what blocks and when it opens.

    Jumps from boundary to boundary: past the last end of the deny windows active at that
    time, or to the next start of an allow window, at most `MAX_STEPS` times and never
    past `moment + horizon`.
    """
    unique = list({_key(s): s for s in reversed(schedules)}.values())[::-1]
    denies = [s for s in unique if s.deny]
    allows = [s for s in unique if not s.deny]
    limit = moment + horizon
    probe = moment
    blocking = ""
    # many windows get fewer jumps: the cost of one evaluation stays under the budget
    steps = min(MAX_STEPS, max(4, SEARCH_BUDGET // max(1, len(unique))))
    for _ in range(steps):
        active_denies = [(s, end) for s in denies if (end := s.active_until(probe)) is not None]
        if active_denies:
            blocking = blocking or active_denies[0][0].label
            probe = max(end for _, end in active_denies)
        elif allows and not any(s.active_until(probe) is not None for s in allows):
            blocking = (
                blocking
                or "outside every allow window (" + ", ".join(s.label for s in allows) + ")"
            )
            starts = [t for s in allows if (t := s.next_start(probe)) is not None]
            if not starts:
                return WindowState(open=False, blocking=blocking)
            probe = min(starts)
        else:
            if probe == moment:
                return WindowState(open=True)
            return WindowState(open=False, blocking=blocking, opens_at=probe)
        if probe > limit:
            break
    return WindowState(open=False, blocking=blocking, searched_until=min(probe, limit))


def _key(schedule: Schedule) -> tuple[object, ...]:
    """A window's meaning without its label: the same window twice is looked at once."""
    return (schedule.deny, schedule.cron, schedule.duration, schedule.zone, schedule.start,
            schedule.end)  # fmt: skip


@functools.lru_cache(maxsize=1024)
def schedule_fires(cron: str) -> bool:
    """Whether a cron expression ever fires. cronsim searches 50 years before it gives up
    (about 50 ms), so the answer is cached: a never-firing schedule costs that once."""
    return _search(cron, _ORIGIN, reverse=False) is not None


def _first(cron: str, since: dt.datetime, *, reverse: bool) -> dt.datetime | None:
    """The first firing after (or, reversed, before) `since`; None for a dead schedule."""
    return _search(cron, since, reverse=reverse) if schedule_fires(cron) else None


def _search(cron: str, since: dt.datetime, *, reverse: bool) -> dt.datetime | None:
    try:
        return next(CronSim(cron, since, reverse=reverse))
    except (StopIteration, CronSimError):
        return None


def argocd_sync_windows(
    project: str,
    windows: Sequence[Mapping[str, Any]],
    *,
    application: str,
    namespace: str,
    clusters: Sequence[str],
) -> list[Schedule]:
    """The sync windows of an Argo CD AppProject that apply to one Application.

    Argo CD's matching: a window applies when the Application's name, destination
    namespace or destination cluster (name or server) matches one of its `applications`,
    `namespaces` or `clusters` globs (all of the given ones with `andOperator`). A window
    this cannot read raises ValueError: an unreadable gate holds rather than opens.
    """
    schedules: list[Schedule] = []
    for index, window in enumerate(windows[:MAX_ARGOCD_WINDOWS]):
        if not _applies(window, application, namespace, clusters):
            continue
        kind = str(window.get("kind", ""))
        cron = str(window.get("schedule", ""))
        zone = str(window.get("timeZone") or "UTC")
        if kind not in ("allow", "deny") or not _fires(cron) or not _zone(zone):
            raise ValueError(f"AppProject {project}: sync window {index} cannot be read")
        schedules.append(
            Schedule(
                label=f"Argo CD AppProject {project}: {kind} sync window {cron!r} "
                f"({zone}, {window.get('duration')})",
                deny=kind == "deny",
                cron=cron,
                duration=_go_duration(project, index, str(window.get("duration", ""))),
                zone=zone,
            )
        )
    return schedules


MAX_ARGOCD_WINDOWS = 256
_GO_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|m|s)")


def _applies(
    window: Mapping[str, Any], application: str, namespace: str, clusters: Sequence[str]
) -> bool:
    fields = (
        (window.get("applications") or [], (application,)),
        (window.get("namespaces") or [], (namespace,)),
        (window.get("clusters") or [], tuple(clusters)),
    )
    given = [
        any(fnmatch.fnmatchcase(value, str(g)) for g in globs for value in values if value)
        for globs, values in fields
        if globs
    ]
    if not given:
        return False
    return all(given) if window.get("andOperator") else any(given)


def _fires(cron: str) -> bool:
    try:
        CronSim(cron, _ORIGIN)
    except CronSimError:
        return False
    return schedule_fires(cron)


def _zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _go_duration(project: str, index: int, text: str) -> dt.timedelta:
    if not text or _GO_DURATION.sub("", text) != "":
        raise ValueError(f"AppProject {project}: sync window {index} has no readable duration")
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    return dt.timedelta(seconds=sum(float(n) * units[u] for n, u in _GO_DURATION.findall(text)))
