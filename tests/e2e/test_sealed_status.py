"""A tenant's status patch cannot shorten a soak: healthySince counts only under the
operator's seal, whose key sits in a Secret of the operator's own namespace."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from promotion_operator.domain.times import parse_time, timestamp
from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.world import NEW_VERSION, World, promotion
from support.operator import wait_for, wait_phase

pytestmark = pytest.mark.e2e


def test_a_forged_healthy_since_does_not_shorten_the_soak(
    kube: Kube, operator: OperatorProcess, fresh_world: World, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    kube.apply(*fresh_world.objects(ns, soak="1h"))

    def sealed_dev() -> dict[str, Any] | None:
        status = kube.get("environment", "tvhub-dev", ns).get("status") or {}
        return status if status.get("healthySinceSeal") else None

    wait_for("dev's sealed healthySince", sealed_dev, logs=operator.logs)
    # the attack: a tenant who may edit status says dev has been healthy for two hours
    forged = timestamp(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    patch = json.dumps({"status": {"healthySince": forged}})
    kube.kubectl(
        "patch", "environment", "tvhub-dev", "-n", ns,
        "--subresource=status", "--type=merge", f"--patch={patch}",
    )  # fmt: skip
    before = fresh_world.remote_head()
    kube.apply(promotion(ns, "p", NEW_VERSION, timeout="8s"))

    status = wait_phase(kube, operator, ns, "p", "Failed")

    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Soaking", status
    soak = next(c for c in status["checks"] if c["name"] == "Soak")
    ran = int(soak["message"].split("healthily for ")[1].split("s ")[0])
    assert ran < 60, soak  # counted from the operator's own look, not two hours
    assert fresh_world.remote_head() == before
    # and the operator put its own start back, sealed
    restored = kube.get("environment", "tvhub-dev", ns)["status"]
    assert parse_time(restored["healthySince"]) > parse_time(forged) + dt.timedelta(hours=1)
