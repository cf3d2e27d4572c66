"""A small GitOps world on loopback: a registry with images and a git remote with overlays.

The layout is the one every example uses: `k8s/base`, `k8s/overlays/{dev,prod}` with an
`images:` list, CI having bumped dev to a newer version than prod. Used by the demo, the
end-to-end tests and the benchmark.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promotion_sandbox.argocd import application, application_status
from promotion_sandbox.gitserver import (
    branch_head,
    commit_files,
    commit_messages,
    init_bare_repo,
    last_commit,
    read_remote_file,
)
from promotion_sandbox.registry import LocalRegistry

OLD_VERSION = "v20250812-a1b2c3d"
NEW_VERSION = "v20250819-f3b8541"
UNTESTED_VERSION = "v20250826-0badc0d"
COMPONENTS = ("tvhub-frontend", "tvhub-backend")
REGISTRY_USER = "ci"
REGISTRY_PASSWORD = "registry-s3cret-pw"  # noqa: S105 - a local sandbox's throw-away password
PROD_OVERLAY = "k8s/overlays/prod/kustomization.yaml"


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
    """Registry (htpasswd auth) + bare git repository under `workdir`.

    `fork` gives another World on the same registry with a repository of its own, so a
    session can share one registry while each test gets a fresh remote. `image_host` names
    the images (overlays, Environments, the registry Secret) after another address of the
    registry, e.g. a toxiproxy in front of it; CI's pushes still go to the registry itself.
    """

    def __init__(
        self,
        workdir: Path,
        registry: LocalRegistry | None = None,
        *,
        image_host: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.registry = registry or LocalRegistry(
            workdir / "registry", auth="htpasswd", users={REGISTRY_USER: REGISTRY_PASSWORD}
        )
        self.repo = workdir / "git" / "tvhub-gitops.git"
        self._image_host = image_host

    @property
    def image_host(self) -> str:
        """host:port the images are named after (the registry's own, unless given)."""
        return self._image_host or self.registry.host

    def start(self, versions: Sequence[str] = (OLD_VERSION, NEW_VERSION, UNTESTED_VERSION)) -> None:
        """Start the registry, push every component at `versions`, create the repository."""
        (self.workdir / "registry").mkdir(parents=True, exist_ok=True)
        self.registry.start()
        for version in versions:
            self.push_version(version)
        self.create_repo()

    def create_repo(self) -> None:
        """Create the bare repository with the initial GitOps layout."""
        init_bare_repo(self.repo, gitops_files(self.image_host), message="initial layout")

    def fork(self, workdir: Path) -> World:
        """A World on this (running) registry with a fresh repository under `workdir`."""
        other = World(workdir, self.registry, image_host=self._image_host)
        other.create_repo()
        return other

    def stop(self) -> None:
        """Stop the registry."""
        self.registry.stop()

    @property
    def git_url(self) -> str:
        """The remote, as a file:// URL (the operator needs --allow-local-git for it)."""
        return self.repo.as_uri()

    def images(self) -> list[str]:
        """Every component's image name."""
        return [f"{self.image_host}/team/{c}" for c in COMPONENTS]

    def push_version(self, version: str) -> None:
        """Push every component's image at `version` (what CI does)."""
        for component in COMPONENTS:
            self.registry.push_image(
                f"team/{component}", version, username=REGISTRY_USER, password=REGISTRY_PASSWORD
            )

    def add_prod_like_overlays(self, count: int) -> list[str]:
        """Commit `count` copies of the prod overlay (`k8s/overlays/prod-<i>`); return paths."""
        prod = self.remote_file(PROD_OVERLAY)
        paths = [f"k8s/overlays/prod-{index}" for index in range(count)]
        commit_files(
            self.repo,
            {f"{path}/kustomization.yaml": prod for path in paths},
            message=f"add {count} more prod-like overlays",
        )
        return paths

    # -- what the remote holds (gitserver's bare-repo reader) ----------------------------
    def remote_file(self, path: str) -> str:
        """A file's content on the remote's main branch."""
        return read_remote_file(self.repo, path)

    def remote_messages(self, *, since: str | None = None) -> list[str]:
        """Every commit message on the remote's main branch (after `since`), newest first."""
        return commit_messages(self.repo, since=since)

    def commit_file(self, path: str, text: str, message: str = "edit by a human") -> str:
        """Commit one file to the remote's main branch, as a person would; return the sha."""
        return commit_files(self.repo, {path: text}, message=message)

    def last_commit(self) -> str:
        """The newest commit on the remote's main branch: short hash, author, message."""
        return last_commit(self.repo)

    def remote_head(self) -> str:
        """The remote's main branch head commit."""
        return branch_head(self.repo)

    # -- Kubernetes objects ----------------------------------------------------------
    def dockerconfigjson(self) -> str:
        """The registry credentials as a dockerconfigjson document."""
        auth = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
        return json.dumps({"auths": {self.image_host: {"auth": auth}}})

    def objects(
        self,
        namespace: str,
        *,
        soak: str | None = None,
        dev_version: str = NEW_VERSION,
        git_url: str | None = None,
    ) -> list[dict[str, Any]]:
        """Secret, Argo CD Application (dev), and the dev and prod Environments."""
        url = git_url or self.git_url
        prod = self.prod_like_environment(namespace, "k8s/overlays/prod", git_url=url)
        if soak:
            prod["spec"]["soak"] = soak
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
                    **self._images_and_registry(),
                },
            ),
            prod,
        ]

    def prod_like_environment(
        self, namespace: str, overlay_path: str, *, git_url: str | None = None
    ) -> dict[str, Any]:
        """An Environment promoted from tvhub-dev, named `tvhub-<overlay folder>`."""
        spec = {
            "git": {"url": git_url or self.git_url, "branch": "main"},
            "overlay": {"path": overlay_path},
            "upstream": "tvhub-dev",
            **self._images_and_registry(),
        }
        return _environment(namespace, f"tvhub-{Path(overlay_path).name}", spec)

    def _images_and_registry(self) -> dict[str, Any]:
        return {
            "images": [{"name": image} for image in self.images()],
            "registry": {"secretRef": {"name": "registry-pull"}, "insecure": True},
        }

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
