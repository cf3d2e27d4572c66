"""Polling helpers for end-to-end tests: wait with a deadline, read status and Events.

`OperatorProcess` is the sandbox's (re-exported here for the files that import it from
this module); the phase watch is `promotion_sandbox.watch.PhaseWatch`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from typing import Any

from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess

__all__ = ["OperatorProcess", "events_of", "status_of", "wait_for", "wait_phase"]


def wait_for(
    what: str, probe: Callable[[], Any], *, timeout: float = 60, logs: Callable[[], str] = str
) -> Any:
    """Poll `probe` until it returns something truthy; fail with `what` and the logs."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}\n{logs()[-4000:]}")


def status_of(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """A Promotion's status ({} before the operator wrote one)."""
    obj = kube.get("promotion", name, namespace)
    status: dict[str, Any] = obj.get("status") or {}
    return status


def wait_phase(
    kube: Kube,
    operator: OperatorProcess,
    namespace: str,
    name: str,
    phase: str,
    *,
    timeout: float = 60,
) -> dict[str, Any]:
    """Poll until Promotion `name` is in `phase`; return its status."""
    status: dict[str, Any] = wait_for(
        f"{name} to reach {phase}",
        lambda: (s := status_of(kube, namespace, name)).get("phase") == phase and s,
        timeout=timeout,
        logs=operator.logs,
    )
    return status


def events_of(
    kube: Kube, namespace: str, name: str, *, including: Collection[str] = (), timeout: float = 15
) -> list[str]:
    """The reasons of the Events posted on an object, oldest first.

    The operator posts Events in the background, after the status write they tell of:
    with `including`, wait (up to `timeout`) until those reasons are all there.
    """
    deadline = time.monotonic() + timeout
    while True:
        out = kube.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "json",
        ).stdout
        items = sorted(json.loads(out)["items"], key=lambda e: e["metadata"]["creationTimestamp"])
        reasons = [e["reason"] for e in items]
        if set(including) <= set(reasons) or time.monotonic() >= deadline:
            return reasons
        time.sleep(0.2)
