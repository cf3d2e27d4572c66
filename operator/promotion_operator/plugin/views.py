"""Pure views for `kubectl promote`: what each command shows, computed from objects.

No I/O: every function takes the objects (and the time) it needs and returns rows, so
sorting, joining and the soak countdown are unit-tested without a cluster. `render.py`
turns these rows into rich tables; `-o json` prints them as they are.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from promotion_operator import API_GROUP, API_VERSION
from promotion_operator.domain.errors import CheckName
from promotion_operator.domain.gitrules import trailer_block
from promotion_operator.domain.models import Phase, Window, parse_duration
from promotion_operator.domain.patterns import compile_version_pattern
from promotion_operator.domain.planning import Trailer
from promotion_operator.domain.times import parse_time, timestamp
from promotion_operator.domain.windows import evaluate

Object = Mapping[str, Any]

_DATE_RE = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_NUMBER_RE = re.compile(r"(\d+)")
_SUBJECT_RE = re.compile(r"^promote (?P<env>\S+): (?P<old>\S+) -> (?P<new>\S+)$")
_FINISHED = frozenset(phase.value for phase in Phase if phase.finished)


def version_sort_key(tag: str) -> tuple[str, tuple[tuple[int, int | str], ...]]:
    """Sort key for "newest first" (with reverse=True): the date in a date-tagged version
    (`v20250819-…`), then the tag's numbers compared as numbers (`v1.10` after `v1.9`)."""
    date = _DATE_RE.search(tag)
    parts = tuple(
        (1, int(piece)) if piece.isdigit() else (0, piece) for piece in _NUMBER_RE.split(tag)
    )
    return (date[1] if date else "", parts)


def newest_first(tags: Iterable[str]) -> list[str]:
    """Tags sorted newest first, without duplicates."""
    return sorted(set(tags), key=version_sort_key, reverse=True)


def _meta(obj: Object) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Object) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Object) -> Mapping[str, Any]:
    return obj.get("status") or {}


def is_current_generation_finished(obj: Object) -> bool:
    """Whether a Promotion's status describes its current generation and is final."""
    status = _status(obj)
    return (
        status.get("observedGeneration") == _meta(obj).get("generation", 1)
        and status.get("phase") in _FINISHED
    )


def condition(obj: Object, kind: str) -> Mapping[str, Any]:
    """The condition of this type on an object's status ({} when absent)."""
    return next((c for c in _status(obj).get("conditions") or () if c.get("type") == kind), {})


def outcome_reason(obj: Object) -> str:
    """The reason a Promotion ended (or waits), from its Ready condition."""
    ready = condition(obj, "Ready")
    return str(ready.get("reason") or _status(obj).get("phase") or "")


# -- versions --------------------------------------------------------------------------


@dataclass(frozen=True)
class PromotedBefore:
    """A real (not dry-run) Promotion that took the Environment to a version."""

    promotion: str
    when: str | None
    by: str | None
    commit: str | None


@dataclass(frozen=True)
class VersionRow:
    """One registry tag as `kubectl promote versions` shows it."""

    version: str
    current: bool  # the overlay in git pins it
    live: bool  # the Environment runs it
    upstream_running: bool
    upstream_healthy_since: str | None
    soak_done: bool | None  # None: no soak configured or not running upstream
    missing_images: list[str] = field(default_factory=list)
    promoted_before: list[PromotedBefore] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The row as `-o json` prints it (camelCase, like the API)."""
        raw = asdict(self)
        return {
            "version": raw["version"],
            "current": raw["current"],
            "live": raw["live"],
            "upstreamRunning": raw["upstream_running"],
            "upstreamHealthySince": raw["upstream_healthy_since"],
            "soakDone": raw["soak_done"],
            "missingImages": raw["missing_images"],
            "promotedBefore": raw["promoted_before"],
        }


def succeeded_promotions(promotions: Iterable[Object]) -> list[Object]:
    """The real Promotions whose current generation succeeded, newest first."""
    done = [
        p
        for p in promotions
        if not _spec(p).get("dryRun")
        and is_current_generation_finished(p)
        and _status(p).get("phase") == Phase.SUCCEEDED
    ]

    def key(p: Object) -> tuple[str, str]:
        return (
            str(_status(p).get("finishedAt") or ""),
            str(_meta(p).get("creationTimestamp") or ""),
        )

    return sorted(done, key=key, reverse=True)


def version_rows(
    env: Object,
    upstream: Object | None,
    tags_by_image: Mapping[str, Sequence[str]],
    promotions: Iterable[Object],
    *,
    now: dt.datetime,
) -> list[VersionRow]:
    """The tags of the Environment's images that match its versionPattern, newest first.

    A version is listed when the first image has it; `missing_images` names the other
    images the registry lacks it for (the operator's TagExists check would wait).
    """
    spec = _spec(env)
    status = _status(env)
    images = [str(i["name"]) for i in spec.get("images") or ()]
    pattern = compile_version_pattern(str(spec.get("versionPattern") or r"^v\d{8}-[0-9a-f]{7,40}$"))
    first = tags_by_image.get(images[0], ()) if images else ()
    sets = {image: set(tags_by_image.get(image, ())) for image in images}
    before: dict[str, list[PromotedBefore]] = {}
    for p in succeeded_promotions(promotions):
        if outcome_reason(p) != "Promoted":
            continue
        st = _status(p)
        before.setdefault(str(_spec(p).get("version")), []).append(
            PromotedBefore(
                promotion=str(_meta(p).get("name")),
                when=st.get("finishedAt"),
                by=st.get("requestedBy"),
                commit=st.get("shortCommit"),
            )
        )
    up_status = _status(upstream) if upstream else {}
    up_live = up_status.get("liveVersion")
    up_healthy = up_status.get("health") == "Healthy"
    soak = spec.get("soak")
    rows: list[VersionRow] = []
    for tag in newest_first(t for t in first if pattern.matches(t)):
        running = upstream is not None and up_live == tag
        since = up_status.get("healthySince") if running and up_healthy else None
        soak_done: bool | None = None
        if running and soak:
            soak_done = since is not None and now - parse_time(str(since)) >= parse_duration(
                str(soak)
            )
        rows.append(
            VersionRow(
                version=tag,
                current=status.get("version") == tag,
                live=status.get("liveVersion") == tag,
                upstream_running=running,
                upstream_healthy_since=since,
                soak_done=soak_done,
                missing_images=[image for image in images[1:] if tag not in sets[image]],
                promoted_before=before.get(tag, []),
            )
        )
    return rows


# -- following a Promotion -------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a Promotion is, for the live line."""

    phase: str
    check: str | None  # the first check that has not passed, "Name (target)"
    message: str
    soak_left: dt.timedelta | None


def progress(
    promotion: Object, env: Object | None, upstream: Object | None, *, now: dt.datetime
) -> Progress:
    """The phase, the check being waited on and the soak time left of a Promotion."""
    status = _status(promotion)
    current = status.get("observedGeneration") == _meta(promotion).get("generation", 1)
    if not current:
        return Progress("Pending", None, "waiting for the operator to take it up", None)
    waiting = next(
        (c for c in status.get("checks") or () if c.get("status") != "Passed"),
        None,
    )
    check = None
    soak_left = None
    if waiting is not None:
        target = waiting.get("target")
        check = f"{waiting.get('name')}" + (f" ({target})" if target else "")
        if waiting.get("name") == CheckName.SOAK:
            soak_left = soak_remaining(env, upstream, now=now)
    return Progress(
        str(status.get("phase") or "Pending"), check, str(status.get("message") or ""), soak_left
    )


def soak_remaining(
    env: Object | None, upstream: Object | None, *, now: dt.datetime
) -> dt.timedelta | None:
    """How long the upstream must still run healthily before the soak is done."""
    soak = _spec(env).get("soak") if env else None
    since = _status(upstream).get("healthySince") if upstream else None
    if not soak or not since:
        return None
    left = parse_duration(str(soak)) - (now - parse_time(str(since)))
    return max(left, dt.timedelta(0))


def format_duration(delta: dt.timedelta) -> str:
    """`1h02m03s`, `4m05s`, `7s`."""
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


# -- history ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """A promotion commit read from git: its trailers and subject."""

    sha: str
    committed_at: str
    environment: str | None
    old: str | None
    new: str | None
    promotion: str | None  # namespace/name
    uid: str | None
    requested_by: str | None
    reason: str | None


def parse_commit(sha: str, committed_at: str, message: str) -> Commit | None:
    """A promotion commit from its message, or None when its trailer block has no
    Promotion-UID (a human's commit quoting one is not a promotion)."""
    trailers = {key.lower(): value for key, value in trailer_block(message)}
    uid = trailers.get(Trailer.UID.lower())
    if not uid:
        return None
    subject = message.strip().splitlines()[0] if message.strip() else ""
    match = _SUBJECT_RE.match(subject)
    reason = next(
        (line[len("Reason: ") :] for line in message.splitlines() if line.startswith("Reason: ")),
        None,
    )
    return Commit(
        sha=sha,
        committed_at=committed_at,
        environment=match["env"] if match else None,
        old=match["old"] if match and match["old"] != "(none)" else None,
        new=match["new"] if match else None,
        promotion=trailers.get(Trailer.PROMOTION.lower()),
        uid=uid,
        requested_by=trailers.get(Trailer.REQUESTED_BY.lower()),
        reason=reason,
    )


@dataclass(frozen=True)
class HistoryRow:
    """One line of `kubectl promote history`: a Promotion, its commit, or both."""

    when: str | None
    previous: str | None
    version: str | None
    by: str | None
    reason: str | None
    commit: str | None
    phase: str
    promotion: str | None

    def as_json(self) -> dict[str, Any]:
        """The row as `-o json` prints it."""
        return {
            "when": self.when,
            "from": self.previous,
            "to": self.version,
            "by": self.by,
            "reason": self.reason,
            "commit": self.commit,
            "phase": self.phase,
            "promotion": self.promotion,
        }


def history_rows(
    environment: str, promotions: Iterable[Object], commits: Iterable[Commit]
) -> list[HistoryRow]:
    """Promotions (dry runs left out) joined with the commits carrying their UID, newest
    first. A commit whose Promotion was deleted (retention, a pruned file) still shows,
    with phase `Succeeded (object gone)`."""
    by_uid = {c.uid: c for c in commits if c.environment in (None, environment)}
    rows: list[HistoryRow] = []
    for p in promotions:
        spec, status, meta = _spec(p), _status(p), _meta(p)
        if spec.get("dryRun") or spec.get("environment") != environment:
            continue
        commit = by_uid.pop(str(meta.get("uid")), None)
        rows.append(
            HistoryRow(
                when=(commit.committed_at if commit else None)
                or status.get("finishedAt")
                or meta.get("creationTimestamp"),
                previous=(commit.old if commit else None) or status.get("previousVersion"),
                version=spec.get("version"),
                by=(commit.requested_by if commit else None) or status.get("requestedBy"),
                reason=spec.get("reason") or (commit.reason if commit else None),
                commit=(commit.sha[:7] if commit else None) or status.get("shortCommit"),
                phase=str(status.get("phase") or "Pending")
                + (f" ({outcome_reason(p)})" if status.get("phase") == "Failed" else ""),
                promotion=str(meta.get("name")),
            )
        )
    for commit in by_uid.values():
        rows.append(
            HistoryRow(
                when=commit.committed_at,
                previous=commit.old,
                version=commit.new,
                by=commit.requested_by,
                reason=commit.reason,
                commit=commit.sha[:7],
                phase="Succeeded (object gone)",
                promotion=(commit.promotion or "").rpartition("/")[2] or None,
            )
        )
    rows.sort(key=lambda row: _sortable_time(row.when), reverse=True)
    return rows


def _sortable_time(text: str | None) -> dt.datetime:
    if not text:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    try:
        return parse_time(text).astimezone(dt.UTC)
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)


# -- rollback --------------------------------------------------------------------------


def rollback_target(env: Object, promotions: Iterable[Object]) -> str | None:
    """The version to roll back to: the newest successfully promoted version that is not
    the one the overlay pins now; else the version the last promotion moved away from."""
    current = _status(env).get("version")
    succeeded = [p for p in succeeded_promotions(promotions) if outcome_reason(p) == "Promoted"]
    for p in succeeded:
        version = _spec(p).get("version")
        if version and version != current:
            return str(version)
    for p in succeeded:
        previous = _status(p).get("previousVersion")
        if previous and previous != current:
            return str(previous)
    return None


# -- status ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRow:
    """One Environment as `kubectl promote status` shows it."""

    namespace: str
    environment: str
    git_version: str | None
    live_version: str | None
    health: str | None
    in_flight: str | None  # "name -> version (phase)"
    approvals: str | None = None  # with spec.approval: "0 of 1 approval; not counted: ..."
    window: str | None = None  # with windows: "open", "opens at ...", "frozen by ..."

    def as_json(self) -> dict[str, Any]:
        """The row as `-o json` prints it."""
        return {
            "namespace": self.namespace,
            "environment": self.environment,
            "gitVersion": self.git_version,
            "liveVersion": self.live_version,
            "health": self.health,
            "inFlight": self.in_flight,
            "approvals": self.approvals,
            "window": self.window,
        }


_APPROVE_HINT = "; an allowed approver"  # where the Approval check's how-to begins
_OPENS_RE = re.compile(
    r"promotion window closed by (?P<by>.+?); (?P<when>(?:opens at|does not)[^(]*)"
)
_FROZEN_RE = re.compile(r"frozen by (?P<by>PromotionPolicy \S+?)(?::| \()")


def check_record(promotion: Object, name: str) -> Mapping[str, Any]:
    """The record of one check in a Promotion's status.checks ({} when absent)."""
    records = _status(promotion).get("checks") or ()
    return next((c for c in records if c.get("name") == name), {})


def approval_body(promotion: Object, comment: str | None) -> dict[str, Any]:
    """The PromotionApproval of a Promotion's current generation and version. It names no
    approver: the chart's admission policy stamps the authenticated user."""
    meta = _meta(promotion)
    spec: dict[str, Any] = {
        "promotion": meta.get("name"),
        "generation": meta.get("generation", 1),
        "version": _spec(promotion).get("version"),
    }
    if comment:
        spec["comment"] = comment
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "PromotionApproval",
        "metadata": {
            "generateName": f"{str(meta.get('name'))[:52]}-",
            "namespace": meta.get("namespace"),
        },
        "spec": spec,
    }


def approval_counted(promotion: Object, approver: str) -> str | None:
    """What the Approval check says of `approver`'s approval once it has seen it ("counts:
    ..." or "not counted: ..."), or None while its message does not mention them yet."""
    message = str(check_record(promotion, CheckName.APPROVAL).get("message") or "")
    summary = message.split(_APPROVE_HINT, 1)[0]
    if approver in (_status(promotion).get("approvedBy") or ()):
        return f"counts: {summary}" if summary else "counts"
    _, _, refused = summary.partition("; not counted: ")
    if any(entry.startswith(f"{approver} (") for entry in refused.split("; ")):
        return f"does not count: {summary}"
    return None


def approvals_view(env: Object, flying: Object | None) -> str | None:
    """What the Approval check says of the Promotion in flight (without its how-to), or
    how many approvals a Promotion will need; None when the Environment has no approvals."""
    policy = _spec(env).get("approval")
    if policy is None:
        return None
    required = int(policy.get("required") or 1)
    if flying is None:
        return f"{required} required"
    message = str(check_record(flying, CheckName.APPROVAL).get("message") or "")
    if message:
        return message.split(_APPROVE_HINT, 1)[0]
    counted = [str(who) for who in _status(flying).get("approvedBy") or ()]
    return f"{len(counted)} of {required}" + (f" ({', '.join(counted)})" if counted else "")


def window_view(env: Object, flying: Object | None, *, now: dt.datetime) -> str | None:
    """The next window: the PromotionWindow check of the Promotion in flight (which also
    knows the PromotionPolicies and Argo CD sync windows), else the Environment's own
    windows evaluated at `now`; None when neither says anything."""
    record = check_record(flying, CheckName.WINDOW) if flying else {}
    message = str(record.get("message") or "")
    if record.get("status") == "Passed":
        return message or "open"
    if (closed := _OPENS_RE.search(message)) is not None:
        return f"{closed['when'].strip().rstrip(',')} ({closed['by']})"
    if (frozen := _FROZEN_RE.search(message)) is not None:
        return f"frozen by {frozen['by']}"
    if message:
        return message
    windows = _spec(env).get("windows")
    if not windows:
        return None
    try:
        name = f"Environment {_meta(env).get('name')}"
        schedules = [Window.model_validate(w).schedule_of(name) for w in windows]
    except ValueError:
        return "invalid windows (see the Environment's status)"
    state = evaluate(schedules, now)
    if state.open:
        return "open"
    if state.opens_at is not None:
        return f"opens at {timestamp(state.opens_at)} ({state.blocking})"
    return f"closed ({state.blocking})"


def status_rows(
    environments: Iterable[Object], promotions: Iterable[Object], *, now: dt.datetime
) -> list[StatusRow]:
    """Every Environment with its versions, health, the real Promotion in flight (the
    newest unfinished one) and its gates, sorted by namespace and name. One pass over
    each list."""
    in_flight: dict[tuple[str, str], Object] = {}
    for p in promotions:
        if _spec(p).get("dryRun") or is_current_generation_finished(p):
            continue
        key = (str(_meta(p).get("namespace")), str(_spec(p).get("environment")))
        best = in_flight.get(key)
        created = str(_meta(p).get("creationTimestamp") or "")
        if best is None or created > str(_meta(best).get("creationTimestamp") or ""):
            in_flight[key] = p
    rows = []
    for env in environments:
        meta, status = _meta(env), _status(env)
        key = (str(meta.get("namespace")), str(meta.get("name")))
        flying = in_flight.get(key)
        rows.append(
            StatusRow(
                namespace=key[0],
                environment=key[1],
                git_version=status.get("version"),
                live_version=status.get("liveVersion"),
                health=status.get("health"),
                in_flight=(
                    f"{_meta(flying).get('name')} -> {_spec(flying).get('version')} "
                    f"({_status(flying).get('phase') or 'Pending'})"
                    if flying
                    else None
                ),
                approvals=approvals_view(env, flying),
                window=window_view(env, flying, now=now),
            )
        )
    rows.sort(key=lambda row: (row.namespace, row.environment))
    return rows
