"""Promotions through the real operator process with git over authenticated transports.

SSH (sshd with its own host key; the Secret carries the private key and known_hosts) and
HTTPS (smart HTTP with Basic auth behind TLS from a throw-away CA). Credentials must never
show up in a status, an Event, the operator's log or the remote's history.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from promotion_sandbox.gitserver import HTTPGitServer, SSHGitServer, generate_ssh_key
from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.world import NEW_VERSION, OLD_VERSION, PROD_OVERLAY, World, promotion
from support.operator import events_of, status_of, wait_for

pytestmark = pytest.mark.e2e
PROD = PROD_OVERLAY
REPO = "tvhub-gitops.git"


# --- helpers --------------------------------------------------------------------------------


def apply_world(kube: Kube, world: World, ns: str, git_url: str, secret: str) -> None:
    """The world's objects with both Environments on `git_url`, authenticated by `secret`."""
    for obj in world.objects(ns, git_url=git_url):
        if obj["kind"] == "Environment":
            obj["spec"]["git"]["secretRef"] = {"name": secret}
        kube.apply(obj)


def create_secret(kube: Kube, ns: str, name: str, data: dict[str, str]) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "stringData": data,
        }
    )


def wait_final(
    kube: Kube, operator: OperatorProcess, ns: str, name: str, phase: str, timeout: float = 30
) -> dict[str, Any]:
    """Wait for `phase`; fail fast (with the status) if the Promotion ends in another."""
    final = {"Succeeded", "Failed", "Superseded"}

    def probe() -> dict[str, Any] | None:
        status = status_of(kube, ns, name)
        if status.get("phase") in final - {phase}:
            raise AssertionError(f"{name} ended {status.get('phase')}, not {phase}: {status}")
        return status if status.get("phase") == phase else None

    result: dict[str, Any] = wait_for(
        f"{name} to reach {phase}", probe, timeout=timeout, logs=operator.logs
    )
    return result


def ready(status: dict[str, Any]) -> tuple[str, str]:
    condition = next(c for c in status["conditions"] if c["type"] == "Ready")
    return condition["status"], condition["reason"]


def everything_visible(kube: Kube, operator: OperatorProcess, ns: str) -> str:
    """What a user or an admin can read: Promotions, Environments, Events, operator log."""
    text = kube.kubectl("get", "promotions,environments", "-n", ns, "-o", "json").stdout
    text += kube.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    return text + operator.logs()


def key_body_lines(private_key: str) -> list[str]:
    """The distinctive base64 lines of an OpenSSH private key (not the BEGIN/END armour)."""
    lines = [line for line in private_key.splitlines() if line and not line.startswith("-----")]
    assert len(lines) >= 3, private_key
    # the first line is the same for every unencrypted ed25519 key; the rest is the key
    return lines[1:]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def ssh_server(fresh_world: World, tmp_path: Path) -> Iterator[SSHGitServer]:
    """sshd serving this test's bare repository."""
    with SSHGitServer(fresh_world.repo.parent, tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def auth_namespace(new_namespace: Callable[[str], str]) -> str:
    """A namespace the session operator (watching e2e-*) ignores: the test runs its own."""
    return new_namespace("auth")


# --- SSH ------------------------------------------------------------------------------------


def test_ssh_promotion_succeeds_and_never_shows_the_key(
    kube: Kube,
    operator: OperatorProcess,
    fresh_world: World,
    ssh_server: SSHGitServer,
    e2e_namespace: str,
) -> None:
    ns = e2e_namespace
    key = ssh_server.client_private_key
    create_secret(
        kube, ns, "git-ssh", {"ssh-privatekey": key, "known_hosts": ssh_server.known_hosts}
    )
    apply_world(kube, fresh_world, ns, ssh_server.url_for(REPO), "git-ssh")
    before = fresh_world.remote_head()
    kube.apply(promotion(ns, "over-ssh", NEW_VERSION, reason="promoted over ssh"))
    status = wait_final(kube, operator, ns, "over-ssh", "Succeeded")

    assert ready(status) == ("True", "Promoted")
    head = fresh_world.remote_head()
    assert status["commit"] == head != before
    assert status["previousVersion"] == OLD_VERSION
    overlay = fresh_world.remote_file(PROD)
    assert overlay.count(f"newTag: {NEW_VERSION}") == 2
    assert OLD_VERSION not in overlay
    assert len(fresh_world.remote_messages()) == 2
    assert "Reason: promoted over ssh" in fresh_world.remote_messages()[0]
    # the dev Environment reads its overlay over ssh too
    dev = wait_for(
        "dev to be read over ssh",
        lambda: (kube.get("environment", "tvhub-dev", ns).get("status") or {}).get("version"),
        logs=operator.logs,
    )
    assert dev == NEW_VERSION
    assert "Accepted publickey" in ssh_server.log_path.read_text(errors="replace")

    visible = everything_visible(kube, operator, ns) + "\n".join(fresh_world.remote_messages())
    for line in key_body_lines(key):
        assert line not in visible
    assert "PRIVATE KEY" not in visible


def test_ssh_wrong_known_hosts_fails_with_git_auth_failed(
    kube: Kube,
    operator: OperatorProcess,
    fresh_world: World,
    ssh_server: SSHGitServer,
    e2e_namespace: str,
    tmp_path: Path,
) -> None:
    ns = e2e_namespace
    _, other_host = generate_ssh_key(tmp_path / "other_host_key", comment="impostor")
    key_type, other_key = other_host.split()[:2]
    wrong = f"[127.0.0.1]:{ssh_server.port} {key_type} {other_key}\n"
    assert wrong != ssh_server.known_hosts
    create_secret(
        kube,
        ns,
        "git-ssh",
        {"ssh-privatekey": ssh_server.client_private_key, "known_hosts": wrong},
    )
    apply_world(kube, fresh_world, ns, ssh_server.url_for(REPO), "git-ssh")
    before = fresh_world.remote_head()
    kube.apply(promotion(ns, "spoofed", NEW_VERSION))
    status = wait_final(kube, operator, ns, "spoofed", "Failed")

    assert ready(status) == ("False", "GitAuthFailed"), status
    assert "known_hosts" in status["message"] and "host key" in status["message"]
    assert "commit" not in status
    assert fresh_world.remote_head() == before
    assert len(fresh_world.remote_messages()) == 1
    visible = everything_visible(kube, operator, ns)
    for line in key_body_lines(ssh_server.client_private_key):
        assert line not in visible


def test_ssh_secret_without_known_hosts_is_invalid(
    kube: Kube,
    operator: OperatorProcess,
    fresh_world: World,
    ssh_server: SSHGitServer,
    e2e_namespace: str,
) -> None:
    ns = e2e_namespace
    create_secret(kube, ns, "git-ssh", {"ssh-privatekey": ssh_server.client_private_key})
    apply_world(kube, fresh_world, ns, ssh_server.url_for(REPO), "git-ssh")
    before = fresh_world.remote_head()
    kube.apply(promotion(ns, "no-hosts", NEW_VERSION))
    status = wait_final(kube, operator, ns, "no-hosts", "Failed")

    assert ready(status) == ("False", "SecretInvalid"), status
    assert "known_hosts" in status["message"] and "git-ssh" in status["message"]
    assert "commit" not in status
    assert fresh_world.remote_head() == before
    visible = everything_visible(kube, operator, ns)
    for line in key_body_lines(ssh_server.client_private_key):
        assert line not in visible


# --- HTTPS ----------------------------------------------------------------------------------


def test_https_token_right_then_wrong(
    kube: Kube, fresh_world: World, auth_namespace: str, tmp_path: Path
) -> None:
    """The operator trusts the server's CA only through GIT_SSL_CAINFO in its environment
    (the command line has no CA option), so this test runs an operator of its own."""
    ns = auth_namespace
    token = f"tok-{uuid.uuid4().hex}"
    wrong = f"bad-{uuid.uuid4().hex}"
    with HTTPGitServer(
        fresh_world.repo.parent, tmp_path / "https", username="promoter", password=token
    ) as server:
        assert server.ca_cert is not None
        url = server.url_for(REPO)
        assert url.startswith("https://")
        create_secret(kube, ns, "git-token", {"username": "promoter", "password": token})
        apply_world(kube, fresh_world, ns, url, "git-token")
        trust = {"GIT_SSL_CAINFO": str(server.ca_cert)}
        with OperatorProcess(kube, tmp_path / "operator", [ns], env=trust) as operator:
            before = fresh_world.remote_head()
            kube.apply(promotion(ns, "with-token", NEW_VERSION, reason="promoted over https"))
            status = wait_final(kube, operator, ns, "with-token", "Succeeded")
            assert ready(status) == ("True", "Promoted")
            head = fresh_world.remote_head()
            assert status["commit"] == head != before
            assert fresh_world.remote_file(PROD).count(f"newTag: {NEW_VERSION}") == 2
            assert len(fresh_world.remote_messages()) == 2
            expected = {"Pending", "Promoting", "Promoted"}
            assert expected <= set(events_of(kube, ns, "with-token", including=expected))
            requests_after_success = server.requests
            assert requests_after_success > 0

            # the same Environments, now with a wrong token: refused, nothing pushed
            create_secret(kube, ns, "git-token", {"username": "promoter", "password": wrong})
            # (the version is already in prod, but finding that out needs a fetch)
            kube.apply(promotion(ns, "bad-token", NEW_VERSION))
            failed = wait_final(kube, operator, ns, "bad-token", "Failed")
            assert ready(failed) == ("False", "GitAuthFailed"), failed
            assert "username/password" in failed["message"]
            assert "commit" not in failed
            assert fresh_world.remote_head() == head
            assert server.requests > requests_after_success

            visible = everything_visible(kube, operator, ns)
            history = "\n".join(fresh_world.remote_messages())
            for secret in (token, wrong):
                assert secret not in visible
                assert secret not in history
