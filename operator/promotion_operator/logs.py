"""Logging: text or one JSON object a line, naming the object each line is about.

kopf names the object on the lines its own object logger writes (the `k8s_ref` record
attribute). The lifecycle logs through plain module loggers, so `handling(...)` puts the
object in a context variable for the length of a handler call (kopf runs each sync
handler in a copy of the context), and `ObjectFilter` copies it onto every record that
does not name one already. Code that works for an object elsewhere (a notifier thread)
passes `extra=about(...)`.

JSON lines come from python-json-logger (which kopf itself uses for its JSON format):
it is well kept, handles `extra` fields and exceptions, and leaves the record layout to us.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

_REF = "k8s_ref"  # kopf's record attribute for the object a line is about
_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "promotion_operator_object", default=None
)


def about(kind: str, namespace: str | None, name: str | None) -> dict[str, Any]:
    """`extra=` for a log call about an object, outside `handling`."""
    return {_REF: {"kind": kind, "namespace": namespace, "name": name}}


@contextlib.contextmanager
def handling(kind: str, namespace: str | None, name: str | None) -> Iterator[None]:
    """Name the object being handled on every log line written inside the block."""
    token = _current.set(about(kind, namespace, name)[_REF])
    try:
        yield
    finally:
        _current.reset(token)


class ObjectFilter(logging.Filter):
    """Adds `k8s_ref` from `handling` to records that name no object yet."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; names the object when one is being handled."""
        if _REF not in record.__dict__:
            current = _current.get()
            if current is not None:
                record.__dict__[_REF] = current
        return True


def _object(record: logging.LogRecord) -> dict[str, Any] | None:
    ref = record.__dict__.get(_REF)
    if not isinstance(ref, dict):
        return None
    return {key: ref.get(key) for key in ("kind", "namespace", "name") if ref.get(key)}


class JSONLines(JsonFormatter):
    """`{"time", "level", "logger", "message", "object": {kind, namespace, name}, ...}`."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            # kopf's own extras: the object (shown as `object`) and its settings
            reserved_attrs=[*RESERVED_ATTRS, _REF, "k8s_skip", "settings"],
        )

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """The standard fields, then the object the line is about."""
        super().add_fields(log_record, record, message_dict)
        found = _object(record)
        if found:
            log_record["object"] = found


class Text(logging.Formatter):
    """`time level logger: [namespace/name] message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """The message, prefixed with the object it is about."""
        found = _object(record)
        if found:
            where = "/".join(found[k] for k in ("namespace", "name") if k in found)
            record = logging.makeLogRecord(
                {**record.__dict__, "message": f"[{where}] {record.message}"}
            )
        return super().formatMessage(record)


def configure(*, json_lines: bool, verbose: bool) -> None:
    """One stderr handler on the root logger, in the chosen format, naming objects."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONLines() if json_lines else Text())
    handler.addFilter(ObjectFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
