"""Logging: which object a line is about, on every line its handling causes.

kopf names the object on the lines its own object logger writes (the `k8s_ref` record
attribute, shown as a `[ns/name]` prefix, or as `object` in JSON). The lifecycle logs
through plain module loggers, so `handling(...)` puts the object in a context variable
for the length of a handler call (kopf runs each sync handler in a copy of the context),
and `ObjectFilter` copies it onto every record that does not name one already.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "promotion_operator_object", default=None
)


@contextlib.contextmanager
def handling(kind: str, namespace: str | None, name: str | None) -> Iterator[None]:
    """Name the object being handled on every log line written inside the block."""
    token = _current.set({"kind": kind, "namespace": namespace, "name": name})
    try:
        yield
    finally:
        _current.reset(token)


class ObjectFilter(logging.Filter):
    """Adds `k8s_ref` (kopf's record attribute for the object) from `handling`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; names the object when one is being handled."""
        if not hasattr(record, "k8s_ref"):
            current = _current.get()
            if current is not None:
                record.k8s_ref = current
        return True
