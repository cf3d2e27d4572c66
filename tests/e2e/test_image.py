"""The operator image, run exactly as the chart's Deployment says, promotes over SSH.

`make image` builds the image (docker's layer cache and the locally built Debian base make
a second build cost seconds). The chart is rendered with `helm template`, its RBAC applied,
and the Deployment's Pod template turned into `docker run` flags by
`support.container.docker_run_argv`, which carries over every field (args, env, user,
supplementary group, read-only root, no privilege escalation, capabilities, emptyDirs,
resources) and refuses any it does not know. The two things a kubelet adds come from the
real cluster: a token of the chart's ServiceAccount (with the API server's CA and the
namespace) at the in-cluster path, and KUBERNETES_SERVICE_HOST/PORT. The one change to
the Pod is `hostNetwork: true`, because every sandbox server listens on loopback only.
Nothing else gives the container credentials: no kubeconfig, no HOME.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from promotion_sandbox.gitserver import SSHGitServer
from promotion_sandbox.kube import Kube
from promotion_sandbox.world import NEW_VERSION, PROD_OVERLAY, World, promotion
from support.chart import apply_rbac, delete_rbac, render_chart
from support.container import Kubelet, docker_run_argv, http_probe
from support.operator import status_of, wait_for

pytestmark = pytest.mark.e2e

REPOSITORY = "localhost/promotion-operator"
TAG = "e2e"
# a cold build (debootstrap, apt, pip) takes minutes; cached, seconds
BUILD_TIMEOUT = 1500


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`make image` of this checkout, tagged for the test; returns the reference."""
    reference = f"{REPOSITORY}:{TAG}"
    log = tmp_path_factory.mktemp("image") / "build.log"
    with log.open("w") as out:
        built = subprocess.run(
            ["make", "--no-print-directory", "image", f"IMAGE={reference}"],
            cwd=request.config.rootpath,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=BUILD_TIMEOUT,
        )
    assert built.returncode == 0, f"make image failed:\n{log.read_text()[-4000:]}"
    return reference


def api_server_address(kube: Kube) -> tuple[str, int]:
    """The API server's host and port, for KUBERNETES_SERVICE_HOST/PORT.

    A kubelet sets the `kubernetes` Service's ClusterIP there, and kube-proxy sends it to
    the API server. The sandbox has no kube-proxy, and its API server, on loopback, cannot
    publish the Service's endpoints (loopback addresses are invalid there), so the
    container is given the address the Service leads to: the one the kubeconfig names.
    """
    server = kube.kubectl(
        "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
    ).stdout
    parts = urlsplit(server)
    assert parts.scheme == "https" and parts.hostname, server
    return parts.hostname, parts.port or 443


def service_account_dir(kube: Kube, namespace: str, account: str, folder: Path) -> Path:
    """What the kubelet projects for the Pod: a bound token, the cluster CA, the namespace."""
    folder.mkdir(mode=0o755)
    token = kube.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout
    config = kube.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout
    cluster = json.loads(config)["clusters"][0]["cluster"]
    if "certificate-authority-data" in cluster:
        ca = base64.b64decode(cluster["certificate-authority-data"])
    else:
        ca = Path(cluster["certificate-authority"]).read_bytes()
    for name, content in (("token", token.strip().encode()), ("ca.crt", ca)):
        (folder / name).write_bytes(content)
    (folder / "namespace").write_text(namespace)
    for path in folder.iterdir():
        path.chmod(0o644)  # the projected volume's defaultMode
    return folder


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=120
    )


def liveness_answers(port: int, path: str) -> bool:
    """The kubelet's httpGet probe, on the host's network."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def proc_status(container: str) -> dict[str, str]:
    """/proc/1/status of the container's main process: what the kernel enforces on it."""
    text = docker("exec", container, "cat", "/proc/1/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture
def release(new_namespace: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    """Namespaces for the release and for the tenant it watches: (release, tenant)."""
    yield new_namespace("image"), new_namespace("image-work")


@pytest.fixture
def ssh_server(fresh_world: World, tmp_path: Path) -> Iterator[SSHGitServer]:
    """sshd serving this test's bare repository."""
    with SSHGitServer(fresh_world.repo.parent, tmp_path / "sshd") as server:
        yield server


@pytest.mark.timeout(BUILD_TIMEOUT + 300)
def test_the_image_runs_as_the_chart_says_and_promotes_over_ssh(
    kube: Kube,
    image: str,
    release: tuple[str, str],
    fresh_world: World,
    ssh_server: SSHGitServer,
    tmp_path: Path,
) -> None:
    release_ns, tenant = release
    documents = render_chart(
        kube,
        release_ns,
        f"image.repository={REPOSITORY}",
        f"image.tag={TAG}",
        "image.pullPolicy=Never",  # the image is local: never look for it in a registry
        f"watchNamespaces={{{tenant}}}",
        "environmentRefresh=2",
        "maxBackoff=2",
    )
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == image
    suffix = uuid.uuid4().hex[:8]
    rbac = apply_rbac(kube, documents, suffix)
    name = f"promotion-operator-{suffix}"
    try:
        host, port = api_server_address(kube)
        kubelet = Kubelet(
            pod_name=f"{deployment['metadata']['name']}-{suffix}",
            namespace=release_ns,
            service_account_dir=service_account_dir(
                kube, release_ns, pod["serviceAccountName"], tmp_path / "serviceaccount"
            ),
            service_host=host,
            service_port=port,
        )
        argv = docker_run_argv({**pod, "hostNetwork": True}, kubelet, container_name=name)
        secret = {"ssh-privatekey": ssh_server.client_private_key}
        secret["known_hosts"] = ssh_server.known_hosts
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "git-ssh", "namespace": tenant},
                "stringData": secret,
            }
        )
        for obj in fresh_world.objects(tenant, git_url=ssh_server.url_for("tvhub-gitops.git")):
            if obj["kind"] == "Environment":
                obj["spec"]["git"]["secretRef"] = {"name": "git-ssh"}
            kube.apply(obj)

        path, health_port = http_probe(container, "livenessProbe")
        assert port_free(health_port), f"port {health_port} is taken: hostNetwork needs it"
        docker("run", *argv)

        def logs() -> str:
            result = docker("logs", name, check=False)
            return result.stdout + result.stderr

        wait_for("the liveness probe", lambda: liveness_answers(health_port, path), logs=logs)
        # what the kernel enforces on the operator process, as the Pod asks
        status = proc_status(name)
        assert status["Uid"].split() == ["65532"] * 4, status["Uid"]
        assert "65532" in status["Groups"].split()  # fsGroup
        assert status["CapEff"] == status["CapBnd"] == "0000000000000000"
        assert status["NoNewPrivs"] == "1"
        cmdline = docker("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")[:-1]
        assert cmdline[-len(container["args"]) :] == container["args"], cmdline
        environ = docker("exec", name, "cat", "/proc/1/environ").stdout.split("\0")
        assert f"POD_NAMESPACE={release_ns}" in environ
        refused = docker("exec", name, "touch", "/opt/promotion-operator/x", check=False)
        assert "Read-only file system" in refused.stderr
        docker("exec", name, "touch", "/tmp/x", "/var/cache/promotion-operator/x")

        kube.apply(promotion(tenant, "from-the-image", NEW_VERSION, reason="from the image"))
        final = wait_for(
            "the promotion by the operator image",
            lambda: (
                (s := status_of(kube, tenant, "from-the-image")).get("phase")
                in ("Succeeded", "Failed")
                and s
            ),
            timeout=90,
            logs=logs,
        )
        assert final["phase"] == "Succeeded", f"{final}\n{logs()[-3000:]}"
        # the Lease of the chart's leader election, taken in the release's namespace
        holder = kube.get("lease", "promotion-operator", release_ns)["spec"]["holderIdentity"]
        assert holder
        operator_log = logs()
    finally:
        docker("rm", "--force", name, check=False)
        delete_rbac(kube, rbac)
    assert fresh_world.remote_file(PROD_OVERLAY).count(NEW_VERSION) == 2
    message = fresh_world.remote_messages()[0]
    assert "Reason: from the image" in message
    assert f"Promotion: {tenant}/from-the-image" in message
    assert "Accepted publickey" in ssh_server.log_path.read_text(errors="replace")
    # every API call the operator made under the chart's identity was allowed
    assert "Forbidden" not in operator_log and " 403" not in operator_log, operator_log[-3000:]
