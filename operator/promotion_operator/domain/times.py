"""Time as the Kubernetes API writes it: RFC 3339 in UTC."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    """The current time, UTC."""
    return dt.datetime.now(dt.UTC)


def timestamp(moment: dt.datetime) -> str:
    """RFC 3339 with second precision, as Kubernetes writes times."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_timestamp(moment: dt.datetime) -> str:
    """RFC 3339 with microseconds: orders requests made within the same second."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    """Parse a Kubernetes timestamp (with or without fractional seconds)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
