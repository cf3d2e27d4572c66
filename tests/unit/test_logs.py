"""Log lines name the object they are about, in text and JSON."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from promotion_operator.logs import JSONLines, ObjectFilter, Text, about, handling


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ObjectFilter())
    logger = logging.getLogger("promotion_operator.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out, handler
    logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_handled_object_even_from_a_worker_thread(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, handler = captured
    handler.setFormatter(JSONLines())
    with handling("Promotion", "shop", "p1"):
        logger.info("verifying %s", "v1")
        # kopf runs sync handlers in a copy of the context; so does asyncio.to_thread
        context = contextvars.copy_context()
        worker = threading.Thread(target=context.run, args=(logger.warning, "from a thread"))
        worker.start()
        worker.join()
    logger.info("after")

    first, second, third = lines(out)
    assert first["message"] == "verifying v1"
    assert first["level"] == "INFO"
    assert first["logger"] == "promotion_operator.test_logs"
    assert first["object"] == {"kind": "Promotion", "namespace": "shop", "name": "p1"}
    assert second["object"] == first["object"]
    assert "object" not in third


def test_an_explicit_object_and_kopfs_own_win_over_the_context(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, handler = captured
    handler.setFormatter(JSONLines())
    with handling("Promotion", "shop", "p1"):
        logger.info("sent", extra=about("Promotion", "shop", "p2"))
    kopf_ref = {
        "apiVersion": "v1",
        "kind": "Environment",
        "namespace": "a",
        "name": "b",
        "uid": "u",
    }
    logger.info("kopf", extra={"k8s_ref": kopf_ref})
    sent, kopf = lines(out)
    assert sent["object"] == {"kind": "Promotion", "namespace": "shop", "name": "p2"}
    assert kopf["object"] == {"kind": "Environment", "namespace": "a", "name": "b"}


def test_text_lines_are_prefixed_with_the_object(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, handler = captured
    handler.setFormatter(Text())
    with handling("Promotion", "shop", "p1"):
        logger.info("verifying")
    assert out.getvalue().rstrip().endswith("promotion_operator.test_logs: [shop/p1] verifying")
