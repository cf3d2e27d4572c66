"""`promotion-sandbox`: a real local control plane, and a demo of the whole product.

promotion-sandbox up      # etcd + kube-apiserver in the background; prints KUBECONFIG
promotion-sandbox down    # stops them
promotion-sandbox demo    # control plane, registry, git remote, operator, two promotions
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from promotion_sandbox.controlplane import ControlPlane
from promotion_sandbox.kube import Kube
from promotion_sandbox.stack import running_stack
from promotion_sandbox.watch import PhaseChange, PhaseWatch
from promotion_sandbox.world import NEW_VERSION, PROD_OVERLAY, UNTESTED_VERSION, World

DEFAULT_HOME = Path(
    os.environ.get(
        "PROMOTION_SANDBOX_HOME",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "promotion-operator"
        / "sandbox",
    )
)
NAMESPACE = "tvhub"
FINAL = frozenset({"Succeeded", "Failed"})
FOLLOW_TIMEOUT = 120.0


def _say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def _up(home: Path, repo: Path) -> tuple[ControlPlane, Kube]:
    plane = ControlPlane(home / "controlplane", repo_root=repo)
    started = time.monotonic()
    kube = plane.up()
    _say(f"control plane ready in {time.monotonic() - started:.1f}s")
    return plane, kube


def _show(change: PhaseChange) -> None:
    print(f"   {change.name}: {change.phase:<10} {change.message}", flush=True)


def _follow(watch: PhaseWatch, name: str) -> str:
    """Print each phase change of `name` with its message; return the final phase."""
    try:
        return watch.wait(name, FINAL, timeout=FOLLOW_TIMEOUT, on_change=_show).phase
    except TimeoutError as error:
        raise SystemExit(str(error)) from None


def demo(home: Path, repo: Path, *, keep: bool) -> int:
    """Run the whole product locally and promote a version; returns an exit code."""
    home.mkdir(parents=True, exist_ok=True)
    plane, kube = _up(home, repo)
    world = World(home / "world")
    try:
        if world.workdir.exists():
            shutil.rmtree(world.workdir)
        world.workdir.mkdir(parents=True)
        world.start()
        _say(f"registry {world.registry.host} holds {', '.join(world.images())}")
        _say(f"git remote {world.git_url}")
        with running_stack(
            kube,
            world,
            NAMESPACE,
            home,
            soak="8s",
            environment_refresh=2,
            max_backoff=3,
            echo=print,
        ) as stack:
            _say(
                f"operator running (log: {stack.operator.log}); "
                f"dev runs {NEW_VERSION}, prod must soak 8s"
            )
            name = f"tvhub-prod-{NEW_VERSION}"
            print(stack.promote(name, NEW_VERSION, reason="color button fix, checked in dev"))
            if _follow(stack.watch, name) != "Succeeded":
                return 1
            _say("the prod overlay on the git remote now reads")
            print(world.remote_file(PROD_OVERLAY))
            print(world.last_commit())
            _say(
                f"a version never run in dev ({UNTESTED_VERSION}) waits, then fails at its timeout"
            )
            name = f"tvhub-prod-{UNTESTED_VERSION}"
            print(stack.promote(name, UNTESTED_VERSION, timeout="20s"))
            final = _follow(stack.watch, name)
        _say("kubectl get promotions,environments -n tvhub")
        print(kube.kubectl("get", "promotions,environments", "-n", NAMESPACE).stdout)
        return 0 if final == "Failed" else 1
    finally:
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
    parser.add_argument(
        "--repo",
        type=Path,
        default=Path.cwd(),
        help="the promotion-operator checkout whose hack/build-binaries.sh provides the "
        "binaries (default: the current folder)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start etcd + kube-apiserver in the background")
    sub.add_parser("down", help="stop them")
    run_demo = sub.add_parser("demo", help="run the operator and promote a version")
    run_demo.add_argument("--keep", action="store_true", help="leave the control plane up")
    args = parser.parse_args(argv)
    home: Path = args.home
    if args.command == "up":
        plane, _ = _up(home, args.repo)
        print(f"export KUBECONFIG={plane.kubeconfig}")
        return 0
    if args.command == "down":
        ControlPlane(home / "controlplane").stop()
        return 0
    return demo(home, args.repo, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
