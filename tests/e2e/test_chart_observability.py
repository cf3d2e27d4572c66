"""The chart's metrics Service, optional ServiceMonitor and default-webhook wiring."""

from __future__ import annotations

from typing import Any

import pytest

from support.chart import render_chart
from support.kube import Kube

pytestmark = pytest.mark.e2e


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def operator_args(documents: list[dict[str, Any]]) -> list[str]:
    (deployment,) = by_kind(documents, "Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_by_default_a_metrics_service_and_no_service_monitor(kube: Kube) -> None:
    documents = render_chart(kube, "promotion-system")
    (service,) = [
        d for d in by_kind(documents, "Service") if d["metadata"]["name"].endswith("-metrics")
    ]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics"}]
    assert service["spec"]["selector"]["app.kubernetes.io/name"] == "promotion-operator"
    assert by_kind(documents, "ServiceMonitor") == []
    args = operator_args(documents)
    assert "--metrics-port=9090" in args and "--log-format=text" in args
    assert not any(a.startswith("--notify-webhook-secret") for a in args)


def test_service_monitor_json_logs_and_the_default_webhook(kube: Kube) -> None:
    documents = render_chart(
        kube,
        "promotion-system",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prometheus",
        "logFormat=json",
        "notifications.webhookSecret=team-hook",
        "notifications.format=slack",
        "watchNamespaces={team-a}",
    )
    (monitor,) = by_kind(documents, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    args = operator_args(documents)
    assert "--notify-webhook-secret=promotion-system/team-hook" in args
    assert "--notify-format=slack" in args and "--log-format=json" in args
    # the default webhook's Secret is readable by name only, even with watchNamespaces set
    (role,) = [d for d in by_kind(documents, "Role") if d["metadata"]["name"].endswith("-webhook")]
    assert role["metadata"]["namespace"] == "promotion-system"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["team-hook"],
            "verbs": ["get"],
        }
    ]
