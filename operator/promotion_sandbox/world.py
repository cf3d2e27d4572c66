"""A small GitOps world on loopback: a registry with images and a git remote with overlays.

The layout is the one every example uses: `k8s/base`, `k8s/overlays/{dev,prod}` with an
`images:` list, CI having bumped dev to a newer version than prod. Used by the demo, the
end-to-end tests and the benchmark.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promotion_sandbox.argocd import application, application_status
from promotion_sandbox.gitserver import init_bare_repo
from promotion_sandbox.registry import LocalRegistry

OLD_VERSION = "v20250812-a1b2c3d"
NEW_VERSION = "v20250819-f3b8541"
UNTESTED_VERSION = "v20250826-0badc0d"
COMPONENTS = ("tvhub-frontend", "tvhub-backend")
REGISTRY_USER = "ci"
REGISTRY_PASSWORD = "registry-s3cret-pw"  # noqa: S105 - a local sandbox's throw-away password


def _deployment(component: str, registry: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {component}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {component}}}
  template:
    metadata:
      labels: {{app: {component}}}
    spec:
      containers:
        - name: {component}
          image: {registry}/team/{component}
"""


def overlay(registry: str, version: str, comment: str) -> str:
    """A Kustomize overlay pinning every component to `version`."""
    entries = "".join(
        f"  - name: {registry}/team/{component}\n    newTag: {version}\n"
        for component in COMPONENTS
    )
    return f"""# {comment}
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
images:
{entries}"""


def gitops_files(registry: str) -> dict[str, str]:
    """The files of the GitOps repository, dev ahead of prod."""
    files = {f"k8s/base/deployment-{c}.yaml": _deployment(c, registry) for c in COMPONENTS}
    files["k8s/base/kustomization.yaml"] = "resources:\n" + "".join(
        f"  - deployment-{c}.yaml\n" for c in COMPONENTS
    )
    files["k8s/overlays/dev/kustomization.yaml"] = overlay(
        registry, NEW_VERSION, "dev: newTag bumped by CI"
    )
    files["k8s/overlays/prod/kustomization.yaml"] = overlay(
        registry, OLD_VERSION, "prod: newTag bumped by the promotion operator only"
    )
    return files


class World:
    """Registry (htpasswd auth) + bare git repository under `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.registry = LocalRegistry(
            workdir / "registry", auth="htpasswd", users={REGISTRY_USER: REGISTRY_PASSWORD}
        )
        self.repo = workdir / "git" / "tvhub-gitops.git"

    def start(self, versions: Sequence[str] = (OLD_VERSION, NEW_VERSION, UNTESTED_VERSION)) -> None:
        """Start the registry, push every component at `versions`, create the repository."""
        (self.workdir / "registry").mkdir(parents=True, exist_ok=True)
        self.registry.start()
        for version in versions:
            self.push_version(version)
        init_bare_repo(self.repo, gitops_files(self.registry.host), message="initial layout")

    def stop(self) -> None:
        """Stop the registry."""
        self.registry.stop()

    @property
    def git_url(self) -> str:
        """The remote, as a file:// URL (the operator needs --allow-local-git for it)."""
        return self.repo.as_uri()

    def images(self) -> list[str]:
        """Every component's image name."""
        return [f"{self.registry.host}/team/{c}" for c in COMPONENTS]

    def push_version(self, version: str) -> None:
        """Push every component's image at `version` (what CI does)."""
        for component in COMPONENTS:
            self.registry.push_image(
                f"team/{component}", version, username=REGISTRY_USER, password=REGISTRY_PASSWORD
            )

    # -- what the remote holds -------------------------------------------------------
    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", f"--git-dir={self.repo}", *args], capture_output=True, text=True, check=True
        ).stdout

    def remote_file(self, path: str, ref: str = "main") -> str:
        """A file's content on the remote branch."""
        return self._git("show", f"{ref}:{path}")

    def remote_messages(self, ref: str = "main") -> list[str]:
        """Every commit message on the remote branch, newest first."""
        return [m for m in self._git("log", "--format=%B%x00", ref).split("\x00\n") if m.strip()]

    def commit_file(self, path: str, text: str, message: str = "edit by a human") -> str:
        """Commit one file straight to the remote branch, as a person would; return the sha."""
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "work"
            run = functools.partial(subprocess.run, check=True, capture_output=True, text=True)
            run(["git", "clone", "-q", "--branch", "main", self.repo.as_uri(), str(work)])
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
            run(["git", "-C", str(work), "add", path])
            identity = ["-c", "user.name=Human", "-c", "user.email=human@example.com"]
            run(["git", "-C", str(work), *identity, "commit", "-q", "-m", message])
            run(["git", "-C", str(work), "push", "-q", "origin", "main"])
        return self.remote_head()

    def last_commit(self, ref: str = "main") -> str:
        """The newest commit on the remote branch: short hash, author, message."""
        return self._git("log", "-1", "--format=%h %an%n%B", ref)

    def remote_head(self, ref: str = "main") -> str:
        """The remote branch's head commit."""
        return self._git("rev-parse", ref).strip()

    # -- Kubernetes objects ----------------------------------------------------------
    def dockerconfigjson(self) -> str:
        """The registry credentials as a dockerconfigjson document."""
        auth = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
        return json.dumps({"auths": {self.registry.host: {"auth": auth}}})

    def objects(
        self,
        namespace: str,
        *,
        soak: str | None = None,
        dev_version: str = NEW_VERSION,
        git_url: str | None = None,
    ) -> list[dict[str, Any]]:
        """Secret, Argo CD Application (dev), and the dev and prod Environments."""
        images = [{"name": image} for image in self.images()]
        common = {
            "images": images,
            "registry": {"secretRef": {"name": "registry-pull"}, "insecure": True},
        }
        url = git_url or self.git_url
        prod_spec: dict[str, Any] = {
            "git": {"url": url, "branch": "main"},
            "overlay": {"path": "k8s/overlays/prod"},
            "upstream": "tvhub-dev",
            **common,
        }
        if soak:
            prod_spec["soak"] = soak
        return [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": "registry-pull", "namespace": namespace},
                "stringData": {".dockerconfigjson": self.dockerconfigjson()},
            },
            self.dev_application(namespace, dev_version),
            _environment(
                namespace,
                "tvhub-dev",
                {
                    "git": {"url": url, "branch": "main"},
                    "overlay": {"path": "k8s/overlays/dev"},
                    "health": {"argocd": {"application": "tvhub-dev", "namespace": namespace}},
                    **common,
                },
            ),
            _environment(namespace, "tvhub-prod", prod_spec),
        ]

    def dev_application(
        self, namespace: str, version: str, *, health: str = "Healthy"
    ) -> dict[str, Any]:
        """The dev Argo CD Application with the status Argo CD writes after a sync."""
        app = application("tvhub-dev", namespace, self.git_url, "k8s/overlays/dev")
        app["status"] = application_status(
            [f"{image}:{version}" for image in self.images()], health=health
        )
        return app


def _environment(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def promotion(namespace: str, name: str, version: str, **spec: Any) -> dict[str, Any]:
    """A Promotion of tvhub-prod to `version`."""
    return {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Promotion",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"environment": "tvhub-prod", "version": version, **spec},
    }
