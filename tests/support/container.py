"""A rendered Pod spec, run with `docker run` the way a kubelet would run it.

`docker_run_argv` translates every field of the Pod template it is given into `docker run`
flags, and refuses any field it does not know (so a chart change cannot be silently left
out of the test that says "the image runs as the chart says"). What a kubelet adds on its
own is given by the caller: the ServiceAccount token folder (the projected volume at
/var/run/secrets/kubernetes.io/serviceaccount) and the KUBERNETES_SERVICE_HOST/PORT of the
`kubernetes` Service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubernetes.utils import parse_quantity as _parse_quantity

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

_POD_FIELDS = {
    "serviceAccountName",
    "automountServiceAccountToken",
    "securityContext",
    "containers",
    "volumes",
    "hostNetwork",
    "terminationGracePeriodSeconds",
}
_POD_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"}
_CONTAINER_FIELDS = {
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "resources",
    "securityContext",
    "volumeMounts",
}
_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "capabilities",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "seccompProfile",
}
_PULL = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}


def parse_quantity(quantity: str | float) -> Decimal:
    """A Kubernetes quantity ("2Gi", "50m", 2) as a number (the Kubernetes client's parser)."""
    return Decimal(_parse_quantity(quantity))  # type: ignore[no-untyped-call]


class UntranslatedError(ValueError):
    """The Pod spec has a field this translation does not carry over to docker run."""


@dataclass(frozen=True)
class Kubelet:
    """What a kubelet adds to the Pod: its name and namespace (for the downward API), the
    ServiceAccount token folder, and the `kubernetes` Service's address."""

    pod_name: str
    namespace: str
    service_account_dir: Path
    service_host: str
    service_port: int


def _refuse_unknown(where: str, fields: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(fields) - known)
    if unknown:
        raise UntranslatedError(
            f"{where}: {', '.join(unknown)} not translated to docker run; "
            "extend tests/support/container.py"
        )


def _env(container: Mapping[str, Any], kubelet: Kubelet) -> list[str]:
    fields = {"metadata.namespace": kubelet.namespace, "metadata.name": kubelet.pod_name}
    flags = [
        f"--env=KUBERNETES_SERVICE_HOST={kubelet.service_host}",
        f"--env=KUBERNETES_SERVICE_PORT={kubelet.service_port}",
    ]
    for var in container.get("env") or []:
        _refuse_unknown(f"env {var['name']}", var, {"name", "value", "valueFrom"})
        if "valueFrom" in var:
            source = var["valueFrom"]
            path = (source.get("fieldRef") or {}).get("fieldPath")
            if set(source) != {"fieldRef"} or path not in fields:
                raise UntranslatedError(f"env {var['name']}: valueFrom {source} not translated")
            flags.append(f"--env={var['name']}={fields[path]}")
        else:
            flags.append(f"--env={var['name']}={var.get('value', '')}")
    return flags


def _resources(resources: Mapping[str, Any]) -> list[str]:
    _refuse_unknown("resources", resources, {"requests", "limits"})
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    _refuse_unknown("resources.limits", limits, {"cpu", "memory"})
    _refuse_unknown("resources.requests", requests, {"cpu", "memory"})
    flags = []
    if "memory" in limits:
        flags.append(f"--memory={int(parse_quantity(limits['memory']))}")
    if "cpu" in limits:
        flags.append(f"--cpus={float(parse_quantity(limits['cpu']))}")
    if "cpu" in requests:
        # the kubelet's mapping of a CPU request to cgroup shares
        flags.append(f"--cpu-shares={max(2, int(parse_quantity(requests['cpu']) * 1024))}")
    # a memory request only informs the scheduler: nothing to set on the container
    return flags


def _security(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    pod_security = pod.get("securityContext") or {}
    security = container.get("securityContext") or {}
    _refuse_unknown("pod securityContext", pod_security, _POD_SECURITY)
    _refuse_unknown("container securityContext", security, _CONTAINER_SECURITY)
    merged = {**pod_security, **security}
    for scope in (pod_security, security):
        profile = (scope.get("seccompProfile") or {}).get("type", "RuntimeDefault")
        if profile != "RuntimeDefault":  # docker's default profile is the runtime default
            raise UntranslatedError(f"seccompProfile {profile} not translated")
    flags = []
    if "runAsUser" in merged:
        user = str(merged["runAsUser"])
        if "runAsGroup" in merged:
            user += f":{merged['runAsGroup']}"
        flags.append(f"--user={user}")
    if "fsGroup" in pod_security:  # the kubelet adds it as a supplementary group
        flags.append(f"--group-add={pod_security['fsGroup']}")
    if security.get("allowPrivilegeEscalation") is False:
        flags.append("--security-opt=no-new-privileges")
    if security.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    capabilities = security.get("capabilities") or {}
    _refuse_unknown("capabilities", capabilities, {"drop", "add"})
    flags += [f"--cap-drop={cap}" for cap in capabilities.get("drop") or []]
    flags += [f"--cap-add={cap}" for cap in capabilities.get("add") or []]
    return flags


def _mounts(pod: Mapping[str, Any], container: Mapping[str, Any], kubelet: Kubelet) -> list[str]:
    volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
    flags = []
    for mount in container.get("volumeMounts") or []:
        _refuse_unknown(f"volumeMount {mount['name']}", mount, {"name", "mountPath", "readOnly"})
        volume = volumes[mount["name"]]
        _refuse_unknown(f"volume {volume['name']}", volume, {"name", "emptyDir"})
        empty_dir = volume["emptyDir"] or {}
        _refuse_unknown(f"volume {volume['name']} emptyDir", empty_dir, {"sizeLimit", "medium"})
        # an emptyDir: empty at start, writable by everyone (mode 0777), gone with the Pod
        options = [f"destination={mount['mountPath']}", "tmpfs-mode=0777"]
        if "sizeLimit" in empty_dir:
            options.append(f"tmpfs-size={int(parse_quantity(empty_dir['sizeLimit']))}")
        if mount.get("readOnly"):
            options.append("readonly")
        flags.append("--mount=type=tmpfs," + ",".join(options))
    if pod.get("automountServiceAccountToken", True):
        flags.append(
            f"--mount=type=bind,source={kubelet.service_account_dir},"
            f"destination={SERVICE_ACCOUNT_DIR},readonly"
        )
    return flags


def docker_run_argv(pod: Mapping[str, Any], kubelet: Kubelet, *, container_name: str) -> list[str]:
    """`docker run` arguments (after `docker run`) for the Pod's one container.

    Raises UntranslatedError for any Pod or container field not carried over.
    """
    _refuse_unknown("pod spec", pod, _POD_FIELDS)
    (container,) = pod["containers"]
    _refuse_unknown(f"container {container['name']}", container, _CONTAINER_FIELDS)
    flags = [
        "--detach",
        f"--name={container_name}",
        f"--pull={_PULL[container.get('imagePullPolicy', 'IfNotPresent')]}",
        f"--stop-timeout={pod.get('terminationGracePeriodSeconds', 30)}",
    ]
    if pod.get("hostNetwork"):
        # ports are the host's own then; probes and Services reach them there
        flags.append("--network=host")
    flags += _env(container, kubelet)
    flags += _resources(container.get("resources") or {})
    flags += _security(pod, container)
    flags += _mounts(pod, container, kubelet)
    command = list(container.get("command") or [])
    if command:
        flags.append(f"--entrypoint={command[0]}")
    return [*flags, container["image"], *command[1:], *(container.get("args") or [])]


def http_probe(container: Mapping[str, Any], probe: str) -> tuple[str, int]:
    """(path, port number) of the container's httpGet probe, the port resolved by name."""
    http_get = container[probe]["httpGet"]
    port = http_get["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
    return str(http_get.get("path", "/")), int(port)
