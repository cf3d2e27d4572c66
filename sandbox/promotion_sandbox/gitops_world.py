"""A real GitOps installation on the sandbox control plane: real Argo CD, workloads on kwok.

`ArgoCDWorld` turns a running sandbox `ControlPlane` and a `World` into the loop the
operator lives in. Nothing is simulated: kube-controller-manager and kube-scheduler roll
Deployments out onto a kwok node (kwok fakes the kubelet: pods become Ready without
containers), and Argo CD's own application-controller and repo-server, run as local
processes the way its `Procfile` runs them for its developers, sync the World's overlays
from a `git daemon` over the World's bare repository. Applications `<app>-dev` and
`<app>-prod` sync automatically (prune, self-heal), like the ones `docs/gitops.md` shows.

The binaries come from `hack/build-binaries.sh` (cached outside the repo), Argo CD's CRDs
from its Go module in the module cache (`go mod download`, never copied into the repo),
redis and git from the machine.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from promotion_sandbox import procs
from promotion_sandbox.argocd import application
from promotion_sandbox.controlplane import ensure_binaries
from promotion_sandbox.kube import Kube
from promotion_sandbox.world import World

# The Argo CD that hack/build-binaries.sh builds (its ARGOCD_VERSION): the CRDs must match.
ARGOCD_VERSION = os.environ.get("ARGOCD_VERSION", "v3.2.11")
ARGOCD_MODULE = "github.com/argoproj/argo-cd/v3"
ARGOCD_NAMESPACE = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"
NODE_NAME = "kwok-node-0"
APPLICATIONS = "applications.argoproj.io"
# What the application-controller reads. The ApplicationSet CRD (1 MB, three quarters of the
# bytes) belongs to a controller this world does not run.
ARGOCD_CRDS = ("application-crd.yaml", "appproject-crd.yaml")
DEV_OVERLAY = "k8s/overlays/dev/kustomization.yaml"
PATCHES = "patches:\n"
START_TIMEOUT = 60.0


def control_plane_pki(kube: Kube) -> Path | None:
    """The PKI folder of a sandbox `ControlPlane` (beside its kubeconfig), None elsewhere.

    The controller-manager signs ServiceAccount tokens with the control plane's key, so
    only a sandbox control plane (not any cluster a kubeconfig names) can host this world.
    """
    pki = kube.kubeconfig.parent / "pki"
    return pki if (pki / "sa.key").is_file() and (pki / "ca.crt").is_file() else None


def argocd_module_dir(version: str = ARGOCD_VERSION) -> Path:
    """Argo CD's module source in the Go module cache (downloaded once from the proxy)."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{ARGOCD_MODULE}@{version}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    return Path(json.loads(result.stdout)["Dir"])


def kwok_node(name: str = NODE_NAME) -> dict[str, Any]:
    """A Node that kwok (started with --manage-all-nodes) keeps Ready, with room for pods."""
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


def argocd_settings(
    namespace: str, settings: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """argocd-cm (with `settings` as its data, e.g. a health customization) and
    argocd-secret (the controller stops at start without them), and an AppProject
    `default` that allows every repository, destination and cluster resource."""
    labels = {"app.kubernetes.io/part-of": "argocd"}
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": namespace, "labels": labels},
            "data": dict(settings or {}),
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": namespace, "labels": labels},
            "stringData": {"server.secretkey": key},
        },
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": "default", "namespace": namespace},
            "spec": {
                "sourceRepos": ["*"],
                "destinations": [{"server": "*", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        },
    ]


def synced_application(name: str, namespace: str, repo_url: str, path: str) -> dict[str, Any]:
    """An Application that syncs `path` into the namespace `name` on its own (prune,
    self-heal, namespace created), as the GitOps guide writes it."""
    app = application(name, namespace, repo_url, path)
    app["spec"]["syncPolicy"] = {
        "automated": {"prune": True, "selfHeal": True},
        "syncOptions": ["CreateNamespace=true"],
    }
    return app


def pin_tags(overlay_text: str, pins: Mapping[str, str]) -> str:
    """The overlay with `newTag` of each image in `pins` (image name -> tag) replaced."""
    for image, tag in pins.items():
        overlay_text, count = re.subn(
            rf"(- name: {re.escape(image)}\n\s+newTag: )\S+", rf"\g<1>{tag}", overlay_text
        )
        if count != 1:
            raise ValueError(f"{image} is pinned {count} times in the overlay, not once")
    return overlay_text


def at_revision(block: Mapping[str, Any], revision: str) -> bool:
    """Whether a `sync` or `syncResult` block is at `revision`: its `revision`, or every
    entry of `revisions` for an Application with several sources (all from one repo)."""
    revisions = block.get("revisions")
    if isinstance(revisions, list) and revisions:
        return all(r == revision for r in revisions)
    return bool(block.get("revision") == revision)


def runs(app: dict[str, Any], revision: str, images: Mapping[str, str]) -> bool:
    """Whether Argo CD reports `app` done with `revision`: Synced, Healthy, its sync
    operation Succeeded for that revision, and each image (name -> tag) running at that
    tag only (`summary.images` lists old and new tags together during a rollout)."""
    status = app.get("status") or {}
    operation = status.get("operationState") or {}
    live = (status.get("summary") or {}).get("images") or []
    return bool(
        (status.get("sync") or {}).get("status") == "Synced"
        and at_revision(status.get("sync") or {}, revision)
        and (status.get("health") or {}).get("status") == "Healthy"
        and operation.get("phase") == "Succeeded"
        and at_revision(operation.get("syncResult") or {}, revision)
        and all(
            {ref for ref in live if ref.rsplit(":", 1)[0] == image} == {f"{image}:{tag}"}
            for image, tag in images.items()
        )
    )


class ArgoCDWorld(procs.Service):
    """Real Argo CD syncing `world`'s repository into the cluster of `kube`.

    Starts kube-controller-manager, kube-scheduler, kwok (and its node), redis, a git
    daemon over the World's repository, Argo CD's repo-server and application-controller;
    installs Argo CD's CRDs, settings and AppProject in `namespace`, and the Applications
    `<app>-dev` and `<app>-prod`. `pki` is the control plane's (see `control_plane_pki`);
    `repo_root` the checkout whose build script provides the binaries; `settings` the data
    of argocd-cm (resource customizations). The controller keeps each resource's health in
    `status.resources[]` (`--persist-resource-health`). Every process logs to
    `workdir/<name>.log` and is stopped on exit, and the Applications and node deleted.
    """

    def __init__(
        self,
        kube: Kube,
        world: World,
        workdir: Path,
        *,
        pki: Path,
        repo_root: Path | None = None,
        app: str = "tvhub",
        namespace: str = ARGOCD_NAMESPACE,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.kube = kube
        self.world = world
        self.workdir = workdir
        self.pki = pki
        self.repo_root = repo_root
        self.app = app
        self.namespace = namespace
        self.settings = dict(settings or {})
        self.git_port = 0
        self._pids: list[int] = []
        self._applications = [self.application_name(env) for env in ("dev", "prod")]

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> ArgoCDWorld:
        """Start every part, wait until both Applications are Synced and Healthy."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        bin_dir = ensure_binaries(self.repo_root)
        try:
            self._start_workloads(bin_dir)
            self._start_argocd(bin_dir)
            self._install()
            for env in ("dev", "prod"):
                self.wait_runs(self.application_name(env), self.world.remote_head())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process started (all asked at once), then delete what Argo CD and
        kwok would otherwise leave behind for the rest of the session: the Applications
        and the node. Safe to call twice."""
        for pid in self._pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        for pid in reversed(self._pids):
            procs.stop(pid, grace=10.0)
        started = bool(self._pids)
        self._pids.clear()
        if started:
            self.kube.kubectl(
                "delete",
                APPLICATIONS,
                *self._applications,
                "-n",
                self.namespace,
                "--wait=false",
                "--ignore-not-found",
                check=False,
            )
            self.kube.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", check=False)

    # -- what tests use --------------------------------------------------------------
    @property
    def repo_url(self) -> str:
        """The World's repository as Argo CD reads it (the git daemon)."""
        return f"git://127.0.0.1:{self.git_port}/{self.world.repo.name}"

    def application_name(self, env: str) -> str:
        """`<app>-<env>`: the Application, and the namespace it deploys to."""
        return f"{self.app}-{env}"

    def application(self, name: str) -> dict[str, Any]:
        """The Application `name` as Argo CD last wrote it."""
        return self.kube.get(APPLICATIONS, name, self.namespace)

    def add_application(self, app: dict[str, Any]) -> None:
        """Apply another Application in this world's namespace (deleted on stop)."""
        app["metadata"]["namespace"] = self.namespace
        self._applications.append(app["metadata"]["name"])
        self.kube.apply(app)

    def terminate_operation(self, name: str) -> None:
        """Stop `name`'s running sync operation (its retries included), as `argocd app
        terminate-op` does: Argo CD runs a new commit only after that operation ends."""
        operation = (self.application(name).get("status") or {}).get("operationState") or {}
        if operation.get("phase") != "Running":
            return
        self.kube.kubectl(
            "patch",
            APPLICATIONS,
            name,
            "-n",
            self.namespace,
            "--type=merge",
            "-p",
            json.dumps({"status": {"operationState": {"phase": "Terminating"}}}),
        )

    def refresh(self, name: str) -> None:
        """Ask Argo CD to compare `name` with git now, as its git webhook would after a push."""
        self.kube.kubectl(
            "annotate",
            APPLICATIONS,
            name,
            "-n",
            self.namespace,
            "argocd.argoproj.io/refresh=normal",
            "--overwrite",
        )

    def wait_runs(
        self,
        name: str,
        revision: str,
        tags: Mapping[str, str] | None = None,
        *,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Wait until Argo CD reports `name` done with `revision` (see `runs`), each image
        at its tag in `tags` (default: whatever `revision`'s overlay pins); return the app."""
        pins: Mapping[str, str]
        if tags is None:
            spec = self.application(name)["spec"]
            path = (spec.get("source") or spec["sources"][0])["path"]
            overlay = self.world.remote_file(f"{path}/kustomization.yaml")
            pins = dict(re.findall(r"- name: (\S+)\n\s+newTag: (\S+)", overlay))
        else:
            pins = tags
        last: dict[str, Any] = {}

        def done() -> bool:
            nonlocal last
            last = self.application(name)
            return runs(last, revision, pins)

        try:
            procs.wait_until(done, timeout=timeout, what=f"Application {name} at {revision[:7]}")
        except TimeoutError as error:
            status = json.dumps(last.get("status") or {}, indent=1)[-3000:]
            raise TimeoutError(f"{error}; its status:\n{status}\n{self.logs()}") from None
        return last

    def ci_release(
        self, version: str, images: Iterable[str] | None = None, *, patches: str = ""
    ) -> str:
        """What CI does: push every component's image at `version`, bump the dev overlay
        (only `images`, when given) and notify Argo CD; return the commit. `patches` is a
        Kustomize `patches:` block shipped with this release (the next release drops it)."""
        self.world.push_version(version)
        pins = dict.fromkeys(self.world.images() if images is None else images, version)
        current = self.world.remote_file(DEV_OVERLAY).split(PATCHES, 1)[0]
        text = pin_tags(current, pins) + (f"{PATCHES}{patches}" if patches else "")
        commit = self.world.commit_file(DEV_OVERLAY, text, message=f"ci: dev runs {version}")
        self.refresh(self.application_name("dev"))
        return commit

    def environment_objects(
        self, namespace: str, *, soak: str | None = None
    ) -> list[dict[str, Any]]:
        """The World's registry Secret and its dev and prod Environments in `namespace`
        (prod with `soak`), each with `health.argocd` on its real Application (the
        operator then needs `--health-namespace` for this world's namespace)."""
        objects = [
            o for o in self.world.objects(namespace, soak=soak) if o["kind"] != "Application"
        ]
        for obj in objects:
            if obj["kind"] == "Environment":
                name = obj["metadata"]["name"]
                obj["spec"]["health"] = {
                    "argocd": {"application": name, "namespace": self.namespace}
                }
        return objects

    def logs(self, lines: int = 15) -> str:
        """The last `lines` of each Argo CD component's log, for failure messages."""
        parts = []
        for name in ("argocd-application-controller", "argocd-repo-server"):
            log = self.workdir / f"{name}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- parts -----------------------------------------------------------------------
    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str] | None = None,
    ) -> None:
        log = self.workdir / f"{name}.log"
        pid = procs.spawn(argv, log, env=dict(env) if env is not None else None)
        self._pids.append(pid)

        def listening() -> bool:
            if not procs.alive(pid):
                raise RuntimeError(f"{name} exited:\n{log.read_text(errors='replace')[-3000:]}")
            with socket.socket() as sock:
                sock.settimeout(0.5)
                return sock.connect_ex(("127.0.0.1", port)) == 0

        procs.wait_until(listening, timeout=START_TIMEOUT, what=name, log=log)

    def _start_workloads(self, bin_dir: Path) -> None:
        kubeconfig = str(self.kube.kubeconfig)
        auth = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]
        port = procs.free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                *auth,
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                "--use-service-account-credentials=false",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
            ],
            port=port,
        )
        port = procs.free_port()
        self._spawn(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                *auth,
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'sch-certs'}",
            ],
            port=port,
        )
        port = procs.free_port()
        self._spawn(
            "kwok",
            [
                str(bin_dir / "kwok"),
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=true",
                f"--server-address=127.0.0.1:{port}",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
            ],
            port=port,
        )
        self.kube.apply(kwok_node())
        procs.wait_until(
            self._node_schedulable,
            timeout=START_TIMEOUT,
            what=f"node {NODE_NAME} Ready without taints",
            log=self.workdir / "kwok.log",
        )

    def _node_schedulable(self) -> bool:
        node = json.loads(self.kube.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (node.get("status") or {}).get("conditions") or ()
        )
        return ready and not (node.get("spec") or {}).get("taints")

    def _start_argocd(self, bin_dir: Path) -> None:
        redis = procs.free_port()
        self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(redis),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            port=redis,
        )
        self.git_port = procs.free_port()
        self._spawn(
            "git-daemon",
            [
                "git",
                "daemon",
                "--export-all",
                "--reuseaddr",
                "--informative-errors",
                f"--base-path={self.world.repo.parent}",
                "--listen=127.0.0.1",
                f"--port={self.git_port}",
            ],
            port=self.git_port,
        )
        folders: dict[str, str] = {}
        for var, folder in (
            ("ARGOCD_TLS_DATA_PATH", "tls"),
            ("ARGOCD_SSH_DATA_PATH", "ssh"),
            ("ARGOCD_GNUPGHOME", "gnupg"),
            ("TMPDIR", "tmp"),  # the repo-server's clones stay in the work folder
        ):
            path = self.workdir / "argocd" / folder
            path.mkdir(parents=True, exist_ok=True)
            folders[var] = str(path)
        env = {
            **os.environ,
            **folders,
            "ARGOCD_FAKE_IN_CLUSTER": "true",
            "ARGOCD_GPG_ENABLED": "false",
            "KUBECONFIG": str(self.kube.kubeconfig),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # kustomize
        }
        argocd = str(bin_dir / "argocd")
        repo_server = procs.free_port()
        self._spawn(
            "argocd-repo-server",
            [
                argocd,
                "--address",
                "127.0.0.1",
                f"--port={repo_server}",
                f"--redis=127.0.0.1:{redis}",
                "--metrics-address",
                "127.0.0.1",
                f"--metrics-port={procs.free_port()}",
            ],
            port=repo_server,
            env={**env, "ARGOCD_BINARY_NAME": "argocd-repo-server"},
        )
        self._install_argocd_objects()
        metrics = procs.free_port()
        self._spawn(
            "argocd-application-controller",
            [
                argocd,
                f"--namespace={self.namespace}",
                f"--redis=127.0.0.1:{redis}",
                f"--repo-server=127.0.0.1:{repo_server}",
                f"--metrics-port={metrics}",
                "--persist-resource-health",
                "--status-processors=4",
                "--operation-processors=2",
            ],
            port=metrics,
            env={**env, "ARGOCD_BINARY_NAME": "argocd-application-controller"},
        )

    def _install_argocd_objects(self) -> None:
        """Argo CD's CRDs (replacing the sandbox's stand-in Application CRD: same group,
        names and version), its settings and AppProject."""
        folder = argocd_module_dir() / "manifests" / "crds"
        files = [arg for crd in ARGOCD_CRDS for arg in ("-f", str(folder / crd))]
        # --force-conflicts: the stand-in CRD's fields belong to client-side apply
        self.kube.kubectl("apply", "--server-side", "--force-conflicts", *files)
        # a CRD just created has no conditions yet, on which `kubectl wait` fails at once
        procs.wait_until(
            lambda: (
                self.kube.kubectl(
                    "wait",
                    "--for=condition=Established",
                    "--timeout=5s",
                    f"crd/{APPLICATIONS}",
                    "crd/appprojects.argoproj.io",
                    check=False,
                ).returncode
                == 0
            ),
            timeout=START_TIMEOUT,
            what="Argo CD's CRDs Established",
        )
        self.kube.kubectl("create", "namespace", self.namespace, check=False)
        self.kube.apply(*argocd_settings(self.namespace, self.settings))

    def _install(self) -> None:
        self.kube.apply(
            *(
                synced_application(
                    self.application_name(env),
                    self.namespace,
                    self.repo_url,
                    f"k8s/overlays/{env}",
                )
                for env in ("dev", "prod")
            )
        )
