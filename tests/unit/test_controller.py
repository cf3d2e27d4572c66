"""The Promotion controller's list/watch/queue, against a source fed by the test.

The e2e tests prove the same paths against a real API server (every Promotion there goes
through this controller); these pin the queue's rules: finished Promotions cost nothing,
a spec edit is seen again, one Promotion never runs twice at once, delays re-run it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from promotion_operator.k8s import NotFoundError, Object, Page, WatchExpiredError
from promotion_operator.lifecycle.controller import PromotionController

_WAIT = 10.0


def body(name: str, *, generation: int = 1, finished: bool = False, rv: int = 1) -> Object:
    status: dict[str, Any] = {}
    if finished:
        status = {"phase": "Succeeded", "observedGeneration": generation}
    return {
        "metadata": {
            "uid": f"uid-{name}",
            "namespace": "ns",
            "name": name,
            "generation": generation,
            "resourceVersion": str(rv),
        },
        "spec": {"environment": "prod", "version": "v1"},
        "status": status,
    }


class Source:
    """Pages of a LIST, then watch events the test puts in a queue."""

    def __init__(self, objects: list[Object]) -> None:
        self.objects = {o["metadata"]["name"]: o for o in objects}
        self.events: queue.Queue[tuple[str, Object] | Exception] = queue.Queue()
        self.lists = 0
        self.pages: list[int] = []

    def get_promotion(self, namespace: str, name: str) -> Object:
        del namespace
        if name not in self.objects:
            raise NotFoundError(name)
        return self.objects[name]

    def list_promotions_page(self, namespace: str | None, *, limit: int, token: str | None) -> Page:
        del namespace
        if token is None:
            self.lists += 1
        start = int(token or 0)
        items = sorted(self.objects.values(), key=lambda o: str(o["metadata"]["name"]))
        chunk = items[start : start + limit]
        self.pages.append(len(chunk))
        more = start + limit < len(items)
        return Page(chunk, str(start + limit) if more else None, "100")

    def watch_promotions(
        self, namespace: str | None, resource_version: str, *, timeout: int = 300
    ) -> Iterator[tuple[str, Object]]:
        del namespace, resource_version, timeout
        while True:
            event = self.events.get()
            if isinstance(event, Exception):
                raise event
            yield event

    def emit(self, kind: str, obj: Object) -> None:
        if kind == "DELETED":
            self.objects.pop(obj["metadata"]["name"], None)
        else:
            self.objects[obj["metadata"]["name"]] = obj
        self.events.put((kind, obj))


class Recorder:
    """The work function: records each call; returns what `answer` says."""

    def __init__(self, answer: Callable[[Object, int], float | None] | None = None) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self.answer = answer or (lambda _obj, _attempt: None)
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.overlap = False

    def __call__(self, obj: Object, attempt: int) -> float | None:
        name = obj["metadata"]["name"]
        with self.lock:
            self.overlap |= name in self.running
            self.running.add(name)
        try:
            result = self.answer(obj, attempt)
        finally:
            with self.lock:
                self.running.discard(name)
                self.calls.append((name, obj["metadata"]["generation"], attempt))
        return result

    def names(self) -> list[str]:
        with self.lock:
            return [name for name, _, _ in self.calls]


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def started(source: Source, work: Recorder, **kwargs: Any) -> PromotionController:
    controller = PromotionController(source, work, namespaces=["ns"], page_size=3, **kwargs)
    controller.start()
    assert controller.wait_synced(_WAIT)
    return controller


def test_finished_promotions_are_neither_reconciled_nor_kept() -> None:
    history = [body(f"old-{i:02d}", finished=True) for i in range(10)]
    source = Source([*history, body("new")])
    work = Recorder()
    controller = started(source, work)
    try:
        until(lambda: work.names() == ["new"])
        assert source.pages == [3, 3, 3, 2]  # read in pages, never one response
        assert controller.stats.listed == 11
        until(lambda: controller.tracked() == 1)  # the settled new one; no history
        source.emit("MODIFIED", body("new", finished=True, rv=2))
        until(lambda: controller.tracked() == 0)
    finally:
        controller.stop()


def test_a_status_change_triggers_nothing_but_a_spec_edit_does_also_when_finished() -> None:
    source = Source([body("done", finished=True), body("busy")])
    work = Recorder()
    controller = started(source, work)
    try:
        until(lambda: work.names() == ["busy"])
        source.emit("MODIFIED", body("busy", rv=5))  # our own status write: same generation
        source.emit("MODIFIED", body("done", generation=2, rv=6))  # spec edit of a finished one
        until(lambda: work.names() == ["busy", "done"])
        time.sleep(0.1)
        assert work.calls == [("busy", 1, 0), ("done", 2, 0)]
    finally:
        controller.stop()


def test_a_delay_runs_the_promotion_again_with_the_next_attempt_on_a_fresh_read() -> None:
    def answer(obj: Object, attempt: int) -> float | None:
        assert obj is source.objects[obj["metadata"]["name"]]
        return 0.01 if attempt < 3 else None

    source = Source([body("waiting")])
    work = Recorder(answer)
    controller = started(source, work)
    try:
        until(lambda: len(work.calls) == 4)
        time.sleep(0.1)
        assert [attempt for _, _, attempt in work.calls] == [0, 1, 2, 3]
    finally:
        controller.stop()


def test_a_new_generation_restarts_the_attempts() -> None:
    source = Source([body("p")])
    work = Recorder(lambda obj, _attempt: 0.01 if obj["metadata"]["generation"] == 1 else None)
    controller = started(source, work)
    try:
        until(lambda: len(work.calls) >= 3)
        source.emit("MODIFIED", body("p", generation=2, rv=9))
        until(lambda: any(gen == 2 for _, gen, _ in work.calls))
        assert [c for c in work.calls if c[1] == 2] == [("p", 2, 0)]
    finally:
        controller.stop()


def test_one_promotion_never_runs_twice_at_once() -> None:
    release = threading.Event()

    def answer(obj: Object, _attempt: int) -> float | None:
        if obj["metadata"]["generation"] == 1:
            release.wait(_WAIT)
        return None

    source = Source([body("slow")])
    work = Recorder(answer)
    controller = started(source, work)
    try:
        until(lambda: "slow" in work.running)
        source.emit("MODIFIED", body("slow", generation=2, rv=3))  # edited while it runs
        time.sleep(0.1)
        assert work.calls == []
        release.set()
        until(lambda: len(work.calls) == 2)
        assert not work.overlap
        assert work.calls == [("slow", 1, 0), ("slow", 2, 0)]
    finally:
        controller.stop()


def test_a_deleted_promotion_is_not_run_again() -> None:
    source = Source([body("gone")])
    work = Recorder(lambda _obj, _attempt: 0.05)
    controller = started(source, work)
    try:
        until(lambda: len(work.calls) == 1)
        source.emit("DELETED", body("gone"))
        time.sleep(0.2)
        assert len(work.calls) <= 2  # at most the round already due
        assert controller.tracked() == 0
    finally:
        controller.stop()


def test_an_expired_watch_lists_again_and_forgets_what_was_deleted_meanwhile() -> None:
    source = Source([body("a"), body("b")])
    work = Recorder()
    controller = started(source, work)
    try:
        until(lambda: len(work.calls) == 2)
        del source.objects["b"]  # deleted while the watch was down: no event
        source.objects["c"] = body("c")
        source.events.put(WatchExpiredError("too old"))
        until(lambda: "c" in work.names())
        assert source.lists == 2
        assert controller.stats.relists == 1
        assert sorted(work.names()) == ["a", "b", "c"]  # a and b are not run again
    finally:
        controller.stop()


def test_a_crashing_round_is_retried_and_the_queue_goes_on() -> None:
    def answer(obj: Object, attempt: int) -> float | None:
        if obj["metadata"]["name"] == "buggy" and attempt == 0:
            raise RuntimeError("a bug")
        return None

    source = Source([body("buggy"), body("fine")])
    work = Recorder(answer)
    controller = started(source, work, error_backoff_max=0.01)
    try:
        until(lambda: work.names().count("buggy") == 2 and "fine" in work.names())
    finally:
        controller.stop()


@pytest.mark.parametrize("workers", [1, 4])
def test_many_unfinished_promotions_all_run_with_bounded_workers(workers: int) -> None:
    source = Source([body(f"p{i:03d}") for i in range(40)])
    work = Recorder()
    controller = started(source, work, workers=workers)
    try:
        until(lambda: len(work.calls) == 40)
        assert sorted(work.names()) == sorted(source.objects)
    finally:
        controller.stop()


def test_namespace_patterns_watch_every_namespace_and_keep_the_matching_ones() -> None:
    def in_namespace(name: str, namespace: str) -> Object:
        obj = body(name)
        obj["metadata"]["namespace"] = namespace
        obj["metadata"]["uid"] = f"uid-{namespace}-{name}"
        return obj

    source = Source(
        [in_namespace("a", "e2e-1"), in_namespace("b", "other"), in_namespace("c", "e2e-skip")]
    )
    work = Recorder()
    controller = PromotionController(source, work, namespaces=["e2e-*", "!e2e-skip"])
    controller.start()
    try:
        assert controller.wait_synced(_WAIT)
        until(lambda: work.names() == ["a"])
        source.emit("ADDED", in_namespace("d", "e2e-2"))
        until(lambda: work.names() == ["a", "d"])
    finally:
        controller.stop()


def test_a_stopping_controller_waits_for_the_rounds_still_running() -> None:
    release = threading.Event()
    source = Source([body("slow")])

    def answer(_obj: Object, _attempt: int) -> float | None:
        release.wait(_WAIT)
        return None

    work = Recorder(answer)
    controller = started(source, work)
    until(lambda: "slow" in work.running)
    controller.stop()
    assert not controller.drain(timeout=0.2)  # still pushing, say
    release.set()
    assert controller.drain(timeout=_WAIT)
    assert work.calls == [("slow", 1, 0)]
