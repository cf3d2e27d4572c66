"""Registry and git credentials from an Environment's Secrets, when the user may read them.

The user runs the plugin with their own rights: a Secret they may not read means
anonymous access, with a warning that says so, never a failure.
"""

from __future__ import annotations

from promotion_operator.domain.errors import PromotionError
from promotion_operator.domain.gitrules import is_ssh_url
from promotion_operator.domain.images import RegistryCredentials, parse_dockerconfigjson
from promotion_operator.domain.models import EnvironmentSpec
from promotion_operator.gitops import GitAuth, HTTPSAuth, SSHAuth
from promotion_operator.plugin.kube import KubeError
from promotion_operator.plugin.session import Session


def _secret(session: Session, name: str, purpose: str) -> dict[str, bytes] | None:
    try:
        return session.kube.secret_data(name)
    except KubeError as error:
        session.warn(f"cannot read Secret {name} ({purpose}): {error}; going on anonymously")
        return None


def registry_credentials(session: Session, spec: EnvironmentSpec) -> dict[str, RegistryCredentials]:
    """The dockerconfigjson of spec.registry.secretRef, or {} (anonymous)."""
    ref = spec.registry.secret_ref if spec.registry else None
    if ref is None:
        return {}
    data = _secret(session, ref.name, "registry credentials")
    if data is None:
        return {}
    try:
        return parse_dockerconfigjson(data.get(".dockerconfigjson", b""))
    except PromotionError as error:
        session.warn(f"Secret {ref.name}: {error.message}; going on anonymously")
        return {}


def git_auth(session: Session, spec: EnvironmentSpec) -> GitAuth:
    """The git credentials of spec.git.secretRef, or None (anonymous)."""
    ref = spec.git.secret_ref
    if ref is None:
        return None
    data = _secret(session, ref.name, "git credentials")
    if data is None:
        return None
    text = {key: value.decode("utf-8", "replace") for key, value in data.items()}
    if is_ssh_url(spec.git.url) and "ssh-privatekey" in text:
        return SSHAuth(private_key=text["ssh-privatekey"], known_hosts=text.get("known_hosts", ""))
    if "password" in text:
        return HTTPSAuth(username=text.get("username", "git"), password=text["password"])
    return None
