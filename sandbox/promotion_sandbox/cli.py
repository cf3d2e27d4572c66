"""`promotion-sandbox`: a real local control plane, and a demo of the whole product.

promotion-sandbox up      # etcd + kube-apiserver in the background; prints KUBECONFIG
promotion-sandbox down    # stops them
promotion-sandbox demo    # control plane, registry, git remote, real Argo CD, operator, promotions
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from promotion_sandbox.controlplane import ControlPlane
from promotion_sandbox.gitops_world import DEV_OVERLAY, ArgoCDWorld, control_plane_pki
from promotion_sandbox.kube import Kube
from promotion_sandbox.procs import wait_until
from promotion_sandbox.stack import Stack, running_stack
from promotion_sandbox.watch import PhaseChange, PhaseWatch
from promotion_sandbox.world import PROD_OVERLAY, World

DEFAULT_HOME = Path(
    os.environ.get(
        "PROMOTION_SANDBOX_HOME",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "promotion-operator"
        / "sandbox",
    )
)
NAMESPACE = "tvhub"
RELEASE = "v20250902-c0ffee1"  # what CI releases during the demo
# pushed to the registry but never deployed to dev; newer than RELEASE, so the rollback
# guard lets it through to the checks, which wait for dev to run it
NEVER_RUN = "v20250903-0badc0d"
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


def _environments(kube: Kube) -> str:
    return kube.kubectl("get", "environments", "-n", NAMESPACE).stdout.rstrip()


def _applications(argocd: ArgoCDWorld) -> str:
    return argocd.kube.kubectl("get", "applications", "-n", argocd.namespace).stdout.rstrip()


def _wait_environment(kube: Kube, name: str, version: str) -> None:
    """Wait until the Environment `name` shows LIVE = `version` and Healthy."""

    def live() -> bool:
        status = kube.get("environment", name, NAMESPACE).get("status") or {}
        return status.get("liveVersion") == version and status.get("health") == "Healthy"

    try:
        wait_until(live, timeout=FOLLOW_TIMEOUT, what=f"{name} LIVE {version} and Healthy")
    except TimeoutError as error:
        raise SystemExit(str(error)) from None


def _wait_deployed(kube: Kube, name: str) -> str:
    """Wait for the Promotion's `Deployed` condition to be decided; return its message."""

    condition: dict[str, str] = {}

    def decided() -> bool:
        status = kube.get("promotion", name, NAMESPACE).get("status") or {}
        for found in status.get("conditions") or ():
            if found["type"] == "Deployed" and found["status"] != "Unknown":
                condition.update(found)
        return bool(condition)

    try:
        wait_until(decided, timeout=FOLLOW_TIMEOUT, what=f"{name} Deployed")
    except TimeoutError as error:
        raise SystemExit(str(error)) from None
    return f"Deployed={condition['status']} ({condition['reason']}): {condition.get('message', '')}"


def demo(home: Path, repo: Path, *, keep: bool) -> int:
    """Run the whole loop locally on real Argo CD and promote a version; returns an exit code."""
    home.mkdir(parents=True, exist_ok=True)
    plane, kube = _up(home, repo)
    world = World(home / "world")
    pki = control_plane_pki(kube)
    if pki is None:
        raise SystemExit(f"{plane.kubeconfig}: not a sandbox control plane (no PKI beside it)")
    try:
        if world.workdir.exists():
            shutil.rmtree(world.workdir)
        world.workdir.mkdir(parents=True)
        world.start()
        _say(f"registry {world.registry.host} holds {', '.join(world.images())}")
        started = time.monotonic()
        with ArgoCDWorld(kube, world, home / "argocd", pki=pki, repo_root=repo) as argocd:
            _say(
                f"Argo CD synced dev and prod from {argocd.repo_url} onto kwok nodes "
                f"in {time.monotonic() - started:.1f}s"
            )
            print(_applications(argocd))
            with running_stack(
                kube,
                world,
                NAMESPACE,
                home,
                environment_refresh=1,
                max_backoff=3,
                echo=print,
                world_objects=argocd.environment_objects(NAMESPACE, soak="8s"),
                extra_args=(f"--health-namespace={argocd.namespace}",),
            ) as stack:
                return _loop(kube, argocd, stack)
    finally:
        if keep:
            _say(
                f"left running: export KUBECONFIG={plane.kubeconfig}; "
                "stop with: promotion-sandbox down"
            )
        else:
            world.stop()
            plane.stop()


def _loop(kube: Kube, argocd: ArgoCDWorld, stack: Stack) -> int:
    """CI to dev, a Promotion to prod, Argo CD syncing prod; then a version dev never ran."""
    world = argocd.world
    _say(f"CI pushes {RELEASE} and bumps the dev overlay; Argo CD syncs dev")
    commit = argocd.ci_release(RELEASE)
    print(f"   ci commit {commit[:7]}: {DEV_OVERLAY} newTag: {RELEASE}")
    argocd.wait_runs("tvhub-dev", commit)
    _wait_environment(kube, "tvhub-dev", RELEASE)
    print(_applications(argocd))
    _say(f"kubectl get environments -n {NAMESPACE}   (dev LIVE {RELEASE}, prod must soak 8s)")
    print(_environments(kube))

    name = f"tvhub-prod-{RELEASE}"
    _say(f"promote {RELEASE} to prod (operator log: {stack.operator.log})")
    print(stack.promote(name, RELEASE, reason="color button fix, checked in dev"))
    if _follow(stack.watch, name) != "Succeeded":
        return 1
    _say("the prod overlay on the git remote now reads")
    print(world.remote_file(PROD_OVERLAY))
    print(world.last_commit())
    _say("the operator asked Argo CD to refresh prod; Argo CD syncs it")
    print(f"   {name}: {_wait_deployed(kube, name)}")
    _wait_environment(kube, "tvhub-prod", RELEASE)
    print(_applications(argocd))
    print(_environments(kube))

    _say(f"CI pushes {NEVER_RUN} but nobody deploys it to dev: its Promotion waits, then fails")
    world.push_version(NEVER_RUN)
    name = f"tvhub-prod-{NEVER_RUN}"
    print(stack.promote(name, NEVER_RUN, timeout="20s"))
    final = _follow(stack.watch, name)
    _say(f"kubectl get promotions,environments -n {NAMESPACE}")
    print(kube.kubectl("get", "promotions,environments", "-n", NAMESPACE).stdout)
    return 0 if final == "Failed" else 1


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
