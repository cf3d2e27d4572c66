"""`kubectl get promotions --watch`: every status write of a namespace's Promotions, timed.

The one phase watcher of the demo (prints each step), the tests (the phases a Promotion
went through, in order) and the benchmark (when each phase was first seen). Polling could
miss a phase that lasts a few milliseconds (Pending, Promoting); a watch sees each write.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Self

from promotion_sandbox.kube import Kube
from promotion_sandbox.procs import terminate


@dataclass(frozen=True)
class PhaseChange:
    """A Promotion's (phase, message) as one watch event carried it, with when it arrived."""

    name: str
    phase: str
    message: str
    moment: float  # time.monotonic() when the event was read
    obj: dict[str, Any]


def _objects(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects of one printed document (kubectl may print the first listing as a List)."""
    if document.get("kind", "").endswith("List") and "items" in document:
        return list(document["items"])
    return [document]


class PhaseWatch:
    """Records every phase change of the Promotions in `namespace`, from a real kubectl watch.

    `watch_only` skips the first listing (`--watch-only`): only what changes from now on is
    seen, so a namespace holding a year of history costs nothing to start watching.
    """

    def __init__(self, kube: Kube, namespace: str, *, watch_only: bool = False) -> None:
        self.kube = kube
        self.namespace = namespace
        self.watch_only = watch_only
        self._changes: list[PhaseChange] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Self:
        """Start `kubectl get --watch` and the thread reading it; return self."""
        self._proc = subprocess.Popen(
            self.kube.kubectl_argv(
                "get",
                "promotions",
                "-n",
                self.namespace,
                "--watch-only" if self.watch_only else "--watch",
                "--output=json",
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="phase-watch", daemon=True)
        self._reader.start()
        return self

    def close(self) -> None:
        """Stop kubectl, then read what it had printed."""
        terminate(self._proc, grace=5)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def _read(self) -> None:
        # kubectl prints each object as indented JSON: decode documents as they complete
        assert self._proc is not None and self._proc.stdout is not None  # noqa: S101
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self._proc.stdout:
            buffer += line
            if not line.startswith("}"):
                continue  # a document ends with a closing brace in the first column
            while (start := buffer.find("{")) >= 0:
                try:
                    document, end = decoder.raw_decode(buffer, start)
                except json.JSONDecodeError:
                    break  # incomplete: wait for more lines
                buffer = buffer[end:]
                self._note(document, time.monotonic())
        with self._cond:
            self._cond.notify_all()

    def _note(self, document: dict[str, Any], moment: float) -> None:
        with self._cond:
            for obj in _objects(document):
                status = obj.get("status") or {}
                phase = status.get("phase") or ""
                if not phase:
                    continue
                name = obj["metadata"]["name"]
                message = status.get("message") or ""
                last = self._last_change(name)
                if last is None or (last.phase, last.message) != (phase, message):
                    self._changes.append(PhaseChange(name, phase, message, moment, obj))
            self._cond.notify_all()

    def _last_change(self, name: str) -> PhaseChange | None:
        return next((c for c in reversed(self._changes) if c.name == name), None)

    # -- what was seen --------------------------------------------------------------------
    def changes(self, name: str) -> list[PhaseChange]:
        """Every distinct (phase, message) of `name`, in the order the watch saw them."""
        with self._cond:
            return [c for c in self._changes if c.name == name]

    def phases(self, name: str) -> list[str]:
        """The phases `name` went through, in order (repeats of one phase folded)."""
        seen: list[str] = []
        for change in self.changes(name):
            if not seen or seen[-1] != change.phase:
                seen.append(change.phase)
        return seen

    def first_seen(self, name: str) -> dict[str, float]:
        """When each phase of `name` was first seen (monotonic seconds)."""
        moments: dict[str, float] = {}
        for change in self.changes(name):
            moments.setdefault(change.phase, change.moment)
        return moments

    def latest(self, name: str) -> dict[str, Any] | None:
        """The newest object of `name` the watch carried (with a phase), if any."""
        with self._cond:
            last = self._last_change(name)
            return last.obj if last else None

    def wait(
        self,
        name: str,
        until: Collection[str],
        *,
        timeout: float,
        on_change: Callable[[PhaseChange], None] | None = None,
    ) -> PhaseChange:
        """Block until `name` reaches a phase in `until`; return that change.

        `on_change` is called for each change of `name` once, from the first one on.
        Raises TimeoutError (with the last status) when `timeout` seconds pass.
        """
        deadline = time.monotonic() + timeout
        delivered = 0
        with self._cond:
            while True:
                mine = [c for c in self._changes if c.name == name]
                for change in mine[delivered:]:
                    if on_change is not None:
                        on_change(change)
                    if change.phase in until:
                        return change
                delivered = len(mine)
                left = deadline - time.monotonic()
                ended = self._reader is not None and not self._reader.is_alive()
                if left <= 0 or ended:
                    status = (mine[-1].obj.get("status") if mine else None) or {}
                    why = "the watch ended" if ended else f"{timeout:.0f}s passed"
                    raise TimeoutError(
                        f"Promotion {name} did not reach {sorted(until)} ({why}): "
                        f"{json.dumps(status, indent=1)}"
                    )
                self._cond.wait(min(left, 1.0))
