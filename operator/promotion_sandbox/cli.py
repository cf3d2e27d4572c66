"""`promotion-sandbox`: a real local control plane, and a demo of the whole product.

promotion-sandbox up      # etcd + kube-apiserver in the background; prints KUBECONFIG
promotion-sandbox down    # stops them
promotion-sandbox demo    # control plane, registry, git remote, operator, two promotions
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from promotion_sandbox.argocd import install_crds
from promotion_sandbox.controlplane import ControlPlane
from promotion_sandbox.procs import terminate
from promotion_sandbox.world import NEW_VERSION, UNTESTED_VERSION, World, promotion

DEFAULT_HOME = Path(
    os.environ.get(
        "PROMOTION_SANDBOX_HOME",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "promotion-operator"
        / "sandbox",
    )
)
NAMESPACE = "tvhub"


def _say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def _up(home: Path) -> ControlPlane:
    plane = ControlPlane(home / "controlplane")
    started = time.monotonic()
    plane.start()
    _say(f"control plane ready in {time.monotonic() - started:.1f}s")
    install_crds(plane.kubectl)
    return plane


def _apply(plane: ControlPlane, obj: dict[str, Any]) -> None:
    print(plane.kubectl("apply", "-f", "-", input_text=json.dumps(obj)).strip())


class _PhaseWatch:
    """`kubectl get promotions --watch`: every status write, as the API server sends it.

    Polling could miss a phase that lasts a few milliseconds (Pending, Promoting); a watch
    sees each write.
    """

    def __init__(self, plane: ControlPlane) -> None:
        if plane.state is None:
            raise RuntimeError("control plane not started")
        # no tabs: kubectl's tabwriter would hold tab-separated lines back until it exits
        template = '{.metadata.name}{"|"}{.status.phase}{"|"}{.status.message}{"\\n"}'
        self._proc = subprocess.Popen(
            [
                str(Path(plane.state.bin_dir) / "kubectl"),
                f"--kubeconfig={plane.kubeconfig}",
                "get",
                "promotions",
                "-n",
                NAMESPACE,
                "--watch",
                f"--output=jsonpath={template}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None  # noqa: S101 - set by PIPE above
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def follow(self, name: str, until: set[str], timeout: float) -> str:
        """Print each phase change of `name` with its message; return the final phase."""
        seen: tuple[str, str] | None = None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            who, phase, message = ([*line.split("|", 2), "", ""])[:3]
            if who != name or not phase or (phase, message) == seen:
                continue
            seen = (phase, message)
            print(f"   {name}: {phase:<10} {message}", flush=True)
            if phase in until:
                return phase
        raise SystemExit(f"{name} did not reach {until} in {timeout:.0f}s")

    def close(self) -> None:
        """Stop the watch."""
        terminate(self._proc, grace=5)


def demo(home: Path, keep: bool) -> int:
    """Run the whole product locally and promote a version; returns an exit code."""
    home.mkdir(parents=True, exist_ok=True)
    plane = _up(home)
    world = World(home / "world")
    operator: subprocess.Popen[bytes] | None = None
    try:
        world.workdir.mkdir(parents=True, exist_ok=True)
        if world.repo.exists():
            import shutil

            shutil.rmtree(world.workdir)
        world.start()
        _say(f"registry {world.registry.host} holds {', '.join(world.images())}")
        _say(f"git remote {world.git_url}")
        plane.kubectl("create", "namespace", NAMESPACE)
        for obj in world.objects(NAMESPACE, soak="8s"):
            _apply(plane, obj)
        log = home / "operator.log"
        with log.open("wb") as out:
            operator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "promotion_operator",
                    "run",
                    f"--kubeconfig={plane.kubeconfig}",
                    f"--namespace={NAMESPACE}",
                    f"--cache-dir={home / 'operator-cache'}",
                    "--allow-local-git",
                    "--environment-refresh=2",
                    "--max-backoff=3",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _say(f"operator running (log: {log}); dev runs {NEW_VERSION}, prod must soak 8s")
        watch = _PhaseWatch(plane)
        _apply(
            plane,
            promotion(
                NAMESPACE,
                f"tvhub-prod-{NEW_VERSION}",
                NEW_VERSION,
                reason="color button fix, checked in dev",
            ),
        )
        if watch.follow(f"tvhub-prod-{NEW_VERSION}", {"Succeeded", "Failed"}, 120) != "Succeeded":
            return 1
        _say("the prod overlay on the git remote now reads")
        print(world.remote_file("k8s/overlays/prod/kustomization.yaml"))
        print(world.last_commit())
        _say(f"a version never run in dev ({UNTESTED_VERSION}) waits, then fails at its timeout")
        _apply(
            plane,
            promotion(NAMESPACE, f"tvhub-prod-{UNTESTED_VERSION}", UNTESTED_VERSION, timeout="20s"),
        )
        final = watch.follow(f"tvhub-prod-{UNTESTED_VERSION}", {"Succeeded", "Failed"}, 120)
        watch.close()
        _say("kubectl get promotions,environments -n tvhub")
        print(plane.kubectl("get", "promotions,environments", "-n", NAMESPACE))
        return 0 if final == "Failed" else 1
    finally:
        terminate(operator, grace=20)
        if keep:
            _say(
                f"left running: export KUBECONFIG={plane.kubeconfig}; "
                "stop with: promotion-sandbox down"
            )
        else:
            world.stop()
            plane.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="promotion-sandbox")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start etcd + kube-apiserver in the background")
    sub.add_parser("down", help="stop them")
    run_demo = sub.add_parser("demo", help="run the operator and promote a version")
    run_demo.add_argument("--keep", action="store_true", help="leave the control plane up")
    args = parser.parse_args(argv)
    home: Path = args.home
    if args.command == "up":
        plane = _up(home)
        print(f"export KUBECONFIG={plane.kubeconfig}")
        return 0
    if args.command == "down":
        ControlPlane(home / "controlplane").stop()
        return 0
    return demo(home, args.keep)


if __name__ == "__main__":
    sys.exit(main())
