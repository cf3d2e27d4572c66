"""The whole loop on real Argo CD, timed: a Promotion applied -> prod runs it, Healthy.

    .venv/bin/python bench/argocd_loop.py [--runs N] [--keep]

Starts the sandbox control plane, a registry and git remote, the real Argo CD world
(`ArgoCDWorld`: application-controller, repo-server, redis, kube-controller-manager,
kube-scheduler, kwok) and the operator as a process. Each run releases a new version the
way CI does (push the images, bump dev, notify Argo CD), waits until Argo CD runs it in dev
and the dev Environment is LIVE on it, then applies a Promotion of prod and times:

1. CI's dev commit -> Argo CD reports dev Synced + Healthy on it (Argo CD's own speed);
2. Promotion applied -> `status.phase` Succeeded (checks, commit, push);
3. Promotion applied -> `Deployed=True` (the operator's refresh, Argo CD's sync of prod);
4. Promotion applied -> the prod Environment shows LIVE = the version and Healthy.

Prints a markdown table and the machine's load. Every process it starts is stopped at exit,
also on errors and on SIGTERM / Ctrl-C. The parts are the sandbox's, as in the demo and the
argocd e2e tier; this file only measures.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promotion_sandbox.controlplane import ControlPlane
from promotion_sandbox.gitops_world import ArgoCDWorld, control_plane_pki
from promotion_sandbox.history import ci_version
from promotion_sandbox.kube import Kube
from promotion_sandbox.stack import Stack, running_stack
from promotion_sandbox.world import World
from promotions import Row, machine, say, table

CHECKOUT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench-argocd"
TIMEOUT = 120.0


def wait(what: str, probe: Callable[[], bool], began: float) -> float:
    """Poll `probe` every 50 ms until true; return seconds since `began`."""
    while not probe():
        if time.monotonic() - began > TIMEOUT:
            raise TimeoutError(f"{what} not reached in {TIMEOUT:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - began


def status(kube: Kube, kind: str, name: str) -> dict[str, Any]:
    """An object's status in the bench namespace ({} before one is written)."""
    found: dict[str, Any] = kube.get(kind, name, NAMESPACE).get("status") or {}
    return found


def live(kube: Kube, environment: str, version: str) -> bool:
    """Whether the Environment shows LIVE = `version` and Healthy."""
    found = status(kube, "environment", environment)
    return found.get("liveVersion") == version and found.get("health") == "Healthy"


def deployed(kube: Kube, name: str) -> bool:
    """Whether the Promotion's Deployed condition is True."""
    return any(
        c["type"] == "Deployed" and c["status"] == "True"
        for c in status(kube, "promotion", name).get("conditions") or ()
    )


def all_seen(probes: dict[int, Callable[[], bool]], seen: dict[int, float], began: float) -> bool:
    """Record in `seen` when each probe first holds; whether all have."""
    for index, probe in probes.items():
        if index not in seen and probe():
            seen[index] = time.monotonic() - began
    return len(seen) == len(probes)


def one_run(argocd: ArgoCDWorld, stack: Stack, run: int, rows: list[Row]) -> None:
    """Release a version to dev, then promote it to prod; add a sample to each row."""
    kube = stack.kube
    version = ci_version(f"argocd-loop-{run}", run)
    began = time.monotonic()
    commit = argocd.ci_release(version)
    argocd.wait_runs("tvhub-dev", commit, timeout=TIMEOUT)
    rows[0].samples.append(time.monotonic() - began)
    wait("dev LIVE", lambda: live(kube, "tvhub-dev", version), began)

    name = f"loop-{run}"
    probes: dict[int, Callable[[], bool]] = {
        1: lambda: status(kube, "promotion", name).get("phase") == "Succeeded",
        2: lambda: deployed(kube, name),
        3: lambda: live(kube, "tvhub-prod", version),
    }
    began = time.monotonic()
    stack.promote(name, version)
    seen: dict[int, float] = {}
    # one loop for all three: each is timed when it first holds, whatever the order
    wait("Succeeded, Deployed and prod LIVE", lambda: all_seen(probes, seen, began), began)
    for index, seconds in seen.items():
        rows[index].samples.append(seconds)
    say(f"run {run + 1}: " + ", ".join(f"{row.samples[-1]:.2f}" for row in rows))


def run(runs: int, workdir: Path) -> str:
    """Start everything, measure `runs` loops; return the markdown report."""
    plane = ControlPlane(workdir / "controlplane", repo_root=CHECKOUT)
    kube = plane.up()
    world = World(workdir / "world")
    rows = [
        Row("CI's dev commit -> Argo CD: dev Synced + Healthy on it"),
        Row("Promotion applied -> Succeeded (pushed)"),
        Row("Promotion applied -> Deployed=True", note="operator's refresh + Argo CD's sync"),
        Row("Promotion applied -> prod Environment LIVE + Healthy"),
    ]
    try:
        world.start()
        pki = control_plane_pki(kube)
        if pki is None:
            raise RuntimeError("the sandbox control plane has no PKI folder")
        started = time.monotonic()
        with ArgoCDWorld(kube, world, workdir / "argocd", pki=pki, repo_root=CHECKOUT) as argocd:
            say(f"Argo CD world up, dev and prod synced, in {time.monotonic() - started:.1f} s")
            with running_stack(
                kube,
                world,
                NAMESPACE,
                workdir,
                world_objects=argocd.environment_objects(NAMESPACE),
                extra_args=(f"--health-namespace={argocd.namespace}",),
            ) as stack:
                stack.wait_observed()
                for index in range(runs):
                    one_run(argocd, stack, index, rows)
    finally:
        world.stop()
        plane.stop()
    return f"{table(rows)}\n\nMachine: {machine()}."


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="loops measured")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be positive")

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through every cleanup below

    signal.signal(signal.SIGTERM, terminate)
    workdir = Path(tempfile.mkdtemp(prefix="promotion-bench-argocd-"))
    try:
        report = run(args.runs, workdir)
    finally:
        if args.keep:
            say(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
