"""Sending promotion notifications: a bounded queue, a few workers, bounded retried POSTs.

Off the reconcile path: `submit` never blocks and never raises; a full queue drops the
notice with a log line and a metric. Each worker resolves where a notice goes (the
Secret read happens here, not in the reconcile), then POSTs with `fetch` (one deadline
for the whole call, a byte cap on the answer, no redirect followed) and retries a 5xx,
a 429 or a network failure with exponential backoff. The URL is a credential: it never
appears in a log line, a status or an Event.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from promotion_operator.domain.models import NotificationFormat
from promotion_operator.domain.notifications import Notice, body
from promotion_operator.fetch import FetchError, fetch
from promotion_operator.logs import about
from promotion_operator.metrics import CALL_ERRORS, CALL_SECONDS, NOTIFICATIONS, NOTIFY_QUEUE

log = logging.getLogger(__name__)

_MAX_ANSWER = 64 * 1024


@dataclass(frozen=True)
class Destination:
    """Where a notice goes: the URL (from a Secret), the body format, the diff template."""

    url: str
    format: NotificationFormat = NotificationFormat.JSON
    diff_url_template: str | None = None
    source: str = "webhook"  # what to call it in logs (a Secret's name, never the URL)

    def __repr__(self) -> str:
        return f"Destination(<{self.source}>, {self.format.value})"


def _about(notice: Notice) -> dict[str, object]:
    return about("Promotion", notice.namespace, notice.promotion)


Resolver = Callable[[Notice], Destination | None]
"""Where a notice goes (None: nowhere); may raise, which is logged as a failed send."""
Failed = Callable[[Notice, str], None]
"""Told when a notice could not be sent, with the problem in words (never the URL)."""


def _ignore(notice: Notice, problem: str) -> None:
    del notice, problem


class WebhookNotifier:
    """A bounded queue drained by `workers` daemon threads (started on first use)."""

    def __init__(
        self,
        resolve: Resolver,
        *,
        failed: Failed = _ignore,
        capacity: int = 256,
        workers: int = 2,
        attempts: int = 4,
        deadline: float = 5.0,
        backoff: float = 1.0,
    ) -> None:
        self._resolve = resolve
        self._failed = failed
        self._queue: queue.Queue[Notice] = queue.Queue(maxsize=capacity)
        self._workers = workers
        self._attempts = attempts
        self._deadline = deadline
        self._backoff = backoff
        self._started = False
        self._start_lock = threading.Lock()

    def submit(self, notice: Notice) -> None:
        """Queue a notice; when the queue is full, drop it (logged and counted)."""
        self._start()
        try:
            self._queue.put_nowait(notice)
        except queue.Full:
            NOTIFICATIONS.labels("dropped").inc()
            log.warning(
                "notification queue full (%d): dropped the %s notice of Promotion %s/%s",
                self._queue.maxsize,
                notice.event,
                notice.namespace,
                notice.promotion,
                extra=_about(notice),
            )
        NOTIFY_QUEUE.set(self._queue.qsize())

    def join(self, timeout: float) -> bool:
        """Wait until the queue is drained (for tests and shutdown); True when it is."""
        end = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.05)
        return not self._queue.unfinished_tasks

    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            for n in range(self._workers):
                threading.Thread(target=self._work, name=f"notify-{n}", daemon=True).start()
            self._started = True

    def _work(self) -> None:
        while True:
            notice = self._queue.get()
            NOTIFY_QUEUE.set(self._queue.qsize())
            try:
                self._deliver(notice)
            except Exception:  # a bug in one notice must not stop the worker
                log.exception(
                    "notification of Promotion %s/%s",
                    notice.namespace,
                    notice.promotion,
                    extra=_about(notice),
                )
                NOTIFICATIONS.labels("failed").inc()
            finally:
                self._queue.task_done()

    def _deliver(self, notice: Notice) -> None:
        what = f"{notice.event} notice of Promotion {notice.namespace}/{notice.promotion}"
        try:
            destination = self._resolve(notice)
        except Exception as error:
            NOTIFICATIONS.labels("failed").inc()
            log.warning("%s not sent: %s", what, error, extra=_about(notice))
            self._tell(notice, f"notification not sent: {error}")
            return
        if destination is None:
            return
        payload = body(notice, destination.format, destination.diff_url_template)
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(self._backoff * 2 ** (attempt - 1))
            retry, problem = self._post(destination, payload)
            if not problem:
                NOTIFICATIONS.labels("sent").inc()
                log.info("%s sent to %s", what, destination.source, extra=_about(notice))
                return
            if not retry:
                break
        NOTIFICATIONS.labels("failed").inc()
        log.warning(
            "%s not sent to %s: %s", what, destination.source, problem, extra=_about(notice)
        )
        self._tell(
            notice, f"notification not sent to the webhook of {destination.source}: {problem}"
        )

    def _tell(self, notice: Notice, problem: str) -> None:
        try:
            self._failed(notice, problem)
        except Exception:  # telling is best effort, like the Event it posts
            log.exception("reporting a failed notification", extra=_about(notice))

    def _post(self, destination: Destination, payload: bytes) -> tuple[bool, str]:
        """One POST: ("" when accepted) or (whether to retry, what went wrong)."""
        began = time.monotonic()
        try:
            reply = fetch(
                "POST",
                destination.url,
                deadline=self._deadline,
                max_body=_MAX_ANSWER,
                headers={"Content-Type": "application/json", "User-Agent": "promotion-operator"},
                body=payload,
            )
        except FetchError as error:
            CALL_ERRORS.labels("webhook", "post").inc()
            # the problem names no URL (fetch words it for a status message)
            return True, error.problem
        finally:
            CALL_SECONDS.labels("webhook", "post").observe(time.monotonic() - began)
        if 200 <= reply.status < 300:
            return False, ""
        CALL_ERRORS.labels("webhook", "post").inc()
        retry = reply.status >= 500 or reply.status == 429
        moved = " (a redirect, not followed)" if reply.is_redirect else ""
        return retry, f"answered {reply.status}{moved}"
