"""The webhook sender against a real HTTP receiver on loopback: delivery, retries, limits."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from promotion_operator.domain.models import NotificationFormat
from promotion_operator.domain.notifications import Notice
from promotion_operator.notify import Destination, WebhookNotifier
from promotion_sandbox.webhook import WebhookReceiver

pytestmark = pytest.mark.integration


def notice(name: str) -> Notice:
    return Notice(
        event="Succeeded",
        namespace="shop",
        promotion=name,
        environment="prod",
        from_version="v20250101-aaaaaaa",
        to_version="v20250819-f3b8541",
        who="alice",
        why="fix",
        commit="9f2c4e1aa5b6c7d8e9f00112233445566778899a",
        reason="Promoted",
        message="prod promoted",
    )


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def notifier_to(url: str, **options: float) -> WebhookNotifier:
    destination = Destination(url, NotificationFormat.JSON, "https://git/c/{commit}", "Secret a/b")
    return WebhookNotifier(lambda _: destination, backoff=0.05, **options)  # type: ignore[arg-type]


def sent(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "promotion_operator_notifications_total", {"outcome": outcome}
    )
    return value or 0.0


def test_a_notice_is_posted_as_json(receiver: WebhookReceiver) -> None:
    notifier = notifier_to(receiver.url("ok", "plain"))
    notifier.submit(notice("p1"))
    (delivery,) = receiver.wait("plain")
    assert delivery.headers["Content-Type"] == "application/json"
    document = delivery.json()
    assert (document["promotion"], document["to"], document["who"]) == (
        "p1",
        "v20250819-f3b8541",
        "alice",
    )
    assert document["diffUrl"] == "https://git/c/9f2c4e1aa5b6c7d8e9f00112233445566778899a"


def test_a_500_is_retried_with_backoff_until_it_is_accepted(receiver: WebhookReceiver) -> None:
    notifier = notifier_to(receiver.url("flaky/2", "flaky"))
    before = sent("sent")
    notifier.submit(notice("p2"))
    assert len(receiver.wait("flaky", 3)) == 3
    assert notifier.join(10)
    assert sent("sent") == before + 1


def test_a_receiver_that_always_fails_is_given_up_on_and_logged_without_its_url(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    url = receiver.url("fail", "always")
    told: list[tuple[str, str]] = []
    destination = Destination(url, NotificationFormat.JSON, None, "Secret a/b")
    notifier = WebhookNotifier(
        lambda _: destination,
        failed=lambda n, problem: told.append((n.promotion, problem)),
        attempts=3,
        backoff=0.05,
    )
    before = sent("failed")
    with caplog.at_level(logging.INFO):
        notifier.submit(notice("p3"))
        assert notifier.join(10)
    assert len(receiver.deliveries("always")) == 3
    assert sent("failed") == before + 1
    assert "not sent to Secret a/b: answered 500" in caplog.text
    assert told == [("p3", "notification not sent to the webhook of Secret a/b: answered 500")]
    assert url not in caplog.text and str(receiver.port) not in caplog.text


def test_a_hanging_receiver_never_blocks_submit_and_each_post_ends_at_its_deadline(
    receiver: WebhookReceiver,
) -> None:
    notifier = notifier_to(receiver.url("hang", "hangs"), attempts=1, deadline=0.5)
    for n in range(5):
        notifier.submit(notice(f"h{n}"))
    assert not notifier.join(0)  # submit returned while the receiver still holds the POSTs
    assert notifier.join(15)  # 5 POSTs, 2 workers, each cut at its deadline
    assert len(receiver.deliveries("hangs")) == 5


def test_a_full_queue_drops_with_a_log_line_and_a_metric(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    destination = Destination(receiver.url("ok", "full"), NotificationFormat.JSON)

    def slow_resolve(_: Notice) -> Destination:
        release.wait(30)  # the one worker is busy (a slow API server, say)
        return destination

    notifier = WebhookNotifier(slow_resolve, capacity=2, workers=1)
    before = sent("dropped")
    with caplog.at_level(logging.WARNING):
        for n in range(6):
            notifier.submit(notice(f"f{n}"))
    dropped = sent("dropped") - before
    assert dropped in (3, 4)  # 2 queued, 1 in the worker unless it had not taken one yet
    assert (
        "notification queue full (2): dropped the Succeeded notice of Promotion shop/f5"
        in caplog.text
    )
    release.set()
    assert notifier.join(15)
    assert len(receiver.wait("full", 6 - int(dropped))) == 6 - dropped  # the rest went out
