"""The pure parts of the lifecycle: backoff, request ordering, who asked, healthy runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from promotion_operator import REQUESTED_BY_ANNOTATION
from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.models import EnvironmentStatus, HealthStatus, Phase
from promotion_operator.domain.seal import healthy_since_seal
from promotion_operator.health import Observation
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.newest import request_time
from promotion_operator.lifecycle.objects import Environment, Promotion
from promotion_operator.lifecycle.observe import healthy_for, healthy_since
from promotion_operator.lifecycle.promotions import backoff

FAR_FUTURE = "9999-12-31T23:59:59.999999Z"
STARTED = "2025-01-01T10:00:00.123456Z"
NOW = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)

# -- backoff ---------------------------------------------------------------------------


def test_backoff_doubles_from_the_initial_delay() -> None:
    config = OperatorConfig(backoff_initial=2.0, backoff_max=60.0)
    assert [backoff(config, attempt) for attempt in range(6)] == [2, 4, 8, 16, 32, 60]


def test_backoff_is_capped_even_for_huge_attempts() -> None:
    config = OperatorConfig(backoff_initial=0.5, backoff_max=300.0)
    assert backoff(config, 9) == 256.0
    assert backoff(config, 10) == 300.0
    assert backoff(config, 10_000) == 300.0
    assert isinstance(backoff(config, 10_000), float)


def test_backoff_never_decreases() -> None:
    config = OperatorConfig(backoff_initial=1.0, backoff_max=1e9)
    delays = [backoff(config, attempt) for attempt in range(40)]
    assert delays == sorted(delays)
    assert delays[0] == 1.0


# -- Promotion.parse / _request_time ---------------------------------------------------


def _promotion(
    *,
    generation: int = 2,
    status: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    managed: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "namespace": "shop",
        "name": "prod-v2",
        "uid": "uid-1",
        "generation": generation,
        "creationTimestamp": "2025-01-01T09:00:00Z",
    }
    if annotations is not None:
        meta["annotations"] = annotations
    if managed is not None:
        meta["managedFields"] = managed
    obj: dict[str, Any] = {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Promotion",
        "metadata": meta,
        "spec": {"environment": "prod", "version": "v2", "reason": "hotfix"},
    }
    if status is not None:
        obj["status"] = status
    return obj


def test_request_time_is_started_at_of_the_current_generation() -> None:
    obj = _promotion(generation=2, status={"observedGeneration": 2, "startedAt": STARTED})
    assert request_time(obj) == STARTED


@pytest.mark.parametrize(
    "status",
    [
        None,
        {},
        {"observedGeneration": 1, "startedAt": STARTED},  # spec changed since
        {"observedGeneration": 2},  # no start recorded
    ],
)
def test_request_time_of_a_not_started_generation_is_far_future(
    status: dict[str, Any] | None,
) -> None:
    assert request_time(_promotion(generation=2, status=status)) == FAR_FUTURE


def test_a_waiting_generation_orders_after_any_started_one() -> None:
    started = request_time(
        _promotion(
            generation=2,
            status={"observedGeneration": 2, "startedAt": "2999-12-31T23:59:59.999999Z"},
        )
    )
    waiting = request_time(_promotion(generation=2, status={"observedGeneration": 1}))
    assert started < waiting


def test_parse_promotion() -> None:
    obj = _promotion(status={"phase": "Verifying", "observedGeneration": 2, "startedAt": STARTED})
    promotion = Promotion.parse(obj)
    assert (promotion.namespace, promotion.name, promotion.uid, promotion.generation) == (
        "shop",
        "prod-v2",
        "uid-1",
        2,
    )
    assert (promotion.spec.environment, promotion.spec.version, promotion.spec.reason) == (
        "prod",
        "v2",
        "hotfix",
    )
    assert promotion.status.phase == Phase.VERIFYING
    assert promotion.status.started_at == STARTED
    assert promotion.current
    assert promotion.raw is obj


def test_parse_promotion_without_status_or_generation() -> None:
    obj = _promotion()
    del obj["metadata"]["generation"]
    promotion = Promotion.parse(obj)
    assert promotion.generation == 1
    assert promotion.status.phase is None
    assert not promotion.current


def test_status_of_an_older_generation_is_not_current() -> None:
    promotion = Promotion.parse(_promotion(generation=3, status={"observedGeneration": 2}))
    assert not promotion.current


# -- requested_by ----------------------------------------------------------------------


def _managed(manager: str | None, spec_fields: dict[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"operation": "Update", "apiVersion": "promotion.gitops.dev/v1alpha1"}
    if manager is not None:
        entry["manager"] = manager
    entry["fieldsV1"] = {} if spec_fields is None else {"f:spec": spec_fields}
    return entry


def test_requested_by_annotation_wins() -> None:
    obj = _promotion(
        annotations={REQUESTED_BY_ANNOTATION: "alice@example.com"},
        managed=[_managed("kubectl-edit", {"f:version": {}})],
    )
    assert Promotion.parse(obj).requested_by() == "alice@example.com"


def test_requested_by_is_the_manager_that_set_spec_version() -> None:
    obj = _promotion(
        annotations={"other": "x"},
        managed=[
            _managed("kubectl-client-side-apply", {"f:environment": {}, "f:version": {}}),
            _managed("bob-script", {"f:version": {}}),
            _managed("promotion-operator", None),  # status writes
            _managed("kubectl-annotate", {"f:reason": {}}),
        ],
    )
    assert Promotion.parse(obj).requested_by() == "bob-script"


def test_requested_by_ignores_an_empty_annotation() -> None:
    obj = _promotion(
        annotations={REQUESTED_BY_ANNOTATION: ""},
        managed=[_managed("carol", {"f:version": {}})],
    )
    assert Promotion.parse(obj).requested_by() == "carol"


@pytest.mark.parametrize(
    "managed",
    [
        None,
        [],
        [_managed("promotion-operator", None), _managed("kubectl-annotate", {"f:reason": {}})],
        [{"manager": "odd", "operation": "Update"}],
    ],
)
def test_requested_by_unknown(managed: list[dict[str, Any]] | None) -> None:
    assert Promotion.parse(_promotion(managed=managed)).requested_by() == "unknown"


def test_requested_by_manager_without_a_name_is_unknown() -> None:
    obj = _promotion(managed=[_managed(None, {"f:version": {}})])
    assert Promotion.parse(obj).requested_by() == "unknown"


# -- healthy_since / healthy_for -------------------------------------------------------

SINCE = "2025-01-01T11:00:00Z"
KEY = b"k" * 32
UID = "6b1f0c9e-env-uid"


def _healthy(tag: str | None) -> Observation:
    return Observation(HealthStatus.HEALTHY, {"app": tag, "worker": tag})


def _environment(status: EnvironmentStatus) -> Environment:
    return Environment.parse(
        {
            "metadata": {"namespace": "shop", "name": "staging", "generation": 1, "uid": UID},
            "spec": {
                "git": {"url": "https://git.example.com/shop/deploy.git"},
                "overlay": {"path": "k8s/overlays/staging"},
                "images": [{"name": "app"}, {"name": "worker"}],
            },
            "status": status.model_dump(by_alias=True, exclude_none=True, mode="json"),
        }
    )


def _previous(
    health: HealthStatus | None = HealthStatus.HEALTHY,
    live: str | None = "v1",
    since: str | None = SINCE,
    *,
    seal: str | bool | None = True,
) -> Environment:
    """The Environment as last written; `seal=True` seals it with the operator's key."""
    if seal is True:
        sealed = (
            live
            and since
            and healthy_since_seal(KEY, uid=UID, live_version=live, healthy_since=since)
        )
        seal = sealed or None
    status = EnvironmentStatus(
        health=health, live_version=live, healthy_since=since, healthy_since_seal=seal or None
    )
    return _environment(status)


def test_healthy_since_kept_while_the_same_version_stays_healthy() -> None:
    assert healthy_since(_previous(), _healthy("v1"), NOW, KEY) == SINCE


def test_healthy_since_from_a_status_read_off_the_wire() -> None:
    seal = healthy_since_seal(KEY, uid=UID, live_version="v1", healthy_since=SINCE)
    wire = {"health": "Healthy", "liveVersion": "v1", "healthySince": SINCE}
    env = _environment(EnvironmentStatus.model_validate({**wire, "healthySinceSeal": seal}))
    assert healthy_since(env, _healthy("v1"), NOW, KEY) == SINCE


@pytest.mark.parametrize(
    "previous",
    [
        _previous(live="v0"),  # the version changed
        _previous(health=HealthStatus.PROGRESSING, since=None),
        _previous(health=HealthStatus.DEGRADED),  # a stale since must not be reused
        _previous(since=None),
        _previous(health=None, live=None, since=None),  # first look
    ],
)
def test_healthy_since_starts_a_new_run(previous: Environment) -> None:
    assert healthy_since(previous, _healthy("v1"), NOW, KEY) == "2025-01-01T12:00:00Z"


@pytest.mark.parametrize(
    "forged",
    [
        _previous(seal=None),  # a tenant wrote healthySince, no seal
        _previous(seal="v1:" + "0" * 64),  # a made-up seal
        _previous(
            seal=healthy_since_seal(b"x" * 32, uid=UID, live_version="v1", healthy_since=SINCE)
        ),
        _previous(
            seal=healthy_since_seal(KEY, uid="other-env", live_version="v1", healthy_since=SINCE)
        ),  # a real seal copied from another Environment
        _previous(
            seal=healthy_since_seal(
                KEY, uid=UID, live_version="v1", healthy_since="2025-01-01T11:30:00Z"
            )
        ),  # a real seal of a later start, with an earlier healthySince pasted beside it
    ],
    ids=["unsealed", "made-up", "other-key", "other-environment", "other-start"],
)
def test_a_forged_healthy_since_restarts_the_soak_clock(forged: Environment) -> None:
    assert healthy_since(forged, _healthy("v1"), NOW, KEY) == "2025-01-01T12:00:00Z"
    assert healthy_for(forged, _healthy("v1"), NOW, KEY) == dt.timedelta(0)


@pytest.mark.parametrize(
    "observation",
    [
        Observation(HealthStatus.PROGRESSING, {"app": "v1"}),
        Observation(HealthStatus.DEGRADED, {"app": "v1"}),
        Observation(HealthStatus.UNKNOWN, {"app": "v1"}),
        Observation(HealthStatus.HEALTHY, {"app": "v1", "worker": "v2"}),  # no one version
        Observation(HealthStatus.HEALTHY, {"app": None}),
        Observation(HealthStatus.HEALTHY, {}),
    ],
)
def test_healthy_since_is_none_when_not_healthy_on_one_version(observation: Observation) -> None:
    assert healthy_since(_previous(), observation, NOW, KEY) is None


def test_healthy_for_counts_from_the_start_of_the_run() -> None:
    assert healthy_for(_previous(), _healthy("v1"), NOW, KEY) == dt.timedelta(hours=1)


def test_healthy_for_is_zero_for_a_new_version_or_when_unhealthy() -> None:
    env = _previous()
    assert healthy_for(env, _healthy("v2"), NOW, KEY) == dt.timedelta(0)
    assert healthy_for(env, Observation(HealthStatus.DEGRADED, {"app": "v1"}), NOW, KEY) == (
        dt.timedelta(0)
    )


def test_environment_with_an_invalid_version_pattern_is_a_permanent_error() -> None:
    obj = {
        "metadata": {"namespace": "shop", "name": "staging"},
        "spec": {
            "git": {"url": "https://git.example.com/shop/deploy.git"},
            "overlay": {"path": "k8s/overlays/staging"},
            "images": [{"name": "app"}],
            "versionPattern": "v(",
        },
    }
    with pytest.raises(PermanentError) as caught:
        Environment.parse(obj)
    assert caught.value.reason == Reason.INVALID_SPEC
