"""`kubectl promote` end to end: the real kubectl finds the plugin on PATH and runs it
against the real API server, registry, git remote and the operator process."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.world import (
    NEW_VERSION,
    OLD_VERSION,
    PROD_OVERLAY,
    UNTESTED_VERSION,
    World,
)
from support.operator import wait_for
from support.plugin import PLUGIN_TIMEOUT, plugin_bin, plugin_env, run_plugin

pytestmark = pytest.mark.e2e
EXIT_NOT_CONFIRMED = 3
EXIT_INTERRUPTED = 130


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory, kube: Kube) -> str:
    """A PATH with kubectl and only this checkout's kubectl-promote (plus git)."""
    return plugin_bin(tmp_path_factory.mktemp("plugin-bin"), kube)


_env = plugin_env
promote = run_plugin


def ready_world(kube: Kube, operator: OperatorProcess, world: World, namespace: str) -> None:
    """The World's objects, and the operator's first status on both Environments."""
    kube.apply(*world.objects(namespace))

    def refreshed() -> bool:
        dev = kube.get("environment", "tvhub-dev", namespace).get("status") or {}
        prod = kube.get("environment", "tvhub-prod", namespace).get("status") or {}
        return dev.get("liveVersion") == NEW_VERSION and prod.get("version") == OLD_VERSION

    wait_for("both Environments refreshed", refreshed, logs=operator.logs)


def promotions(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    listed = json.loads(kube.kubectl("get", "promotions", "-n", namespace, "-o", "json").stdout)
    items: list[dict[str, Any]] = listed["items"]
    return items


def test_kubectl_finds_the_plugin_and_it_lists_versions_and_writes_gitops_files(
    kube: Kube,
    operator: OperatorProcess,
    fresh_world: World,
    e2e_namespace: str,
    plugin_path: str,
    tmp_path: Path,
) -> None:
    ns = e2e_namespace
    listed = subprocess.run(
        ["kubectl", "plugin", "list"],
        env=_env(kube, plugin_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "kubectl-promote" in listed.stdout, listed.stderr
    ready_world(kube, operator, fresh_world, ns)

    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", fresh_world.git_url, str(checkout)], check=True)
    for key, value in (("user.name", "Alice"), ("user.email", "alice@example.com")):
        subprocess.run(["git", "-C", str(checkout), "config", key, value], check=True)
    head = fresh_world.remote_head()
    # three independent runs at once: the plugin's start-up is most of each one's time
    with ThreadPoolExecutor(max_workers=3) as pool:
        as_json, as_table, written = pool.map(
            lambda args: promote(kube, plugin_path, ns, *args),
            [
                ("versions", "tvhub-prod", "-o", "json"),
                ("versions", "tvhub-prod"),
                ("tvhub-prod", NEW_VERSION, "-r", "via git", "--gitops", str(checkout)),
            ],
        )
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    rows = {row["version"]: row for row in document["versions"]}
    listed_versions = [row["version"] for row in document["versions"]]
    ours = {UNTESTED_VERSION, NEW_VERSION, OLD_VERSION}
    assert [v for v in listed_versions if v in ours] == [
        UNTESTED_VERSION,
        NEW_VERSION,
        OLD_VERSION,
    ]
    # the session's registry also holds other tests' tags: all of them, newest date first
    dates = [version.split("-")[0] for version in listed_versions]
    assert dates == sorted(dates, reverse=True)
    assert rows[NEW_VERSION]["upstreamRunning"] is True
    assert rows[NEW_VERSION]["upstreamHealthySince"]
    assert rows[NEW_VERSION]["current"] is False
    assert rows[OLD_VERSION]["current"] is True
    assert rows[UNTESTED_VERSION]["upstreamRunning"] is False
    assert all(rows[version]["missingImages"] == [] for version in ours)
    assert as_table.returncode == 0, as_table.stderr
    assert NEW_VERSION in as_table.stdout
    assert "running" in as_table.stdout

    assert written.returncode == 0, written.stderr
    manifest = checkout / "promotions" / f"tvhub-prod-{NEW_VERSION}.yaml"
    assert f"version: {NEW_VERSION}" in manifest.read_text()
    assert f"namespace: {ns}" in manifest.read_text()
    assert fresh_world.remote_head() == head  # committed, not pushed
    assert promotions(kube, ns) == []  # and nothing created in the cluster


def test_promote_follows_to_succeeded_then_history_status_and_rollback(
    kube: Kube,
    operator: OperatorProcess,
    fresh_world: World,
    e2e_namespace: str,
    plugin_path: str,
) -> None:
    ns = e2e_namespace
    ready_world(kube, operator, fresh_world, ns)
    result = promote(kube, plugin_path, ns, "tvhub-prod", NEW_VERSION, "-r", "color fix", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"+    newTag: {NEW_VERSION}" in result.stdout  # the dry run's diff
    assert "UpstreamVersion" in result.stdout  # its checks
    assert "Succeeded" in result.stdout
    assert fresh_world.remote_file(PROD_OVERLAY).count(f"newTag: {NEW_VERSION}") == 2
    real = [p for p in promotions(kube, ns) if not p["spec"].get("dryRun")]
    assert [p["metadata"]["name"] for p in real] == [f"tvhub-prod-{NEW_VERSION}"]
    commit = real[0]["status"]["commit"]
    assert result.stdout.count(commit[:7]) >= 1

    def refreshed_status() -> subprocess.CompletedProcess[str]:
        def refreshed() -> bool:
            status = kube.get("environment", "tvhub-prod", ns).get("status") or {}
            return status.get("version") == NEW_VERSION

        wait_for("the operator's refresh of tvhub-prod", refreshed, logs=operator.logs)
        return promote(kube, plugin_path, ns, "status", "-o", "json")

    # independent reads of the one promotion, at once: each is mostly the plugin's start-up
    with ThreadPoolExecutor(max_workers=3) as pool:
        again_run = pool.submit(
            promote, kube, plugin_path, ns, "tvhub-prod", NEW_VERSION, "-r", "again", "--yes"
        )
        history_run = pool.submit(
            promote, kube, plugin_path, ns, "history", "tvhub-prod", "-o", "json",
            "--allow-local-git",
        )  # fmt: skip
        status_run = pool.submit(refreshed_status)
        again, history, status = again_run.result(), history_run.result(), status_run.result()
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"tvhub-prod already pins {NEW_VERSION}: nothing to promote" in again.stdout
    assert len([p for p in promotions(kube, ns) if not p["spec"].get("dryRun")]) == 1
    whoami = kube.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout
    assert f"Requested-By: {whoami}" in fresh_world.remote_messages()[0]

    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    assert rows[0]["commit"] == commit[:7]
    assert (rows[0]["from"], rows[0]["to"]) == (OLD_VERSION, NEW_VERSION)
    assert (rows[0]["by"], rows[0]["reason"], rows[0]["phase"]) == (
        whoami,
        "color fix",
        "Succeeded",
    )

    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert {row["environment"]: row["gitVersion"] for row in shown} == {
        "tvhub-dev": NEW_VERSION,
        "tvhub-prod": NEW_VERSION,
    }

    # dev goes back first, so the rollback passes the upstream checks with or without the
    # operator's rollback guard (which lets spec.rollback skip them for a version prod ran)
    kube.apply(fresh_world.dev_application(ns, OLD_VERSION))
    hostile = "bad release \x1b[2J\x1b]8;;https://evil.example\x07"  # clear screen, a link
    back = promote(kube, plugin_path, ns, "rollback", "tvhub-prod", "-r", hostile, "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert f"rolling tvhub-prod back to {OLD_VERSION}" in back.stderr
    assert fresh_world.remote_file(PROD_OVERLAY).count(f"newTag: {OLD_VERSION}") == 2
    rollback = [
        p for p in promotions(kube, ns) if p["spec"].get("rollback") and not p["spec"]["dryRun"]
    ]
    assert [p["spec"]["version"] for p in rollback] == [OLD_VERSION]
    assert rollback[0]["status"]["phase"] == "Succeeded"
    shown = promote(kube, plugin_path, ns, "history", "tvhub-prod", "--allow-local-git")
    assert shown.returncode == 0, shown.stderr
    assert "bad release ?[2J?]8;;https://evil.example?" in shown.stdout  # shown, defused
    assert "\x1b" not in shown.stdout


def failing_promotion_exits_non_zero_with_its_reason(
    kube: Kube, operator: OperatorProcess, world: World, ns: str, plugin_path: str
) -> None:
    """A Promotion that fails (dev never ran the version) ends the plugin with exit 1 and
    its reason; nothing is pushed, and the waiting dry run is removed."""
    ready_world(kube, operator, world, ns)
    head = world.remote_head()
    args = ("tvhub-prod", UNTESTED_VERSION, "-r", "untested", "--yes", "--timeout", "4s")
    result = promote(kube, plugin_path, ns, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Failed" in result.stdout
    assert "UpstreamVersionMismatch" in result.stdout
    assert world.remote_head() == head
    # the dry run that was still waiting was removed; the failed Promotion is the record
    assert [p["spec"].get("dryRun", False) for p in promotions(kube, ns)] == [False]


def _run_in_pty(
    argv: Sequence[str], env: dict[str, str], *script: tuple[bytes, bytes]
) -> tuple[int, str]:
    """Run with a pseudo-terminal as stdin/stdout/stderr; type each `keys` once its
    `prompt` has been shown (Ctrl-C is b"\x03": the terminal turns it into SIGINT)."""
    main, child = pty.openpty()

    def controlling_terminal() -> None:  # in the child, after setsid: as a shell would
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv,
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
        start_new_session=True,
        preexec_fn=controlling_terminal,  # noqa: PLW1509 - no threads hold locks it needs
    )
    os.close(child)
    seen = b""
    todo = list(script)
    deadline = time.monotonic() + PLUGIN_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if todo and todo[0][0] in seen:
            os.write(main, todo.pop(0)[1])
        if proc.poll() is not None and not ready:
            break
    os.close(main)
    if proc.poll() is None:
        proc.kill()
    code = proc.wait(timeout=10)
    return code, seen.decode(errors="replace")


def test_exit_codes_failed_not_confirmed_and_interrupted(
    kube: Kube,
    operator: OperatorProcess,
    world: World,
    fresh_world: World,
    e2e_namespace: str,
    new_namespace: Callable[[str], str],
    plugin_path: str,
    tmp_path: Path,
) -> None:
    """The confirmation asked on a terminal and refused without one, Ctrl-C while following,
    and (at the same time, in a namespace and repository of its own: its wait is the
    Promotion's timeout) a failing promotion."""
    (tmp_path / "failing").mkdir()
    failing_world = world.fork(tmp_path / "failing")
    failing_ns = new_namespace("e2e")
    pool = ThreadPoolExecutor(max_workers=1)
    failing = pool.submit(
        failing_promotion_exits_non_zero_with_its_reason,
        kube, operator, failing_world, failing_ns, plugin_path,
    )  # fmt: skip
    pool.shutdown(wait=False)
    ns = e2e_namespace
    ready_world(kube, operator, fresh_world, ns)
    head = fresh_world.remote_head()
    refused = promote(kube, plugin_path, ns, "tvhub-prod", NEW_VERSION, "-r", "no tty")
    assert refused.returncode == EXIT_NOT_CONFIRMED
    assert "pass --yes" in refused.stderr
    assert promotions(kube, ns) == []

    argv = ["kubectl", "promote", "tvhub-prod", NEW_VERSION, "-r", "by hand", "-n", ns]
    code, screen = _run_in_pty(argv, _env(kube, plugin_path), (b"[y/n]", b"n\n"))
    assert code == EXIT_NOT_CONFIRMED, screen
    assert f"Promote tvhub-prod to {NEW_VERSION}?" in screen
    assert NEW_VERSION in screen  # the diff was shown before the question
    assert all(p["spec"].get("dryRun") for p in promotions(kube, ns))
    assert fresh_world.remote_head() == head

    code, screen = _run_in_pty(argv, _env(kube, plugin_path), (b"[y/n]", b"y\n"))
    assert code == 0, screen
    assert "Succeeded" in screen
    assert fresh_world.remote_file(PROD_OVERLAY).count(f"newTag: {NEW_VERSION}") == 2

    # Ctrl-C while following a Promotion that waits (dev never ran this version)
    untested = ["kubectl", "promote", "tvhub-prod", UNTESTED_VERSION, "-r", "wait", "-n", ns]
    code, screen = _run_in_pty(
        untested, _env(kube, plugin_path), (b"[y/n]", b"y\n"), (b"Verifying", b"\x03")
    )
    assert code == EXIT_INTERRUPTED, screen
    assert "the promotion goes on" in screen
    waiting = kube.get("promotion", f"tvhub-prod-{UNTESTED_VERSION}", ns)
    assert waiting["status"]["phase"] == "Verifying"  # still there, still waiting
    # an Environment without spec.approval: approving it is refused, nothing is created
    approve = promote(kube, plugin_path, ns, "approve", f"tvhub-prod-{UNTESTED_VERSION}")
    assert approve.returncode == 1, approve.stdout + approve.stderr
    assert "which asks for no approvals (spec.approval)" in " ".join(approve.stderr.split())
    listed = kube.kubectl("get", "promotionapprovals", "-n", ns, "-o", "name").stdout
    assert listed.strip() == ""
    failing.result(timeout=PLUGIN_TIMEOUT)
