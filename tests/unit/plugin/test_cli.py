"""The command line itself: dispatch, kubectl's flags, refusals that need no cluster, and
--gitops against a real local git checkout (no cluster: -n names the namespace)."""

from __future__ import annotations

import subprocess
import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from promotion_operator.plugin.flow import promotion_name
from promotion_operator.plugin.kube import Kube, KubeError, KubeFlags
from promotion_operator.plugin.main import cli
from promotion_operator.plugin.session import EXIT_NOT_CONFIRMED
from promotion_operator.registry import _next_page


def test_env_version_is_the_to_command() -> None:
    result = CliRunner().invoke(cli, ["prod", "v1", "--help"])
    assert result.exit_code == 0
    assert "Promote ENVIRONMENT to VERSION" in result.output
    assert "Usage: cli to [OPTIONS] ENVIRONMENT VERSION" in result.output


def test_no_terminal_and_no_yes_refuses_before_anything_is_created(tmp_path: Path) -> None:
    # An unreadable kubeconfig: the refusal must come first, without a cluster.
    result = CliRunner().invoke(
        cli,
        ["--kubeconfig", str(tmp_path / "none"), "prod", "v20250819-f3b8541", "-r", "fix"],
    )
    assert result.exit_code == EXIT_NOT_CONFIRMED
    assert "pass --yes" in result.output


def test_a_reason_is_required() -> None:
    result = CliRunner().invoke(cli, ["rollback", "prod"])
    assert result.exit_code == 2
    assert "--reason" in result.output


def test_push_needs_gitops() -> None:
    result = CliRunner().invoke(cli, ["prod", "v1", "-r", "x", "--push", "--yes", "-n", "t"])
    assert result.exit_code == 2
    assert "--push needs --gitops" in result.output


def test_promotion_names_are_valid_object_names() -> None:
    assert promotion_name("tvhub-prod", "v20250819-f3b8541") == "tvhub-prod-v20250819-f3b8541"
    assert promotion_name("prod", "Release_1.2") == "prod-release-1-2"


def test_tag_pages_are_followed_only_within_the_repository() -> None:
    assert _next_page('</v2/team/a/tags/list?last=x&n=2>; rel="next"', "team/a") == (
        "/v2/team/a/tags/list?last=x&n=2"
    )
    assert _next_page('<https://evil.example/v2/team/a/tags/list>; rel="next"', "team/a") is None
    assert _next_page('</v2/team/other/tags/list?n=2>; rel="next"', "team/a") is None
    assert _next_page("", "team/a") is None


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    work = tmp_path / "work"
    _git(tmp_path, "clone", "--quiet", str(remote), str(work))
    _git(work, "config", "user.name", "Alice")
    _git(work, "config", "user.email", "alice@example.com")
    (work / "README").write_text("gitops\n")
    (work / "draft.txt").write_text("not to be committed\n")
    _git(work, "add", "README")
    _git(work, "commit", "--quiet", "-m", "init")
    _git(work, "push", "--quiet", "origin", "main")
    return work


def test_gitops_writes_and_commits_the_manifest_without_pushing(checkout: Path) -> None:
    args = ["-n", "tvhub", "tvhub-prod", "v20250819-f3b8541", "-r", "color fix", "--gitops"]
    result = CliRunner().invoke(cli, [*args, str(checkout)])
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(
        (checkout / "promotions/tvhub-prod-v20250819-f3b8541.yaml").read_text()
    )
    assert manifest["metadata"] == {"name": "tvhub-prod-v20250819-f3b8541", "namespace": "tvhub"}
    assert manifest["spec"] == {
        "environment": "tvhub-prod",
        "version": "v20250819-f3b8541",
        "reason": "color fix",
    }
    assert _git(checkout, "log", "-1", "--format=%s%n%b%an") == (
        "promote tvhub-prod to v20250819-f3b8541\nReason: color fix\nAlice"
    )
    assert _git(checkout, "show", "--name-only", "--format=", "HEAD") == (
        "promotions/tvhub-prod-v20250819-f3b8541.yaml"
    )
    assert _git(checkout, "status", "--porcelain") == "?? draft.txt"  # nothing else taken
    assert _git(checkout, "rev-parse", "origin/main") != _git(checkout, "rev-parse", "HEAD")
    again = CliRunner().invoke(cli, [*args, str(checkout), "--push"])
    assert again.exit_code == 0, again.output
    assert (checkout / "promotions/tvhub-prod-v20250819-f3b8541-2.yaml").is_file()
    _git(checkout, "fetch", "--quiet")
    assert _git(checkout, "rev-parse", "origin/main") == _git(checkout, "rev-parse", "HEAD")


def test_gitops_rollback_sets_the_rollback_field(checkout: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["rollback", "prod", "--to", "v1", "-r", "bad", "-n", "t", "--gitops", str(checkout)],
    )
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load((checkout / "promotions/prod-v1.yaml").read_text())
    assert manifest["spec"]["rollback"] is True


def test_an_unreadable_kubeconfig_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["versions", "prod", "--kubeconfig", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "error: cannot load the kubeconfig" in result.output
    assert "Traceback" not in result.output


def test_the_namespace_comes_from_the_kubeconfig_context(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
                    {"name": "b", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "a",
            }
        )
    )
    assert Kube(KubeFlags(kubeconfig=str(kubeconfig))).namespace == "team-a"
    assert Kube(KubeFlags(kubeconfig=str(kubeconfig), context="b")).namespace == "default"
    flagged = KubeFlags(kubeconfig=str(kubeconfig), namespace="mine")
    assert Kube(flagged).namespace == "mine"


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "a",
            }
        )
    )
    return path


def test_as_and_as_group_send_kubectls_impersonation_headers(tmp_path: Path) -> None:
    """One Impersonate-Group line per group, as kubectl sends them (a loopback server
    records the request; the API server's side is in tests/e2e/test_gates.py)."""
    seen: list[Message] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers)
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"kind":"Status","message":"not here"}')

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = _kubeconfig(tmp_path / "config", f"http://127.0.0.1:{server.server_port}")
        flags = KubeFlags(kubeconfig=str(config), as_user="bob", as_groups=("ops", "dev"))
        with pytest.raises(KubeError, match="not found"):
            Kube(flags).get("promotions", "p")
        with pytest.raises(KubeError, match="not found"):
            Kube(KubeFlags(kubeconfig=str(config))).get("promotions", "p")
    finally:
        server.shutdown()
        server.server_close()
    assert seen[0]["Impersonate-User"] == "bob"
    assert seen[0].get_all("Impersonate-Group") == ["ops", "dev"]
    assert seen[1]["Impersonate-User"] is None


def test_as_group_without_as_is_refused_as_kubectl_does(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "config", "https://127.0.0.1:1")
    result = CliRunner().invoke(
        cli, ["approve", "p", "--kubeconfig", str(config), "--as-group", "ops"]
    )
    assert result.exit_code == 1
    assert "--as-group needs --as" in result.output
