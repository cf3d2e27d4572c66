"""Credentials an Environment references, resolved from Secrets of its own namespace."""

from __future__ import annotations

from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.gitrules import is_ssh_url
from promotion_operator.domain.images import RegistryCredentials, parse_dockerconfigjson
from promotion_operator.gitops import GitAuth, HTTPSAuth, SSHAuth
from promotion_operator.k8s import ClusterAPI, NotFoundError
from promotion_operator.lifecycle.objects import Environment


def _secret(cluster: ClusterAPI, namespace: str, name: str, purpose: str) -> dict[str, bytes]:
    try:
        return cluster.get_secret_data(namespace, name)
    except NotFoundError:
        raise PermanentError(
            Reason.SECRET_INVALID,
            f"Secret {name!r} ({purpose}) not found in namespace {namespace!r}",
        ) from None


def _text(data: dict[str, bytes], key: str, secret: str) -> str:
    """A Secret value as text; a value that is not UTF-8 is a clear error, never a crash."""
    try:
        return data[key].decode("utf-8")
    except UnicodeDecodeError:
        raise PermanentError(
            Reason.SECRET_INVALID, f"Secret {secret!r}: the value of key {key} is not UTF-8 text"
        ) from None


def secret_text(cluster: ClusterAPI, namespace: str, name: str, key: str, purpose: str) -> str:
    """One value of a Secret as text; a missing Secret or key is a SecretInvalid error."""
    data = _secret(cluster, namespace, name, purpose)
    if key not in data:
        raise PermanentError(Reason.SECRET_INVALID, f"Secret {name!r} ({purpose}) has no key {key}")
    return _text(data, key, name)


def git_auth(cluster: ClusterAPI, env: Environment) -> GitAuth:
    """Resolve the git credentials of an Environment from its Secret."""
    ref = env.spec.git.secret_ref
    url = env.spec.git.url
    ssh = is_ssh_url(url)
    if ref is None:
        if ssh:
            raise PermanentError(
                Reason.SECRET_INVALID,
                "an ssh git URL needs spec.git.secretRef: a Secret with ssh-privatekey "
                "and known_hosts",
            )
        return None
    data = _secret(cluster, env.namespace, ref.name, "git credentials")
    if ssh:
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
            private_key=_text(data, "ssh-privatekey", ref.name),
            known_hosts=_text(data, "known_hosts", ref.name),
        )
    if "password" not in data:
        raise PermanentError(
            Reason.SECRET_INVALID,
            f"Secret {ref.name!r} has no key password (a token for https URLs)",
        )
    username = _text(data, "username", ref.name) if "username" in data else "git"
    return HTTPSAuth(username=username, password=_text(data, "password", ref.name))


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "scp-like ssh"


def registry_credentials(cluster: ClusterAPI, env: Environment) -> dict[str, RegistryCredentials]:
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
