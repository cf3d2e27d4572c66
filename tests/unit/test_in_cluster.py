"""When the operator connects as the Pod's ServiceAccount, and when through a kubeconfig.

controller-runtime's order: a kubeconfig given (flag or $KUBECONFIG) wins; else in a Pod
(the kubelet's KUBERNETES_SERVICE_HOST and the mounted token) the in-cluster config.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes.config import incluster_config

from promotion_operator.k8s import in_cluster


@pytest.fixture
def pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What a kubelet gives a container: the service address and a token file."""
    token = tmp_path / "token"
    token.write_text("a-token")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)


@pytest.mark.usefixtures("pod")
def test_in_a_pod_the_service_account() -> None:
    assert in_cluster()


@pytest.mark.usefixtures("pod")
def test_a_kubeconfig_given_wins_even_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not in_cluster("/etc/kubeconfig")
    monkeypatch.setenv("KUBECONFIG", "/etc/kubeconfig")
    assert not in_cluster()


@pytest.mark.usefixtures("pod")
def test_without_the_service_address_no_service_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert not in_cluster()


@pytest.mark.usefixtures("pod")
def test_without_a_token_no_service_account(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "none"))
    assert not in_cluster()


def test_the_client_keeps_a_connection_for_every_thread_that_calls_at_once() -> None:
    """urllib3 throws away a connection the pool has no room for: with the client's
    default (5 per CPU) a burst opened a new TLS connection for most API calls."""
    from promotion_operator import k8s

    pool = k8s._new_client().rest_client.pool_manager
    assert pool.connection_pool_kw["maxsize"] == k8s.CONNECTIONS
    assert k8s.CONNECTIONS >= 16 + 8 + 1  # the promotion workers, before-push checks, Events
