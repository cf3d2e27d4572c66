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
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from promotion_operator import API_GROUP, API_VERSION
from promotion_operator.domain.overlay import set_image_tags
from promotion_operator.domain.planning import commit_message
from promotion_operator.gitops import GitRepository
from promotion_sandbox.argocd import install_crds
from promotion_sandbox.controlplane import REPO_ROOT, ControlPlane
from promotion_sandbox.gitserver import commit_files
from promotion_sandbox.procs import terminate
from promotion_sandbox.world import NEW_VERSION, OLD_VERSION, World, promotion

NAMESPACE = "bench"
DOC = REPO_ROOT / "docs" / "benchmarks.md"
FIGURES_START = "<!-- bench:figures:start (bench/promotions.py --write-doc rewrites this) -->"
FIGURES_END = "<!-- bench:figures:end -->"
PROD_OVERLAY = "k8s/overlays/prod/kustomization.yaml"
PROMOTION_TIMEOUT = 120.0
SERVICES = 120  # files the synthetic history touches: apps/svc-NNN/values.yaml
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Release Script",
    "GIT_AUTHOR_EMAIL": "release@example.com",
    "GIT_COMMITTER_NAME": "Release Script",
    "GIT_COMMITTER_EMAIL": "release@example.com",
}


def say(text: str) -> None:
    """Progress on stderr, so stdout is only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def version(salt: str, day: int) -> str:
    """A version as CI tags it: v<YYYYMMDD>-<7 hex>, distinct per salt."""
    date = dt.date(2025, 9, 1) + dt.timedelta(days=day)
    return f"v{date:%Y%m%d}-{hashlib.sha256(salt.encode()).hexdigest()[:7]}"


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git hermetically (no user or system config); return stdout."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **_GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


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


# --- the git repository ---------------------------------------------------------------------


def service_values(rng: random.Random, service: int, step: int) -> str:
    """A Helm-style values file that CI and people keep editing."""
    return (
        f"# values for svc-{service:03d}\n"
        f"replicaCount: {rng.randint(1, 6)}\n"
        "image:\n"
        f"  repository: registry.example.com/team/svc-{service:03d}\n"
        f"  tag: {version(f'{service}-{step}', step % 365)}\n"
        "resources:\n"
        f"  requests: {{cpu: {rng.randint(50, 500)}m, memory: {rng.randint(64, 1024)}Mi}}\n"
        f"  limits: {{cpu: {rng.randint(500, 2000)}m, memory: {rng.randint(512, 4096)}Mi}}\n"
        "env:\n"
        + "".join(
            f"  - {{name: FEATURE_{k}, value: {rng.choice(['on', 'off'])!r}}}\n" for k in range(12)
        )
        + f"configHash: {rng.getrandbits(128):032x}\n"
    )


def add_history(repo: Path, commits: int, *, seed: int = 7) -> None:
    """Append `commits` commits on main with `git fast-import`, each editing 1-3 files."""
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    start = int(dt.datetime(2023, 1, 2, tzinfo=dt.UTC).timestamp())
    chunks: list[bytes] = []

    def data(text: str) -> None:
        raw = text.encode()
        chunks.append(b"data %d\n" % len(raw) + raw + b"\n")

    for step in range(commits):
        when = start + step * 5400
        touched = rng.sample(range(SERVICES), rng.randint(1, 3))
        chunks.append(
            f"commit refs/heads/main\ncommitter CI Bot <ci@example.com> {when} +0000\n".encode()
        )
        data(f"ci: bump svc-{touched[0]:03d} and {len(touched) - 1} more (build {step})\n")
        if step == 0:
            chunks.append(b"from refs/heads/main^0\n")
        for service in touched:
            chunks.append(f"M 100644 inline apps/svc-{service:03d}/values.yaml\n".encode())
            data(service_values(rng, service, step))
        chunks.append(b"\n")
    subprocess.run(
        ["git", f"--git-dir={repo}", "fast-import", "--quiet"],
        input=b"".join(chunks),
        env={**os.environ, **_GIT_ENV},
        check=True,
        capture_output=True,
    )
    # a server's repository is packed: one pack with proper deltas, as after `git gc`
    git(f"--git-dir={repo}", "repack", "-a", "-d", "-q")


def pack_size(repo: Path) -> float:
    """Size of the repository's packs, MiB."""
    return sum(p.stat().st_size for p in (repo / "objects" / "pack").glob("*.pack")) / 2**20


def retag(text: str, images: Sequence[str], new: str) -> str:
    """The operator's overlay editor: set every image's newTag to `new`."""
    return set_image_tags(text, dict.fromkeys(images, new), add_missing=False).text


# --- part 3: git alone --------------------------------------------------------------------


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

    def edit_to(new: str) -> Callable[[Path], dict[str, str]]:
        return lambda tree: {PROD_OVERLAY: retag((tree / PROD_OVERLAY).read_text(), images, new)}

    for run in range(runs):
        naive.samples.append(naive_promotion(url, scratch, images, version(f"n{run}", run), 0))
        shallow.samples.append(naive_promotion(url, scratch, images, version(f"s{run}", run), 1))
        new = version(f"c{run}", run)
        began = time.perf_counter()
        pushed = repo.commit_and_push(edit_to(new), f"promote prod to {new}\n")
        cached.samples.append(time.perf_counter() - began)
        if not pushed.changed:
            raise RuntimeError("commit_and_push pushed nothing")
        new = version(f"f{run}", run)
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


class PhaseWatch:
    """Watches the namespace's Promotions; notes when each phase was first seen."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._namespace = namespace
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="promotion-watch", daemon=True)
        self.seen: dict[str, dict[str, float]] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self._rv = ""

    def __enter__(self) -> PhaseWatch:
        self._relist()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=1)  # a daemon thread: at worst it ends with the process

    def _list(self) -> Any:
        return self._custom.list_namespaced_custom_object(
            API_GROUP, API_VERSION, self._namespace, "promotions"
        )

    def _relist(self) -> None:
        listing = self._list()
        for obj in listing.get("items", []):
            self._note(obj, time.monotonic())
        self._rv = listing["metadata"]["resourceVersion"]

    def _note(self, obj: dict[str, Any], moment: float) -> None:
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase")
        with self._cond:
            self.objects[name] = obj
            if phase:
                self.seen.setdefault(name, {}).setdefault(phase, moment)
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stopping.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._custom.list_namespaced_custom_object,
                    API_GROUP,
                    API_VERSION,
                    self._namespace,
                    "promotions",
                    resource_version=self._rv,
                    timeout_seconds=3,
                ):
                    moment = time.monotonic()
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch error: {obj}")
                    self._rv = obj["metadata"]["resourceVersion"]
                    if event["type"] != "DELETED":
                        self._note(obj, moment)
            except Exception:  # an expired watch (410) or a hiccup: list again
                if self._stopping.is_set():
                    return
                time.sleep(0.2)
                with contextlib.suppress(Exception):
                    self._relist()

    def wait(self, name: str, *, timeout: float, logs: Callable[[], str]) -> dict[str, float]:
        """Block until `name` is Succeeded; return its phase times. Fail on anything else."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                phases = self.seen.get(name, {})
                if "Succeeded" in phases:
                    return dict(phases)
                bad = {"Failed", "Superseded"} & phases.keys()
                left = deadline - time.monotonic()
                if bad or left <= 0:
                    status = (self.objects.get(name) or {}).get("status")
                    raise RuntimeError(
                        f"Promotion {name} did not succeed: {json.dumps(status, indent=1)}\n"
                        f"--- operator log (tail) ---\n{logs()[-3000:]}"
                    )
                self._cond.wait(min(left, 1.0))


class Operator:
    """`python -m promotion_operator run` as a child process, as the e2e tests start it."""

    def __init__(self, kubeconfig: Path, workdir: Path, namespace: str, refresh: float) -> None:
        self.log = workdir / "operator.log"
        self.args = [
            sys.executable,
            "-m",
            "promotion_operator",
            "run",
            f"--kubeconfig={kubeconfig}",
            f"--cache-dir={workdir / 'operator-cache'}",
            "--allow-local-git",
            f"--environment-refresh={refresh:g}",
            "--max-backoff=2",
            f"--namespace={namespace}",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process, logging to `self.log`."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """Terminate (then kill) the process if it runs."""
        terminate(self.proc, grace=15)

    def logs(self) -> str:
        """The log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def environment(world: World, name: str, overlay_path: str) -> dict[str, Any]:
    """An Environment like the sandbox's tvhub-prod, for another overlay folder."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Environment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "git": {"url": world.git_url, "branch": "main"},
            "overlay": {"path": overlay_path},
            "images": [{"name": image} for image in world.images()],
            "registry": {"secretRef": {"name": "registry-pull"}, "insecure": True},
            "upstream": "tvhub-dev",
        },
    }


@dataclass
class Stack:
    """The running parts the operator benchmarks need."""

    plane: ControlPlane
    world: World
    operator: Operator
    custom: client.CustomObjectsApi
    watch: PhaseWatch

    def apply(self, *objects: dict[str, Any]) -> None:
        """kubectl apply a list of objects."""
        document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.plane.kubectl("apply", "-f", "-", input_text=json.dumps(document))

    def dev_runs(self, new: str) -> None:
        """Argo CD reports dev Healthy and Synced with every image at `new`."""
        self.apply(self.world.dev_application(NAMESPACE, new))

    def create(self, name: str, new: str, env: str = "tvhub-prod") -> float:
        """Create a Promotion through the API; return the monotonic time just before."""
        body = promotion(NAMESPACE, name, new, reason="bench")
        body["spec"]["environment"] = env
        began = time.monotonic()
        self.custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, NAMESPACE, "promotions", body
        )
        return began

    def wait(self, name: str) -> dict[str, float]:
        """Phase times of a Promotion once it is Succeeded."""
        return self.watch.wait(name, timeout=PROMOTION_TIMEOUT, logs=self.operator.logs)


def stages(rows: dict[str, Row], began: float, phases: dict[str, float]) -> None:
    """Split one promotion's latency at the phase changes the watch saw."""
    pending = phases.get("Pending", began)
    promoting = phases.get("Promoting", pending)
    rows["pickup"].samples.append(pending - began)
    rows["verify"].samples.append(promoting - pending)
    rows["git"].samples.append(phases["Succeeded"] - promoting)


def bench_sequential(stack: Stack, count: int) -> list[Row]:
    """`count` promotions of tvhub-prod, one after another."""
    warm = Row("first promotion after operator start (warm-up, not in the rows below)")
    total = Row("**sequential**: create -> Succeeded")
    rows = {
        "pickup": Row("↳ create -> Pending (watch event, kopf, first status write)"),
        "verify": Row("↳ Pending -> Promoting (registry tags, upstream Argo CD app)"),
        "git": Row("↳ Promoting -> Succeeded (lock, fetch, trailer scan, commit, push)"),
    }
    stack.dev_runs(NEW_VERSION)
    began = stack.create("warm-up", NEW_VERSION)
    warm.samples.append(stack.wait("warm-up")["Succeeded"] - began)
    for index in range(count):
        new = version(f"seq-{index}", index)
        stack.dev_runs(new)
        name = f"seq-{index:03d}"
        began = stack.create(name, new)
        phases = stack.wait(name)
        total.samples.append(phases["Succeeded"] - began)
        stages(rows, began, phases)
        say(f"sequential {index + 1}/{count}: {total.samples[-1]:.2f} s")
    return [warm, total, *rows.values()]


def bench_concurrent(stack: Stack, count: int, concurrent_version: str) -> list[Row]:
    """`count` Environments of one repository and branch, promoted at the same moment."""
    world = stack.world
    head = world.remote_head()
    stack.dev_runs(concurrent_version)
    names = [f"conc-{index:03d}" for index in range(count)]
    barrier = threading.Barrier(count)

    def fire(index: int) -> float:
        barrier.wait()
        return stack.create(names[index], concurrent_version, env=f"tvhub-prod-{index}")

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
        phases = stack.wait(name)
        finished.append(phases["Succeeded"])
        total.samples.append(phases["Succeeded"] - began)
        stages(rows, began, phases)
    wall = max(finished) - min(starts)
    uids = {
        stack.watch.objects[name]["metadata"]["uid"]
        for name in names
        if name in stack.watch.objects
    }
    log = git(f"--git-dir={world.repo}", "log", "--format=%H%n%B%x00", f"{head}..main")
    commits = [entry for entry in log.split("\x00") if entry.strip()]
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


@contextlib.contextmanager
def running_stack(
    world: World, workdir: Path, exits: contextlib.ExitStack, args: argparse.Namespace
) -> Iterator[Stack]:
    """Control plane, CRDs, objects and the operator; everything stopped by `exits`."""
    plane = ControlPlane(workdir / "controlplane")
    exits.callback(plane.stop)
    began = time.monotonic()
    plane.start()
    say(f"control plane ready in {time.monotonic() - began:.1f} s")
    install_crds(plane.kubectl)
    plane.kubectl("create", "namespace", NAMESPACE)
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))
    exits.callback(api.close)
    operator = Operator(plane.kubeconfig, workdir, NAMESPACE, args.environment_refresh)
    concurrent = args.concurrent
    with PhaseWatch(api, NAMESPACE) as phase_watch:
        stack = Stack(plane, world, operator, client.CustomObjectsApi(api), phase_watch)
        stack.apply(
            *world.objects(NAMESPACE),
            *(
                environment(world, f"tvhub-prod-{i}", f"k8s/overlays/prod-{i}")
                for i in range(concurrent)
            ),
        )
        exits.callback(operator.stop)
        operator.start()
        envs = ["tvhub-dev", "tvhub-prod", *(f"tvhub-prod-{i}" for i in range(concurrent))]
        began = time.monotonic()
        while True:  # ready: every Environment's status names the version git holds
            listed = stack.custom.list_namespaced_custom_object(
                API_GROUP, API_VERSION, NAMESPACE, "environments"
            )
            ready = {
                o["metadata"]["name"] for o in listed["items"] if o.get("status", {}).get("version")
            }
            if ready >= set(envs):
                break
            if operator.proc is not None and operator.proc.poll() is not None:
                raise RuntimeError(f"the operator exited:\n{operator.logs()[-3000:]}")
            if time.monotonic() - began > 60:
                raise RuntimeError(f"Environments not observed in 60 s:\n{operator.logs()[-3000:]}")
            time.sleep(0.2)
        say(f"operator up, {len(envs)} Environments observed in {time.monotonic() - began:.1f} s")
        yield stack


# --- main ----------------------------------------------------------------------------------


def write_doc(text: str) -> None:
    """Replace the figures section of docs/benchmarks.md."""
    doc = DOC.read_text()
    start, end = doc.find(FIGURES_START), doc.find(FIGURES_END)
    if start < 0 or end < start:
        raise SystemExit(f"{DOC} has no figures markers ({FIGURES_START} ... {FIGURES_END})")
    DOC.write_text(doc[: start + len(FIGURES_START)] + "\n\n" + text + "\n\n" + doc[end:])
    say(f"rewrote the figures in {DOC.relative_to(REPO_ROOT)}")


def run(args: argparse.Namespace, workdir: Path) -> str:
    """Every measurement; returns the markdown figures."""
    began = time.monotonic()
    with contextlib.ExitStack() as exits:
        world = World(workdir / "world")
        exits.callback(world.stop)
        sequential = [version(f"seq-{i}", i) for i in range(args.sequential)]
        concurrent_version = version("concurrent", 200)
        world.start(versions=(OLD_VERSION, NEW_VERSION, *sequential, concurrent_version))
        prod = world.remote_file(PROD_OVERLAY)
        commit_files(
            world.repo,
            {f"k8s/overlays/prod-{i}/kustomization.yaml": prod for i in range(args.concurrent)},
            message=f"add {args.concurrent} more prod-like overlays",
        )
        step = time.monotonic()
        add_history(world.repo, args.commits)
        commits = int(git(f"--git-dir={world.repo}", "rev-list", "--count", "main"))
        files = len(git(f"--git-dir={world.repo}", "ls-tree", "-r", "--name-only", "main").split())
        repo_note = f"{commits} commits, {files} files, pack {pack_size(world.repo):.1f} MiB"

        say(f"repository: {repo_note} (built in {time.monotonic() - step:.1f} s)")

        say(f"git alone: {args.runs} runs each of fresh clone vs cached clone")
        git_rows = bench_git(world, workdir, args.runs)

        with running_stack(world, workdir, exits, args) as stack:
            say(f"sequential: {args.sequential} promotions")
            rows = bench_sequential(stack, args.sequential)
            if args.concurrent:
                say(f"concurrent: {args.concurrent} promotions at once")
                rows += bench_concurrent(stack, args.concurrent, concurrent_version)
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
