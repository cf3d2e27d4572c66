"""Health sources: Argo CD and Deployment readings (pure), combining, and the HTTP source.

The HTTP tests run a real tiny server on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from promotion_operator.domain.images import split_reference
from promotion_operator.domain.models import HealthStatus, HTTPHealth
from promotion_operator.health import (
    Observation,
    combine,
    observe_argocd,
    observe_deployments,
    observe_http,
)

APP = "127.0.0.1:5000/team/app"
WORKER = "127.0.0.1:5000/team/worker"
DIGEST = "sha256:" + "ab" * 32


# -- split_reference -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("app:v1", ("app", "v1")),
        ("app", ("app", None)),
        ("team/app:v1", ("team/app", "v1")),
        ("127.0.0.1:5000/team/app:v1", ("127.0.0.1:5000/team/app", "v1")),
        ("127.0.0.1:5000/team/app", ("127.0.0.1:5000/team/app", None)),
        (f"app:v1@{DIGEST}", ("app", "v1")),
        (f"app@{DIGEST}", ("app", None)),
        (f"127.0.0.1:5000/team/app:v1@{DIGEST}", ("127.0.0.1:5000/team/app", "v1")),
        (f"127.0.0.1:5000/team/app@{DIGEST}", ("127.0.0.1:5000/team/app", None)),
    ],
)
def test_split_reference(reference: str, expected: tuple[str, str | None]) -> None:
    assert split_reference(reference) == expected


# -- Observation -----------------------------------------------------------------------


def test_live_version_is_the_tag_every_image_runs() -> None:
    observation = Observation(HealthStatus.HEALTHY, {APP: "v1", WORKER: "v1"})
    assert observation.live_version == "v1"
    assert observation.runs("v1")
    assert not observation.runs("v2")


@pytest.mark.parametrize(
    "images", [{APP: "v1", WORKER: "v2"}, {APP: "v1", WORKER: None}, {APP: None}, {}]
)
def test_no_live_version_when_tags_differ_or_are_unknown(images: dict[str, str | None]) -> None:
    observation = Observation(HealthStatus.HEALTHY, images)
    assert observation.live_version is None
    assert not observation.runs("v1")


def test_runs_needs_at_least_one_image() -> None:
    assert not Observation(HealthStatus.HEALTHY, {}).runs("v1")


# -- combine ---------------------------------------------------------------------------


def test_combine_nothing_is_unknown() -> None:
    combined = combine([])
    assert combined.health == HealthStatus.UNKNOWN
    assert combined.images == {}
    assert combined.message


@pytest.mark.parametrize(
    ("healths", "worst"),
    [
        ([HealthStatus.HEALTHY, HealthStatus.HEALTHY], HealthStatus.HEALTHY),
        ([HealthStatus.HEALTHY, HealthStatus.PROGRESSING], HealthStatus.PROGRESSING),
        ([HealthStatus.PROGRESSING, HealthStatus.UNKNOWN], HealthStatus.UNKNOWN),
        ([HealthStatus.HEALTHY, HealthStatus.UNKNOWN], HealthStatus.UNKNOWN),
        ([HealthStatus.UNKNOWN, HealthStatus.DEGRADED], HealthStatus.DEGRADED),
        ([HealthStatus.DEGRADED, HealthStatus.HEALTHY], HealthStatus.DEGRADED),
        (
            [HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.PROGRESSING],
            HealthStatus.DEGRADED,
        ),
    ],
)
def test_combine_worst_health_wins(healths: list[HealthStatus], worst: HealthStatus) -> None:
    assert combine([Observation(h) for h in healths]).health == worst
    assert combine([Observation(h) for h in reversed(healths)]).health == worst


def test_combine_agreeing_tags_are_kept_and_messages_joined() -> None:
    combined = combine(
        [
            Observation(HealthStatus.HEALTHY, {APP: "v1"}, ""),
            Observation(HealthStatus.PROGRESSING, {APP: "v1", WORKER: "v1"}, "rolling out"),
            Observation(HealthStatus.HEALTHY, {}, "http ok"),
        ]
    )
    assert combined.images == {APP: "v1", WORKER: "v1"}
    assert combined.live_version == "v1"
    assert combined.message == "rolling out; http ok"


@pytest.mark.parametrize("third", [None, "v1", "v2"])
def test_combine_disagreeing_tags_become_unknown(third: str | None) -> None:
    observations = [
        Observation(HealthStatus.HEALTHY, {APP: "v1", WORKER: "v1"}),
        Observation(HealthStatus.HEALTHY, {APP: "v2", WORKER: "v1"}),
    ]
    if third is not None:
        observations.append(Observation(HealthStatus.HEALTHY, {APP: third}))
    combined = combine(observations)
    assert combined.images == {APP: None, WORKER: "v1"}
    assert combined.live_version is None


# -- Argo CD ---------------------------------------------------------------------------


def _application(
    health: str | None = "Healthy",
    sync: str | None = "Synced",
    images: list[str] | None = None,
    operation: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if health is not None:
        status["health"] = {"status": health}
    if sync is not None:
        status["sync"] = {"status": sync, "revision": "abc"}
    if images is not None:
        status["summary"] = {"images": images}
    if operation is not None:
        status["operationState"] = {"phase": operation}
    return {"metadata": {"name": "shop-prod"}, "status": status}


def test_argocd_healthy_and_synced_reports_live_tags() -> None:
    app = _application(images=[f"{APP}:v7", f"{WORKER}:v7@{DIGEST}", "redis:7.2"])
    observation = observe_argocd(app, [APP, WORKER], "shop-prod")
    assert observation.health == HealthStatus.HEALTHY
    assert observation.images == {APP: "v7", WORKER: "v7"}
    assert observation.live_version == "v7"
    assert observation.message == ""


def test_argocd_image_missing_from_summary_has_unknown_tag() -> None:
    observation = observe_argocd(_application(images=[f"{APP}:v7"]), [APP, WORKER], "shop-prod")
    assert observation.health == HealthStatus.HEALTHY
    assert observation.images == {APP: "v7", WORKER: None}
    assert observation.live_version is None


def test_argocd_digest_only_reference_has_unknown_tag() -> None:
    observation = observe_argocd(_application(images=[f"{APP}@{DIGEST}"]), [APP], "x")
    assert observation.images == {APP: None}


def test_argocd_summary_with_two_tags_of_an_image_has_no_live_version() -> None:
    # e.g. two Deployments of the image at different tags, in either order
    for tags in (["v1", "v2"], ["v2", "v1"]):
        app = _application(images=[f"{APP}:{tag}" for tag in tags])
        observation = observe_argocd(app, [APP], "x")
        assert observation.live_version is None
        assert not observation.runs("v1")
        assert not observation.runs("v2")


def test_argocd_similar_names_are_not_confused() -> None:
    app = _application(images=[f"{APP}-canary:v9", "team/app:v9", f"{APP}:v7"])
    assert observe_argocd(app, [APP], "x").images == {APP: "v7"}


@pytest.mark.parametrize(
    ("health", "sync", "operation", "expected"),
    [
        ("Healthy", "OutOfSync", None, HealthStatus.PROGRESSING),
        ("Progressing", "Synced", None, HealthStatus.PROGRESSING),
        # Argo CD still shows the old health while a sync runs (measured on a real one)
        ("Healthy", "Synced", "Running", HealthStatus.PROGRESSING),
        ("Healthy", "Synced", "Succeeded", HealthStatus.HEALTHY),
        ("Healthy", None, "Running", HealthStatus.PROGRESSING),
        ("Degraded", "Synced", None, HealthStatus.DEGRADED),
        ("Degraded", "OutOfSync", None, HealthStatus.DEGRADED),
        ("Missing", "OutOfSync", None, HealthStatus.DEGRADED),
        ("Suspended", "Synced", None, HealthStatus.UNKNOWN),
        (None, None, None, HealthStatus.UNKNOWN),
    ],
)
def test_argocd_health_mapping(
    health: str | None, sync: str | None, operation: str | None, expected: HealthStatus
) -> None:
    app = _application(health, sync, [f"{APP}:v1"], operation)
    observation = observe_argocd(app, [APP], "shop-prod")
    assert observation.health == expected
    assert observation.images == {APP: "v1"}
    if expected != HealthStatus.HEALTHY:
        assert "shop-prod" in observation.message


def _syncing(synced: dict[str, Any], operated: dict[str, Any] | None, phase: str) -> dict[str, Any]:
    app = _application(images=[f"{APP}:v1"])
    app["status"]["sync"] = {"status": "Synced", **synced}
    app["status"]["operationState"] = {"phase": phase}
    if operated is not None:
        app["status"]["operationState"]["syncResult"] = operated
    return app


@pytest.mark.parametrize(
    ("synced", "operated", "phase", "expected"),
    [
        ({"revision": "new"}, {"revision": "new"}, "Succeeded", HealthStatus.HEALTHY),
        # a later commit changed nothing this app renders (real Argo CD moves sync.revision
        # and starts no sync): Synced means the live objects match it
        ({"revision": "new"}, {"revision": "old"}, "Succeeded", HealthStatus.HEALTHY),
        ({"revision": "new"}, {"revision": "new"}, "Running", HealthStatus.PROGRESSING),
        ({"revision": "new"}, {"revision": "new"}, "Failed", HealthStatus.DEGRADED),
        ({"revision": "new"}, {"revision": "new"}, "Error", HealthStatus.DEGRADED),
        # a failed sync of an older commit, since reverted: Synced to the revert
        ({"revision": "new"}, {"revision": "old"}, "Failed", HealthStatus.HEALTHY),
        ({"revision": "new"}, None, "Failed", HealthStatus.DEGRADED),
        # several sources: revisions compare as a whole
        ({"revisions": ["a", "b"]}, {"revisions": ["a", "b"]}, "Succeeded", HealthStatus.HEALTHY),
        ({"revisions": ["a", "b"]}, {"revisions": ["a", "b"]}, "Failed", HealthStatus.DEGRADED),
        ({"revisions": ["a", "b"]}, {"revisions": ["a", "c"]}, "Failed", HealthStatus.HEALTHY),
        ({"revision": "new"}, None, "Succeeded", HealthStatus.HEALTHY),
    ],
)
def test_argocd_healthy_needs_the_last_sync_operation_done(
    synced: dict[str, Any], operated: dict[str, Any] | None, phase: str, expected: HealthStatus
) -> None:
    assert observe_argocd(_syncing(synced, operated, phase), [APP], "a").health == expected


def test_argocd_missing_status_is_unknown() -> None:
    observation = observe_argocd({"metadata": {"name": "shop-prod"}}, [APP], "shop-prod")
    assert observation.health == HealthStatus.UNKNOWN
    assert observation.images == {APP: None}
    assert "health unknown, sync unknown" in observation.message


def test_argocd_failed_operation_is_named_in_the_message() -> None:
    observation = observe_argocd(_application("Degraded", "OutOfSync", [], "Failed"), [APP], "a")
    assert observation.health == HealthStatus.DEGRADED
    assert "operation Failed" in observation.message


# -- Deployments -----------------------------------------------------------------------


def _deployment(
    name: str,
    *images: str,
    replicas: int = 2,
    generation: int = 3,
    observed: int = 3,
    updated: int = 2,
    available: int = 2,
    total: int | None = None,
    available_condition: str | None = "True",
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "replicas": updated if total is None else total,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "readyReplicas": available,
    }
    if available_condition is not None:
        status["conditions"] = [
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            {"type": "Available", "status": available_condition, "reason": "x"},
        ]
    return {
        "metadata": {"name": name, "namespace": "shop", "generation": generation},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": f"c{i}", "image": i} for i in images]}},
        },
        "status": status,
    }


def test_rolled_out_deployments_are_healthy_with_their_tags() -> None:
    observation = observe_deployments(
        [
            _deployment("app", f"{APP}:v7", "docker.io/library/nginx:1.27"),
            _deployment("worker", f"{WORKER}:v7@{DIGEST}"),
        ],
        [APP, WORKER],
    )
    assert observation.health == HealthStatus.HEALTHY
    assert observation.images == {APP: "v7", WORKER: "v7"}
    assert observation.live_version == "v7"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"observed": 2}, "not observed"),
        ({"updated": 1}, "1/2 updated"),
        ({"available": 1}, "1/2 available"),
        ({"available_condition": "False"}, "not Available"),
    ],
)
def test_deployment_not_rolled_out_is_progressing(changes: dict[str, Any], words: str) -> None:
    observation = observe_deployments([_deployment("app", f"{APP}:v7", **changes)], [APP])
    assert observation.health == HealthStatus.PROGRESSING
    assert observation.images == {APP: "v7"}
    assert "deployment app" in observation.message
    assert words in observation.message


def test_deployment_with_old_pods_still_running_is_not_rolled_out() -> None:
    # Mid-rollout with maxSurge: the new pod exists (updated 1/1) but is not ready yet, the
    # old pod still serves (available 1/1, Available True). `kubectl rollout status` waits
    # here ("old replicas are pending termination"): the new version is not running yet.
    mid_rollout = _deployment("app", f"{APP}:v8", replicas=1, updated=1, available=1, total=2)
    observation = observe_deployments([mid_rollout], [APP])
    assert observation.health == HealthStatus.PROGRESSING


def test_deployment_without_the_images_is_ignored() -> None:
    broken_other = _deployment("db", "postgres:16", observed=1, available=0, updated=0)
    same_prefix = _deployment("canary", f"{APP}-canary:v9", available=0)
    observation = observe_deployments(
        [broken_other, same_prefix, _deployment("app", f"{APP}:v7")], [APP]
    )
    assert observation.health == HealthStatus.HEALTHY
    assert observation.images == {APP: "v7"}
    assert "db" not in observation.message


def test_image_that_no_deployment_runs_is_progressing() -> None:
    observation = observe_deployments([_deployment("app", f"{APP}:v7")], [APP, WORKER])
    assert observation.health == HealthStatus.PROGRESSING
    assert observation.images == {APP: "v7", WORKER: None}
    assert WORKER in observation.message


def test_no_deployments_at_all_is_progressing() -> None:
    observation = observe_deployments([], [APP])
    assert observation.health == HealthStatus.PROGRESSING
    assert observation.images == {APP: None}


def test_deployments_running_different_tags_have_no_live_version() -> None:
    # Two Deployments of the same image at different tags: the environment does not run
    # one version, whatever order the API server lists them in.
    for order in ([("a", "v1"), ("b", "v2")], [("a", "v2"), ("b", "v1")]):
        deployments = [_deployment(name, f"{APP}:{tag}") for name, tag in order]
        observation = observe_deployments(deployments, [APP])
        assert observation.live_version is None
        assert not observation.runs("v1")
        assert not observation.runs("v2")


def test_default_replicas_is_one() -> None:
    deployment = _deployment("app", f"{APP}:v7", updated=1, available=1)
    del deployment["spec"]["replicas"]
    assert observe_deployments([deployment], [APP]).health == HealthStatus.HEALTHY
    deployment["status"]["availableReplicas"] = 0
    assert observe_deployments([deployment], [APP]).health == HealthStatus.PROGRESSING


# -- HTTP ------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes]]] = {
        "/ok": (200, b"ok"),
        "/version": (200, json.dumps({"build": {"version": "v7", "number": 7}}).encode()),
        "/bad-json": (200, b"{not json"),
        "/list": (200, b"[1, 2]"),
        "/down": (503, b"down"),
        "/created": (201, b"{}"),
    }

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, b"no"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_http_expected_status_without_version_is_healthy(server: str) -> None:
    observation = observe_http(HTTPHealth(url=f"{server}/ok"), [APP])
    assert observation.health == HealthStatus.HEALTHY
    assert observation.images == {}


def test_http_other_status_is_degraded(server: str) -> None:
    observation = observe_http(HTTPHealth(url=f"{server}/down"), [APP])
    assert observation.health == HealthStatus.DEGRADED
    assert "503" in observation.message
    assert "200" in observation.message


def test_http_expected_status_is_configurable(server: str) -> None:
    spec = HTTPHealth(url=f"{server}/created", expected_status=201)
    assert observe_http(spec, [APP]).health == HealthStatus.HEALTHY
    spec = HTTPHealth(url=f"{server}/ok", expected_status=201)
    assert observe_http(spec, [APP]).health == HealthStatus.DEGRADED


def test_http_version_field_gives_every_image_its_tag(server: str) -> None:
    spec = HTTPHealth(url=f"{server}/version", version_field="build.version")
    observation = observe_http(spec, [APP, WORKER])
    assert observation.health == HealthStatus.HEALTHY
    assert observation.images == {APP: "v7", WORKER: "v7"}
    assert observation.live_version == "v7"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/bad-json", "version"),
        ("/list", "version"),
        ("/version", "build.missing"),
        ("/version", "build.number"),  # not a string
        ("/version", "build"),  # an object, not a string
        ("/version", "build.version.deeper"),
    ],
)
def test_http_without_a_string_version_is_unknown(server: str, path: str, field: str) -> None:
    observation = observe_http(HTTPHealth(url=f"{server}{path}", version_field=field), [APP])
    assert observation.health == HealthStatus.UNKNOWN
    assert observation.images == {}
    assert field in observation.message


def test_http_unreachable_is_unknown() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # nothing listens on the port any more: the connection is refused
    observation = observe_http(HTTPHealth(url=f"http://127.0.0.1:{port}/"), [APP], timeout=2)
    assert observation.health == HealthStatus.UNKNOWN
    assert "connection refused" in observation.message


def test_argocd_failed_sync_message_says_why_bounded() -> None:
    app = _application("Healthy", "OutOfSync", [f"{APP}:v1"], "Failed")
    app["status"]["operationState"]["message"] = "one or more objects failed to apply " + "x" * 5000
    observation = observe_argocd(app, [APP], "a")
    assert observation.health == HealthStatus.DEGRADED
    assert "operation Failed (one or more objects failed to apply" in observation.message
    assert len(observation.message) < 400


def test_argocd_sync_retrying_after_a_failure_is_degraded() -> None:
    # real Argo CD v3 retries a failed automated sync 5 times, phase Running meanwhile
    app = _application("Healthy", "OutOfSync", [f"{APP}:v1"], "Running")
    app["status"]["operationState"].update(
        retryCount=2, message="one or more objects failed to apply. Retrying attempt #2"
    )
    observation = observe_argocd(app, [APP], "a")
    assert observation.health == HealthStatus.DEGRADED
    assert "operation Running (retry 2 after a failed sync)" in observation.message
    assert "one or more objects failed to apply" in observation.message
    app["status"]["operationState"]["retryCount"] = 0
    assert observe_argocd(app, [APP], "a").health == HealthStatus.PROGRESSING
