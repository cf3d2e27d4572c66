"""Promotion latency and git cost, measured on loopback with the real parts.

    .venv/bin/python bench/promotions.py [--sequential N] [--concurrent N] [--commits N]
                                         [--runs N] [--environment-refresh S]
                                         [--write-doc] [--keep]

Starts a registry, a bare git repository with a few thousand commits of real history, etcd +
kube-apiserver and the operator as a process, then measures:

1. sequential promotions: one Promotion at a time, create -> status.phase Succeeded;
2. concurrent promotions: N Environments (N overlay folders of one repo, one branch)
   promoted at the same moment: per-promotion latency, wall time, commits that landed;
3. git alone on the same repo: what a hand-written script does (fresh clone, edit,
   commit, push) against the operator's cached clone (`GitRepository.commit_and_push`).

Prints a markdown table. Writes nothing into the repository unless `--write-doc` is given,
which rewrites the figures section of docs/benchmarks.md. Every process it starts is
stopped at exit, also on errors and on SIGTERM / Ctrl-C.

This file only measures and reports: the parts (control plane, registry, repository and
its history, operator process, phase watch) are the sandbox's, as in the demo and tests.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config

from promotion_operator import API_GROUP, API_VERSION
from promotion_operator.domain.overlay import set_image_tags
from promotion_operator.domain.planning import commit_message
from promotion_operator.gitops import GitRepository, Reader
from promotion_sandbox.controlplane import ControlPlane
from promotion_sandbox.gitserver import commit_count, git, pack_mib, tracked_files
from promotion_sandbox.history import add_history, ci_version
from promotion_sandbox.stack import Stack, running_stack
from promotion_sandbox.world import NEW_VERSION, OLD_VERSION, PROD_OVERLAY, World, promotion

CHECKOUT = Path(__file__).resolve().parent.parent  # this file's own checkout
NAMESPACE = "bench"
DOC = CHECKOUT / "docs" / "benchmarks.md"
FIGURES_START = "<!-- bench:figures:start (bench/promotions.py --write-doc rewrites this) -->"
FIGURES_END = "<!-- bench:figures:end -->"
PROMOTION_TIMEOUT = 120.0


def say(text: str) -> None:
    """Progress on stderr, so stdout is only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- statistics and output -----------------------------------------------------------------


@dataclass
class Row:
    """One line of the result table."""

    what: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    def cells(self) -> list[str]:
        """n, p50, p95, max (seconds); blanks for a note-only row."""
        if not self.samples:
            return ["", "", "", ""]
        return [str(len(self.samples)), *(f"{v:.3f}" for v in summary(self.samples))]


def summary(samples: Sequence[float]) -> tuple[float, float, float]:
    """p50, p95 (linear interpolation between closest ranks) and max."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0], ordered[0], ordered[0]
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return cuts[49], cuts[94], ordered[-1]


def table(rows: Sequence[Row]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| measurement | n | p50 s | p95 s | max s | notes |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        lines.append("| " + " | ".join([row.what, *row.cells(), row.note]) + " |")
    return "\n".join(lines)


def machine() -> str:
    """CPU model and count, memory, OS, git and Python versions."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    git_version = git("--version").strip().removeprefix("git version ")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} x {model}{memory}; {platform.system()} {platform.release()}; "
        f"git {git_version}; Python {platform.python_version()}; load average at the end {load}"
    )


# --- part 3: git alone --------------------------------------------------------------------


def retag(text: str, images: Sequence[str], new: str) -> str:
    """The operator's overlay editor: set every image's newTag to `new`."""
    return set_image_tags(text, dict.fromkeys(images, new), add_missing=False).text


def naive_promotion(url: str, scratch: Path, images: Sequence[str], new: str, depth: int) -> float:
    """What a hand-written promote script does: fresh clone, edit, commit, push."""
    work = scratch / f"naive-{new}-{depth}"
    began = time.perf_counter()
    clone = ["clone", "-q", "--branch", "main", "--single-branch", "--no-tags"]
    if depth:
        clone.append(f"--depth={depth}")
    git(*clone, url, str(work))
    path = work / PROD_OVERLAY
    path.write_text(retag(path.read_text(), images, new))
    git("commit", "-q", "-am", f"promote prod to {new}", cwd=work)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    elapsed = time.perf_counter() - began
    shutil.rmtree(work)
    return elapsed


def bench_git(world: World, scratch: Path, runs: int) -> list[Row]:
    """Fresh clone per promotion vs the operator's persistent clone, same repository."""
    url, images = world.git_url, world.images()
    repo = GitRepository(url, "main", cache_dir=scratch / "cache", allow_file=True)
    began = time.perf_counter()
    repo.sync()
    cold = time.perf_counter() - began
    naive, shallow, cached, full = (Row(w) for w in ("", "", "", ""))
    naive.what = "fresh `git clone` + edit overlay + commit + push"
    shallow.what = "fresh `git clone --depth=1` + edit + commit + push"
    cached.what = "`GitRepository.commit_and_push`, warm cache"
    full.what = "operator's git work per promotion, warm cache"
    full.note = "sync + trailer scan (500 commits) + commit_and_push, as `promote()` does"
    cached.note = f"first sync (cold clone) took {cold:.3f} s"

    def edit_to(new: str) -> Callable[[Reader], dict[str, str]]:
        return lambda read: {PROD_OVERLAY: retag(read(PROD_OVERLAY), images, new)}

    for run in range(runs):
        naive.samples.append(naive_promotion(url, scratch, images, ci_version(f"n{run}", run), 0))
        shallow.samples.append(naive_promotion(url, scratch, images, ci_version(f"s{run}", run), 1))
        new = ci_version(f"c{run}", run)
        began = time.perf_counter()
        pushed = repo.commit_and_push(edit_to(new), f"promote prod to {new}\n")
        cached.samples.append(time.perf_counter() - began)
        if not pushed.changed:
            raise RuntimeError("commit_and_push pushed nothing")
        new = ci_version(f"f{run}", run)
        trailers = {"Promotion-UID": f"bench-{run}", "Promotion-Generation": "1"}
        message = commit_message(
            namespace=NAMESPACE,
            name=f"bench-{run}",
            uid=f"bench-{run}",
            generation=1,
            environment="tvhub-prod",
            old=None,
            new=new,
            reason="bench",
            requested_by="bench",
        )
        began = time.perf_counter()
        with repo.lock():
            repo.sync()
            repo.read_file(PROD_OVERLAY)
            if repo.find_commit(trailers, refresh=False) is not None:
                raise RuntimeError("trailer scan found a commit that cannot exist")
            repo.commit_and_push(edit_to(new), message, synced=True)
        full.samples.append(time.perf_counter() - began)
    return [naive, shallow, cached, full]


# --- the operator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Promoter:
    """Creates Promotions through the API, timing each from just before the create call."""

    stack: Stack
    custom: client.CustomObjectsApi

    def create(self, name: str, new: str, env: str = "tvhub-prod") -> float:
        """Create a Promotion; return the monotonic time just before the request."""
        body = promotion(NAMESPACE, name, new, reason="bench")
        body["spec"]["environment"] = env
        began = time.monotonic()
        self.custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, NAMESPACE, "promotions", body
        )
        return began

    def wait(self, name: str) -> dict[str, float]:
        """When each phase of `name` was first seen, once it is Succeeded; fail otherwise."""
        final = {"Succeeded", "Failed", "Superseded"}
        change = self.stack.watch.wait(name, final, timeout=PROMOTION_TIMEOUT)
        if change.phase != "Succeeded":
            raise RuntimeError(
                f"Promotion {name} ended {change.phase}: {change.message}\n"
                f"--- operator log (tail) ---\n{self.stack.operator.logs()[-3000:]}"
            )
        return self.stack.watch.first_seen(name)


def stages(rows: dict[str, Row], began: float, phases: dict[str, float]) -> None:
    """Split one promotion's latency at the phase changes the watch saw."""
    pending = phases.get("Pending", began)
    promoting = phases.get("Promoting", pending)
    rows["pickup"].samples.append(pending - began)
    rows["verify"].samples.append(promoting - pending)
    rows["git"].samples.append(phases["Succeeded"] - promoting)


def bench_sequential(promoter: Promoter, count: int) -> list[Row]:
    """`count` promotions of tvhub-prod, one after another."""
    warm = Row("first promotion after operator start (warm-up, not in the rows below)")
    total = Row("**sequential**: create -> Succeeded")
    rows = {
        "pickup": Row("↳ create -> Pending (watch event, kopf, first status write)"),
        "verify": Row("↳ Pending -> Promoting (registry tags, upstream Argo CD app)"),
        "git": Row("↳ Promoting -> Succeeded (lock, fetch, trailer scan, commit, push)"),
    }
    promoter.stack.dev_runs(NEW_VERSION)
    began = promoter.create("warm-up", NEW_VERSION)
    warm.samples.append(promoter.wait("warm-up")["Succeeded"] - began)
    for index in range(count):
        new = ci_version(f"seq-{index}", index)
        promoter.stack.dev_runs(new)
        name = f"seq-{index:03d}"
        began = promoter.create(name, new)
        phases = promoter.wait(name)
        total.samples.append(phases["Succeeded"] - began)
        stages(rows, began, phases)
        say(f"sequential {index + 1}/{count}: {total.samples[-1]:.2f} s")
    return [warm, total, *rows.values()]


def bench_concurrent(promoter: Promoter, count: int, concurrent_version: str) -> list[Row]:
    """`count` Environments of one repository and branch, promoted at the same moment."""
    stack = promoter.stack
    world = stack.world
    head = world.remote_head()
    stack.dev_runs(concurrent_version)
    names = [f"conc-{index:03d}" for index in range(count)]
    barrier = threading.Barrier(count)

    def fire(index: int) -> float:
        barrier.wait()
        return promoter.create(names[index], concurrent_version, env=f"tvhub-prod-{index}")

    with ThreadPoolExecutor(max_workers=count) as pool:
        starts = list(pool.map(fire, range(count)))
    total = Row(f"**concurrent** ({count} Environments, one branch): create -> Succeeded")
    rows = {
        "pickup": Row("↳ create -> Pending"),
        "verify": Row("↳ Pending -> Promoting"),
        "git": Row("↳ Promoting -> Succeeded (includes waiting for the branch lock)"),
    }
    finished = []
    for name, began in zip(names, starts, strict=True):
        phases = promoter.wait(name)
        finished.append(phases["Succeeded"])
        total.samples.append(phases["Succeeded"] - began)
        stages(rows, began, phases)
    wall = max(finished) - min(starts)
    uids = {obj["metadata"]["uid"] for name in names if (obj := stack.watch.latest(name))}
    commits = world.remote_messages(since=head)
    landed = sum(1 for entry in commits if any(f"Promotion-UID: {u}" in entry for u in uids))
    moved = sum(
        1
        for index in range(count)
        if f"newTag: {concurrent_version}"
        in world.remote_file(f"k8s/overlays/prod-{index}/kustomization.yaml")
    )
    if landed != count or moved != count:
        raise RuntimeError(f"{landed} commits landed and {moved} overlays moved, expected {count}")
    total.note = (
        f"wall time first create -> last Succeeded **{wall:.2f} s**; "
        f"commits landed {landed}/{count} ({len(commits)} new on main), overlays moved {moved}"
    )
    return [total, *rows.values()]


def bench_operator(
    world: World, workdir: Path, args: argparse.Namespace, concurrent_version: str
) -> list[Row]:
    """Sequential, then concurrent promotions through the operator on a fresh control plane."""
    plane = ControlPlane(workdir / "controlplane", repo_root=CHECKOUT)
    try:
        began = time.monotonic()
        kube = plane.up()
        say(f"control plane ready in {time.monotonic() - began:.1f} s")
        overlays = [f"k8s/overlays/prod-{i}" for i in range(args.concurrent)]
        with (
            running_stack(
                kube,
                world,
                NAMESPACE,
                workdir,
                extra_overlays=overlays,
                environment_refresh=args.environment_refresh,
            ) as stack,
            contextlib.closing(
                # the kubernetes client has no type hints
                config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=str(kube.kubeconfig)
                )
            ) as api,
        ):
            seconds = stack.wait_observed()
            say(f"operator up, {len(stack.environments)} Environments observed in {seconds:.1f} s")
            promoter = Promoter(stack, client.CustomObjectsApi(api))
            say(f"sequential: {args.sequential} promotions")
            rows = bench_sequential(promoter, args.sequential)
            if args.concurrent:
                say(f"concurrent: {args.concurrent} promotions at once")
                rows += bench_concurrent(promoter, args.concurrent, concurrent_version)
            return rows
    finally:
        plane.stop()


# --- main ----------------------------------------------------------------------------------


def write_doc(text: str) -> None:
    """Replace the figures section of docs/benchmarks.md."""
    doc = DOC.read_text()
    start, end = doc.find(FIGURES_START), doc.find(FIGURES_END)
    if start < 0 or end < start:
        raise SystemExit(f"{DOC} has no figures markers ({FIGURES_START} ... {FIGURES_END})")
    DOC.write_text(doc[: start + len(FIGURES_START)] + "\n\n" + text + "\n\n" + doc[end:])
    say(f"rewrote the figures in {DOC.relative_to(CHECKOUT)}")


def run(args: argparse.Namespace, workdir: Path) -> str:
    """Every measurement; returns the markdown figures."""
    began = time.monotonic()
    world = World(workdir / "world")
    try:
        sequential = [ci_version(f"seq-{i}", i) for i in range(args.sequential)]
        concurrent_version = ci_version("concurrent", 200)
        world.start(versions=(OLD_VERSION, NEW_VERSION, *sequential, concurrent_version))
        world.add_prod_like_overlays(args.concurrent)
        step = time.monotonic()
        add_history(world.repo, args.commits)
        repo_note = (
            f"{commit_count(world.repo)} commits, {len(tracked_files(world.repo))} files, "
            f"pack {pack_mib(world.repo):.1f} MiB"
        )
        say(f"repository: {repo_note} (built in {time.monotonic() - step:.1f} s)")

        say(f"git alone: {args.runs} runs each of fresh clone vs cached clone")
        git_rows = bench_git(world, workdir, args.runs)
        rows = bench_operator(world, workdir, args, concurrent_version)
    finally:
        world.stop()
    elapsed = time.monotonic() - began
    return "\n".join(
        [
            f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: `bench/promotions.py "
            f"--sequential {args.sequential} --concurrent {args.concurrent} "
            f"--commits {args.commits} --runs {args.runs} "
            f"--environment-refresh {args.environment_refresh:g}` ({elapsed:.0f} s in all).",
            "",
            f"Machine: {machine()}.",
            "",
            f"Repository: {repo_note}; remote is a bare repository on local disk (`file://`).",
            "",
            table([*rows, *git_rows]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=10, help="promotions one at a time")
    parser.add_argument("--concurrent", type=int, default=10, help="Environments promoted at once")
    parser.add_argument("--commits", type=int, default=3000, help="history of the repository")
    parser.add_argument("--runs", type=int, default=10, help="runs of each git-alone measurement")
    parser.add_argument(
        "--environment-refresh",
        type=float,
        default=1.0,
        help="the operator's --environment-refresh (seconds; the e2e tests use 1)",
    )
    parser.add_argument("--write-doc", action="store_true", help="rewrite docs/benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    if args.sequential < 1 or args.runs < 1 or args.concurrent < 0 or args.commits < 1:
        parser.error("--sequential, --runs and --commits must be positive")

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through every cleanup below

    signal.signal(signal.SIGTERM, terminate)
    workdir = Path(tempfile.mkdtemp(prefix="promotion-bench-"))
    try:
        figures = run(args, workdir)
    finally:
        if args.keep:
            say(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(figures)
    if args.write_doc:
        write_doc(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
