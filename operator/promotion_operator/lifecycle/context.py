"""What every lifecycle step needs: configuration, the cluster, time, and resolved inputs."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.gitrules import validate_git_url
from promotion_operator.domain.models import EnvironmentSpec, EnvironmentStatus
from promotion_operator.gitops import GitAuth, GitRepository, HTTPSAuth, SSHAuth
from promotion_operator.k8s import Cluster, NotFoundError, Object
from promotion_operator.registry import RegistryCredentials, parse_dockerconfigjson

DEFAULT_CACHE_DIR = "/var/cache/promotion-operator"


@dataclass(frozen=True)
class OperatorConfig:
    """Process-wide settings, from the command line."""

    cache_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("PROMOTION_OPERATOR_CACHE_DIR", DEFAULT_CACHE_DIR)
        )
    )
    allow_file_urls: bool = False
    backoff_initial: float = 2.0
    backoff_max: float = 60.0
    environment_refresh: float = 30.0
    git_timeout: float = 60.0


def now() -> dt.datetime:
    """The current time, UTC."""
    return dt.datetime.now(dt.UTC)


def timestamp(moment: dt.datetime) -> str:
    """RFC 3339 with second precision, as Kubernetes writes times."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_timestamp(moment: dt.datetime) -> str:
    """RFC 3339 with microseconds: orders requests made within the same second."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    """Parse a Kubernetes timestamp (with or without fractional seconds)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Environment:
    """An Environment object, parsed, with the secrets it references resolved."""

    namespace: str
    name: str
    generation: int
    spec: EnvironmentSpec
    status: EnvironmentStatus
    raw: Object

    @classmethod
    def parse(cls, obj: Object) -> Environment:
        """Parse an Environment object as stored by the API server."""
        meta = obj["metadata"]
        try:
            spec = EnvironmentSpec.model_validate(obj.get("spec") or {})
        except ValueError as error:
            raise PermanentError(
                Reason.INVALID_SPEC, f"Environment {meta['name']}: invalid spec: {error}"
            ) from error
        status = EnvironmentStatus.model_validate(obj.get("status") or {})
        return cls(meta["namespace"], meta["name"], meta.get("generation", 1), spec, status, obj)


def load_environment(cluster: Cluster, namespace: str, name: str) -> Environment:
    """Read an Environment of the same namespace; a missing one is a permanent error."""
    try:
        return Environment.parse(cluster.get_environment(namespace, name))
    except NotFoundError:
        raise PermanentError(
            Reason.ENVIRONMENT_NOT_FOUND,
            f"Environment {name!r} not found in namespace {namespace!r} "
            "(a Promotion can only name an Environment of its own namespace)",
        ) from None


def _secret(cluster: Cluster, namespace: str, name: str, purpose: str) -> dict[str, bytes]:
    try:
        return cluster.get_secret_data(namespace, name)
    except NotFoundError:
        raise PermanentError(
            Reason.SECRET_INVALID,
            f"Secret {name!r} ({purpose}) not found in namespace {namespace!r}",
        ) from None


def git_auth(cluster: Cluster, env: Environment) -> GitAuth:
    """Resolve the git credentials of an Environment from its Secret."""
    ref = env.spec.git.secret_ref
    url = env.spec.git.url
    is_ssh = url.startswith("ssh://") or ("://" not in url and "@" in url)
    if ref is None:
        if is_ssh:
            raise PermanentError(
                Reason.SECRET_INVALID,
                "an ssh git URL needs spec.git.secretRef: a Secret with ssh-privatekey "
                "and known_hosts",
            )
        return None
    data = _secret(cluster, env.namespace, ref.name, "git credentials")
    if is_ssh:
        if "ssh-privatekey" not in data:
            raise PermanentError(
                Reason.SECRET_INVALID,
                f"Secret {ref.name!r} has no key ssh-privatekey (needed for {_scheme(url)} URLs)",
            )
        if "known_hosts" not in data:
            raise PermanentError(
                Reason.SECRET_INVALID,
                f"Secret {ref.name!r} has no key known_hosts: SSH host keys are always "
                "verified, add the server's known_hosts line",
            )
        return SSHAuth(
            private_key=data["ssh-privatekey"].decode(), known_hosts=data["known_hosts"].decode()
        )
    if "password" not in data:
        raise PermanentError(
            Reason.SECRET_INVALID,
            f"Secret {ref.name!r} has no key password (a token for https URLs)",
        )
    username = data.get("username", b"git").decode()
    return HTTPSAuth(username=username, password=data["password"].decode())


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "scp-like ssh"


def registry_credentials(cluster: Cluster, env: Environment) -> dict[str, RegistryCredentials]:
    """Resolve the registry credentials of an Environment (empty for anonymous)."""
    registry = env.spec.registry
    if registry is None or registry.secret_ref is None:
        return {}
    name = registry.secret_ref.name
    data = _secret(cluster, env.namespace, name, "registry credentials")
    if ".dockerconfigjson" not in data:
        raise PermanentError(
            Reason.SECRET_INVALID,
            f"Secret {name!r} has no key .dockerconfigjson "
            "(create it with kubectl create secret docker-registry)",
        )
    return parse_dockerconfigjson(data[".dockerconfigjson"])


def repository(config: OperatorConfig, cluster: Cluster, env: Environment) -> GitRepository:
    """The cached clone of the Environment's repository (never a fresh clone per call)."""
    validate_git_url(env.spec.git.url, allow_file=config.allow_file_urls)
    return GitRepository(
        env.spec.git.url,
        env.spec.git.branch,
        cache_dir=config.cache_dir / "git",
        auth=git_auth(cluster, env),
        allow_file=config.allow_file_urls,
        timeout=config.git_timeout,
    )


def overlay_file(env: Environment) -> str:
    """The repository-relative path of the overlay's kustomization.yaml."""
    return env.spec.overlay.path.rstrip("/") + "/kustomization.yaml"


def short_hash(*parts: str) -> str:
    """A short stable hash, for names derived from inputs."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
