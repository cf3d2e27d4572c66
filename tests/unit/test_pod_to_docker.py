"""The Pod-spec-to-`docker run` translation the image e2e test relies on.

It must carry every field over, and refuse what it cannot carry, so that "runs as the
chart says" cannot quietly drop a setting the chart adds.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from support.container import (
    SERVICE_ACCOUNT_DIR,
    Kubelet,
    UntranslatedError,
    docker_run_argv,
    http_probe,
)

KUBELET = Kubelet(
    pod_name="po-abc",
    namespace="promotion-system",
    service_account_dir=Path("/tmp/sa"),
    service_host="127.0.0.1",
    service_port=6443,
)
POD: dict[str, Any] = {
    "serviceAccountName": "po",
    "hostNetwork": True,
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "operator",
            "image": "registry.example.com/po:1",
            "imagePullPolicy": "IfNotPresent",
            "args": ["run", "--leader-elect"],
            "env": [
                {
                    "name": "POD_NAMESPACE",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                },
                {"name": "GIT_SSL_CAINFO", "value": "/etc/ca.crt"},
            ],
            "ports": [{"name": "health", "containerPort": 8080}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}},
            "resources": {
                "requests": {"cpu": "50m", "memory": "128Mi"},
                "limits": {"memory": "512Mi"},
            },
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/po"}],
        }
    ],
    "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "2Gi"}}],
}


def test_every_setting_becomes_a_flag() -> None:
    argv = docker_run_argv(POD, KUBELET, container_name="c")

    image_at = argv.index("registry.example.com/po:1")
    assert argv[image_at + 1 :] == ["run", "--leader-elect"]
    flags = set(argv[:image_at])
    assert {
        "--user=65532",
        "--group-add=65532",
        "--read-only",
        "--security-opt=no-new-privileges",
        "--cap-drop=ALL",
        "--network=host",
        "--pull=missing",
        "--env=POD_NAMESPACE=promotion-system",
        "--env=GIT_SSL_CAINFO=/etc/ca.crt",
        "--env=KUBERNETES_SERVICE_HOST=127.0.0.1",
        "--env=KUBERNETES_SERVICE_PORT=6443",
        f"--memory={512 * 2**20}",
        "--cpu-shares=51",
        f"--mount=type=tmpfs,destination=/var/cache/po,tmpfs-mode=0777,tmpfs-size={2 * 2**30}",
        f"--mount=type=bind,source=/tmp/sa,destination={SERVICE_ACCOUNT_DIR},readonly",
    } <= flags


def test_the_probe_port_is_resolved_by_name() -> None:
    assert http_probe(POD["containers"][0], "livenessProbe") == ("/healthz", 8080)


def test_no_token_when_the_pod_opts_out() -> None:
    argv = docker_run_argv(
        {**POD, "automountServiceAccountToken": False}, KUBELET, container_name="c"
    )

    assert not [flag for flag in argv if SERVICE_ACCOUNT_DIR in flag]


def _with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    pod = copy.deepcopy(POD)
    node: Any = pod
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return pod


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("nodeSelector",), {"disk": "ssd"}),
        (("containers", 0, "lifecycle"), {"preStop": {}}),
        (("containers", 0, "securityContext", "privileged"), True),
        (("securityContext", "sysctls"), []),
        (("securityContext", "seccompProfile"), {"type": "Unconfined"}),
        (("volumes", 0), {"name": "cache", "hostPath": {"path": "/"}}),
        (("containers", 0, "env", 0, "valueFrom"), {"secretKeyRef": {"name": "s", "key": "k"}}),
        (("containers", 0, "resources", "limits", "nvidia.com/gpu"), 1),
    ],
)
def test_an_untranslated_field_is_refused(path: tuple[str | int, ...], value: Any) -> None:
    with pytest.raises(UntranslatedError):
        docker_run_argv(_with(path, value), KUBELET, container_name="c")
