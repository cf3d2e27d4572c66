"""A real Kubernetes control plane without Docker: etcd + kube-apiserver on loopback.

Started the way controller-runtime's envtest does it: etcd on free loopback ports with
fsync off, kube-apiserver with secure serving, RBAC authorization, a client-certificate
admin in `system:masters` and a service-account signing key, so ServiceAccount tokens and
RBAC behave as in a real cluster. The binaries come from the checkout's
`hack/build-binaries.sh` (built from the Go module proxy, cached per version outside the
repo), or from `PROMOTION_OPERATOR_BIN_DIR`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from promotion_sandbox import procs
from promotion_sandbox.argocd import install_crds
from promotion_sandbox.kube import Kube
from promotion_sandbox.pki import CertificateAuthority, rsa_private_key_pem

BUILD_SCRIPT = Path("hack") / "build-binaries.sh"


def ensure_binaries(repo_root: Path | None) -> Path:
    """The folder with etcd, kube-apiserver, kubectl and helm, building them when missing.

    `PROMOTION_OPERATOR_BIN_DIR` names a ready folder; otherwise the build script of the
    checkout at `repo_root` runs (cheap when its cache is warm).
    """
    override = os.environ.get("PROMOTION_OPERATOR_BIN_DIR")
    if override:
        return Path(override)
    script = (repo_root or Path.cwd()) / BUILD_SCRIPT
    if not script.is_file():
        raise FileNotFoundError(
            f"{script} not found: give the promotion-operator checkout (--repo) "
            "or set PROMOTION_OPERATOR_BIN_DIR"
        )
    result = subprocess.run(["bash", str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class ControlPlaneState:
    """What `down` needs to find a running control plane again."""

    etcd_pid: int
    apiserver_pid: int
    server: str
    kubeconfig: str
    bin_dir: str


class ControlPlane(procs.Service):
    """etcd + kube-apiserver in `workdir`; `kubeconfig` is the admin's.

    `repo_root` is the checkout whose build script provides the binaries (see
    `ensure_binaries`); `bin_dir` skips that and uses a ready folder.
    """

    def __init__(
        self, workdir: Path, *, repo_root: Path | None = None, bin_dir: Path | None = None
    ) -> None:
        self.workdir = workdir
        self.repo_root = repo_root
        self.bin_dir = bin_dir
        self.state_file = workdir / "state.json"
        self.kubeconfig = workdir / "kubeconfig"
        self.state: ControlPlaneState | None = None
        self._last_argv: list[list[str]] = []
        self._commands: dict[str, tuple[list[str], Path]] = {}

    # -- lifecycle -------------------------------------------------------------------
    def start(self, *, timeout: float = 90.0) -> ControlPlaneState:
        """Start both servers detached, wait for /readyz, write the kubeconfig."""
        bin_dir = self.bin_dir or ensure_binaries(self.repo_root)
        self.stop()
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        pki = self.workdir / "pki"
        pki.mkdir(parents=True)
        ca = CertificateAuthority("promotion-sandbox-kube-ca")
        (pki / "ca.crt").write_bytes(ca.cert_pem)
        ca.issue("kube-apiserver", hosts=("127.0.0.1", "localhost")).write(
            pki / "apiserver.crt", pki / "apiserver.key"
        )
        admin = ca.issue("sandbox-admin", organizations=("system:masters",), client=True)
        admin.write(pki / "admin.crt", pki / "admin.key")
        (pki / "sa.key").write_bytes(rsa_private_key_pem())
        (pki / "sa.key").chmod(0o600)

        etcd_port, peer_port, api_port = procs.free_port(), procs.free_port(), procs.free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd_log = self.workdir / "etcd.log"
        self._last_argv = []
        etcd_pid = self._spawn(
            [
                str(bin_dir / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            etcd_log,
        )
        server = f"https://127.0.0.1:{api_port}"
        api_log = self.workdir / "kube-apiserver.log"
        apiserver_pid = self._spawn(
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.key'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
                "--v=0",
            ],
            api_log,
        )
        self._commands = {
            "etcd": (self._last_argv[0], etcd_log),
            "kube-apiserver": (self._last_argv[1], api_log),
        }
        state = ControlPlaneState(
            etcd_pid=etcd_pid,
            apiserver_pid=apiserver_pid,
            server=server,
            kubeconfig=str(self.kubeconfig),
            bin_dir=str(bin_dir),
        )
        self.state = state
        self.state_file.write_text(json.dumps(asdict(state)))
        self._write_kubeconfig(server, pki)
        try:
            procs.wait_until(
                lambda: self._ready(server, pki) and self._default_namespace_exists(),
                timeout=timeout,
                what="kube-apiserver",
                log=api_log,
            )
        except BaseException:
            self.stop()
            raise
        return state

    def _spawn(self, argv: list[str], log: Path) -> int:
        self._last_argv.append(argv)
        return procs.spawn(argv, log)

    def restart(self, component: str, *, down: float = 0.0, timeout: float = 90.0) -> None:
        """SIGKILL `etcd` or `kube-apiserver`, wait `down` seconds, start it again with the
        same flags and data, and wait until the API server is ready (fault campaigns)."""
        if self.state is None:
            raise RuntimeError("control plane not started")
        argv, log = self._commands[component]
        etcd = component == "etcd"
        pid = self.state.etcd_pid if etcd else self.state.apiserver_pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        procs.wait_until(lambda: not procs.alive(pid), timeout=10, what=f"{component} to die")
        time.sleep(down)
        started = procs.spawn(argv, log)
        if etcd:
            self.state = replace(self.state, etcd_pid=started)
        else:
            self.state = replace(self.state, apiserver_pid=started)
        self.state_file.write_text(json.dumps(asdict(self.state)))
        pki = self.workdir / "pki"
        server = self.state.server
        procs.wait_until(
            lambda: self._ready(server, pki), timeout=timeout, what="kube-apiserver", log=log
        )

    def stop(self) -> None:
        """Stop the servers recorded in the state file (if any)."""
        if not self.state_file.exists():
            return
        state = ControlPlaneState(**json.loads(self.state_file.read_text()))
        procs.stop(state.apiserver_pid)
        procs.stop(state.etcd_pid)
        self.state_file.unlink()
        self.state = None

    def up(self) -> Kube:
        """Start, install our CRDs and Argo CD's Application CRD; return the admin's client."""
        self.start()
        kube = self.kube
        install_crds(kube)
        return kube

    # -- helpers ---------------------------------------------------------------------
    @property
    def kube(self) -> Kube:
        """The running cluster as the admin, with the kubectl and helm built beside it."""
        if self.state is None:
            raise RuntimeError("control plane not started")
        bin_dir = Path(self.state.bin_dir)
        return Kube(self.kubeconfig, str(bin_dir / "kubectl"), str(bin_dir / "helm"))

    def _ssl_context(self, pki: Path) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def _ready(self, server: str, pki: Path) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 - fixed https URL on loopback
                f"{server}/readyz", context=self._ssl_context(pki), timeout=2
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _default_namespace_exists(self) -> bool:
        return (
            self.kube.kubectl("get", "namespace", "default", "-o", "name", check=False).returncode
            == 0
        )

    def _write_kubeconfig(self, server: str, pki: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sandbox",
                    "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "sandbox-admin",
                    "user": {
                        "client-certificate": str(pki / "admin.crt"),
                        "client-key": str(pki / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox-admin"}}
            ],
            "current-context": "sandbox",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)
