"""The operator's Prometheus metrics, one place for their names, labels and buckets.

Labels are kept to small closed sets (phase, reason, stage, call kind and operation) and
never name a Promotion or an Environment: 10,000 Promotions cost no more series than one.
`serve` exposes them on `--metrics-port` with prometheus_client's own HTTP server.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_PREFIX = "promotion_operator"
# from a local git call (milliseconds) to a promotion that soaks for hours
_STAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 14400)
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

TRANSITIONS = Counter(
    f"{_PREFIX}_promotions",
    "Promotion phase transitions, by the phase entered and the Ready reason.",
    ["phase", "reason"],
)
STAGE_SECONDS = Histogram(
    f"{_PREFIX}_stage_duration_seconds",
    "Time spent per stage of a promotion: verify (one round of checks), git (sync to "
    "push, under the repository lock), total (start of the generation to its end).",
    ["stage"],
    buckets=_STAGE_BUCKETS,
)
CALL_SECONDS = Histogram(
    f"{_PREFIX}_call_duration_seconds",
    "Duration of calls to the outside: git (by subcommand), registry, health (by source), "
    "kube (the Kubernetes API, by verb and resource).",
    ["kind", "operation"],
    buckets=_CALL_BUCKETS,
)
CALL_ERRORS = Counter(
    f"{_PREFIX}_call_errors",
    "Calls to the outside that failed, by kind and operation.",
    ["kind", "operation"],
)
REFRESH_SECONDS = Histogram(
    f"{_PREFIX}_environment_refresh_round_duration_seconds",
    "Duration of one status refresh round over every Environment.",
    buckets=_STAGE_BUCKETS,
)
IN_FLIGHT = Gauge(
    f"{_PREFIX}_promotions_in_flight",
    "Promotions whose current generation is not finished yet, as this process knows them.",
)
NOTIFICATIONS = Counter(
    f"{_PREFIX}_notifications",
    "Webhook notifications, by outcome: sent, failed (after the retries), dropped (queue full).",
    ["outcome"],
)
EVENTS = Counter(
    f"{_PREFIX}_events",
    "Kubernetes Events, by outcome: posted, failed (the API server refused or was away), "
    "dropped (the queue was full).",
    ["outcome"],
)
NOTIFY_QUEUE = Gauge(f"{_PREFIX}_notification_queue_length", "Notifications waiting to be sent.")

_in_flight: set[tuple[str, str]] = set()
_in_flight_lock = threading.Lock()


def set_in_flight(namespace: str, name: str, *, active: bool) -> None:
    """Record whether a Promotion is at work; the gauge is the number that are."""
    with _in_flight_lock:
        if active:
            _in_flight.add((namespace, name))
        else:
            _in_flight.discard((namespace, name))
        IN_FLIGHT.set(len(_in_flight))


@contextlib.contextmanager
def timed_call(kind: str, operation: str) -> Iterator[None]:
    """Time a call to the outside; an exception counts as an error (and propagates)."""
    began = time.monotonic()
    try:
        yield
    except BaseException:
        CALL_ERRORS.labels(kind, operation).inc()
        raise
    finally:
        CALL_SECONDS.labels(kind, operation).observe(time.monotonic() - began)


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - a Pod's metrics port
    """Serve /metrics on `address:port` from a daemon thread."""
    start_http_server(port, addr=address)
