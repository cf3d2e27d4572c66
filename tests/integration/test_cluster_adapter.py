"""The k8s adapter and the health sources against the real API server.

No controller runs here, so a Deployment's status is written through the status
subresource, as the Deployment controller would after a rollout.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from promotion_operator import k8s
from promotion_operator.domain.errors import Reason, RetryableError
from promotion_operator.domain.models import HealthStatus
from promotion_operator.lifecycle import environments
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.objects import Environment
from promotion_operator.lifecycle.observe import observe
from promotion_operator.lifecycle.ports import live_ports
from promotion_sandbox.argocd import application, application_status
from support.kube import Kube

pytestmark = pytest.mark.integration
APP = "registry.example.com/team/app"


@pytest.fixture
def cluster(kube: Kube) -> Iterator[k8s.Cluster]:
    k8s.load_config(str(kube.kubeconfig))
    yield k8s.Cluster()


def environment(namespace: str, health: dict[str, Any]) -> Environment:
    return Environment.parse(
        {
            "metadata": {"name": "dev", "namespace": namespace, "generation": 1},
            "spec": {
                "git": {"url": "https://git.example.com/x.git"},
                "overlay": {"path": "k8s/overlays/dev"},
                "images": [{"name": APP}],
                "health": health,
            },
        }
    )


def deployment(namespace: str, tag: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": namespace, "labels": {"tier": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {"containers": [{"name": "app", "image": f"{APP}:{tag}"}]},
            },
        },
    }


def set_rollout(kube: Kube, namespace: str, *, updated: int, available: int) -> None:
    generation = kube.get("deployment", "app", namespace)["metadata"]["generation"]
    status = {
        "observedGeneration": generation,
        "replicas": 2,
        "updatedReplicas": updated,
        "readyReplicas": available,
        "availableReplicas": available,
        "conditions": [
            {
                "type": "Available",
                "status": "True" if available == 2 else "False",
                "reason": "MinimumReplicasAvailable",
                "lastUpdateTime": "2025-08-19T10:00:00Z",
                "lastTransitionTime": "2025-08-19T10:00:00Z",
            }
        ],
    }
    kube.kubectl(
        "patch",
        "deployment",
        "app",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def test_deployments_source_follows_a_rollout(
    kube: Kube, namespace: str, cluster: k8s.Cluster
) -> None:
    env = environment(namespace, {"deployments": {"namespace": namespace, "selector": "tier=web"}})
    kube.apply(deployment(namespace, "v20250819-f3b8541"))
    set_rollout(kube, namespace, updated=1, available=1)
    rolling = observe(OperatorConfig(), cluster, env)
    assert rolling.health == HealthStatus.PROGRESSING
    assert "1/2" in rolling.message
    set_rollout(kube, namespace, updated=2, available=2)
    done = observe(OperatorConfig(), cluster, env)
    assert done.health == HealthStatus.HEALTHY
    assert done.live_version == "v20250819-f3b8541"


def test_argocd_source_reads_what_argocd_writes(
    kube: Kube, namespace: str, cluster: k8s.Cluster
) -> None:
    env = environment(namespace, {"argocd": {"application": "dev", "namespace": namespace}})
    missing = observe(OperatorConfig(), cluster, env)
    assert missing.health == HealthStatus.UNKNOWN and "not found" in missing.message
    app = application("dev", namespace, "https://git.example.com/x.git", "k8s/overlays/dev")
    app["status"] = application_status(
        [f"{APP}:v20250819-f3b8541"], sync="OutOfSync", health="Progressing"
    )
    kube.apply(app)
    assert observe(OperatorConfig(), cluster, env).health == HealthStatus.PROGRESSING
    app["status"] = application_status([f"{APP}:v20250819-f3b8541"])
    kube.apply(app)
    synced = observe(OperatorConfig(), cluster, env)
    assert synced.health == HealthStatus.HEALTHY and synced.runs("v20250819-f3b8541")


def test_environment_status_is_written_through_the_subresource(
    kube: Kube, namespace: str, cluster: k8s.Cluster, tmp_path: Path
) -> None:
    obj = {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": "dev", "namespace": namespace},
        "spec": {
            "git": {"url": "https://127.0.0.1:9/x.git"},
            "overlay": {"path": "k8s/overlays/dev"},
            "images": [{"name": APP}],
            "health": {"argocd": {"application": "dev", "namespace": namespace}},
        },
    }
    kube.apply(obj)
    stored = kube.get("environment", "dev", namespace)
    config = OperatorConfig(cache_dir=tmp_path, git_timeout=5)
    environments.refresh(
        config,
        live_ports(config, cluster),
        stored,
        dt.datetime.now(dt.UTC),
    )
    status = kube.get("environment", "dev", namespace)["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "GitUnreachable")
    assert status["health"] == "Unknown"


def test_forbidden_is_a_retryable_error_naming_what_is_missing(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    kube.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = kube.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    admin = json.loads(kube.kubeconfig.read_text())
    config = tmp_path / "nobody.kubeconfig"
    admin["users"] = [{"name": "sandbox-admin", "user": {"token": token}}]
    config.write_text(json.dumps(admin))
    try:
        k8s.load_config(str(config))
        with pytest.raises(RetryableError) as raised:
            k8s.Cluster().get_secret_data(namespace, "anything")
    finally:
        k8s.load_config(str(kube.kubeconfig))
    assert raised.value.reason == Reason.KUBERNETES_API_ERROR
    assert "cannot get secret/anything" in raised.value.message
    assert "403" in raised.value.message


def test_an_unreachable_api_server_is_a_retryable_error(kube: Kube, tmp_path: Path) -> None:
    """While kube-apiserver restarts, its port refuses connections: that must be a
    RetryableError the lifecycle sorts (the fault campaign saw it escape as a bug)."""
    config = yaml.safe_load(kube.kubeconfig.read_text())  # the sandbox writes JSON, also YAML
    for entry in config["clusters"]:
        entry["cluster"]["server"] = "https://127.0.0.1:9"
    closed = tmp_path / "kubeconfig"
    closed.write_text(yaml.safe_dump(config))
    k8s.load_config(str(closed))
    try:
        with pytest.raises(RetryableError) as caught:
            k8s.Cluster().get_environment("default", "dev")
    finally:
        k8s.load_config(str(kube.kubeconfig))
    assert caught.value.reason is Reason.KUBERNETES_API_ERROR
    assert "API server unreachable" in caught.value.message


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _events_on(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    out = kube.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
        "-o", "json",
    ).stdout  # fmt: skip
    return list(json.loads(out)["items"])


def _created(event: dict[str, Any]) -> int:
    return int(event["metadata"]["resourceVersion"])


def test_events_are_posted_in_the_background_in_order(
    kube: Kube, namespace: str, cluster: k8s.Cluster
) -> None:
    """post_event returns before the API server has the Event; flushing posts them all,
    in the order they were asked for, and the calls are timed by verb and resource."""
    kube.kubectl("create", "configmap", "subject", "-n", namespace)
    subject = kube.get("configmap", "subject", namespace)
    posted = _sample("promotion_operator_events_total", {"outcome": "posted"})
    timed = _sample(
        "promotion_operator_call_duration_seconds_count",
        {"kind": "kube", "operation": "create events"},
    )
    for reason in ("Pending", "Promoting", "Promoted"):
        cluster.post_event(subject, reason=reason, message=f"now {reason}")
    assert k8s.flush_events(timeout=30)
    # created in that order: etcd's revisions, which resourceVersions are here, say so
    events = sorted(_events_on(kube, namespace, "subject"), key=_created)
    assert [e["reason"] for e in events] == ["Pending", "Promoting", "Promoted"]
    assert all(e["source"]["component"] == "promotion-operator" for e in events)
    assert _sample("promotion_operator_events_total", {"outcome": "posted"}) == posted + 3
    assert (
        _sample(
            "promotion_operator_call_duration_seconds_count",
            {"kind": "kube", "operation": "create events"},
        )
        == timed + 3
    )


def test_an_api_server_refusing_events_fails_nothing(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """Without the right to create Events, post_event still returns, the Event is counted
    as failed, and the next caller is not held up."""
    kube.kubectl("create", "configmap", "subject", "-n", namespace)
    subject = kube.get("configmap", "subject", namespace)
    kube.kubectl("create", "serviceaccount", "mute", "-n", namespace)
    token = kube.kubectl("create", "token", "mute", "-n", namespace).stdout.strip()
    admin = json.loads(kube.kubeconfig.read_text())
    admin["users"] = [{"name": "sandbox-admin", "user": {"token": token}}]
    config = tmp_path / "mute.kubeconfig"
    config.write_text(json.dumps(admin))
    failed = _sample("promotion_operator_events_total", {"outcome": "failed"})
    try:
        k8s.load_config(str(config))
        k8s.Cluster().post_event(subject, reason="Pending", message="refused", warning=True)
        assert k8s.flush_events(timeout=30)
    finally:
        k8s.load_config(str(kube.kubeconfig))
    assert _sample("promotion_operator_events_total", {"outcome": "failed"}) == failed + 1
    assert _events_on(kube, namespace, "subject") == []
