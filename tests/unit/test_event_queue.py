"""The Event queue: a caller never waits on the API server, and the queue is bounded."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client
from prometheus_client import REGISTRY

from promotion_operator.k8s import EventQueue


class _SlowCore:
    """Stands in for CoreV1Api: every create waits until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.created: list[str] = []

    def create_namespaced_event(self, _namespace: str, event: Any, **_: Any) -> _Answer:
        self.release.wait(30)
        self.created.append(event.reason)
        return _Answer()


class _Answer:
    """Stands in for urllib3's response: nothing to read."""

    def drain_conn(self) -> None:
        """Nothing left to read."""

    def release_conn(self) -> None:
        """No connection to give back."""


def _event(reason: str) -> client.CoreV1Event:
    return client.CoreV1Event(
        metadata=client.V1ObjectMeta(name=f"subject.{reason}", namespace="ns"),
        involved_object=client.V1ObjectReference(name="subject", namespace="ns"),
        reason=reason,
    )


def _dropped() -> float:
    return REGISTRY.get_sample_value("promotion_operator_events_total", {"outcome": "dropped"}) or 0


def test_a_stuck_api_server_costs_at_most_the_queue_and_never_the_caller() -> None:
    core = _SlowCore()
    events = EventQueue(size=2)
    dropped = _dropped()
    for n in range(6):  # returns at once although nothing can be posted yet
        events.submit(core, "ns", _event(f"E{n}"))  # type: ignore[arg-type]
    assert not events.flush(timeout=0.2)  # still stuck
    core.release.set()
    assert events.flush(timeout=30)
    # at most one in flight plus two queued were kept; the rest were dropped and counted
    assert 2 <= len(core.created) <= 3
    assert core.created == sorted(core.created)  # in the order submitted
    assert _dropped() - dropped == 6 - len(core.created)
