"""Fault campaign: promotions through network faults, control-plane restarts and SIGKILLs.

    .venv/bin/python bench/faults.py [--kills N] [--teams N] [--timeout S] [--seed N] [--keep]

Starts etcd + kube-apiserver, a registry and a smart-HTTP git server, with toxiproxy in
front of the git server and the registry (the operator reaches both only through it),
and the operator as a process. Each team (a namespace with its own repository) promotes
prod back and forth between two versions, one Promotion at a time, while a chaos loop:

- SIGKILLs the operator at random moments (every phase gets hit) and restarts it;
- adds a toxic to the git or registry link for a few seconds: latency, a stalled
  connection (`timeout`), a connection reset after some milliseconds (`reset_peer`, also
  mid-push), a cut after some bytes (`limit_data`), a slow close, a bandwidth limit;
- now and then SIGKILLs kube-apiserver or etcd and starts it again.

When the chaos stops, every Promotion is judged against the git remote:

- duplicate commits: more than one commit carries a Promotion's UID (target 0);
- wrong final status: Succeeded without its one commit (or naming another), Failed or
  Superseded although its commit landed (target 0);
- unfinished past the timeout: not finished by `startedAt + timeout + 30 s` (target 0).

Prints a markdown report (docs/reliability.md has the latest). Run on demand; not part of
`make test`. Without the toxiproxy binary, the network faults are skipped and the report
says so (the kills and restarts still run).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promotion_operator.domain.gitrules import trailer_block
from promotion_operator.domain.planning import Trailer
from promotion_operator.domain.times import parse_time
from promotion_sandbox import procs
from promotion_sandbox.controlplane import ControlPlane
from promotion_sandbox.gitserver import HTTPGitServer, git, init_bare_repo
from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.toxiproxy import Proxy, Toxiproxy, find_binary
from promotion_sandbox.world import NEW_VERSION, OLD_VERSION, World, gitops_files, promotion

CHECKOUT = Path(__file__).resolve().parent.parent
GIT_USER, GIT_PASSWORD = "bot", "faults-git-T0ken"
FINAL = {"Succeeded", "Failed", "Superseded"}
SLACK = 30.0  # seconds past a Promotion's deadline before it counts as unfinished


def say(text: str) -> None:
    """Progress on stderr; stdout is only the report."""
    print(f"[faults {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the world: teams, each with its own repository, behind the proxies ------------------


@dataclass
class Team:
    """One namespace promoting prod between two versions, one Promotion at a time."""

    ns: str
    repo: Path
    objects: Callable[[str], list[dict[str, Any]]]  # dev version -> every object
    count: int = 0
    prod: str = OLD_VERSION


@dataclass
class Trial:
    """One Promotion and how it ended."""

    team: Team
    name: str
    version: str
    created: float
    uid: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    unfinished: bool = False


def team_objects(
    world: World, ns: str, url: str, registry: str
) -> Callable[[str], list[dict[str, Any]]]:
    """The team's objects with the git URL, the git Secret and the proxied registry host."""

    def objects(dev_version: str) -> list[dict[str, Any]]:
        # a soak keeps Promotions in Verifying for a while, so kills land there too (and
        # the sealed healthySince must survive each restart)
        found = world.objects(ns, git_url=url, dev_version=dev_version, soak="3s")
        for obj in found:
            if obj["kind"] == "Environment":
                obj["spec"]["git"]["secretRef"] = {"name": "git-creds"}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "git-creds", "namespace": ns},
            "stringData": {"username": GIT_USER, "password": GIT_PASSWORD},
        }
        text = json.dumps([secret, *found]).replace(world.registry.host, registry)
        result: list[dict[str, Any]] = json.loads(text)
        return result

    return objects


# --- chaos ---------------------------------------------------------------------------------

TOXICS: list[tuple[str, str, Callable[[random.Random], dict[str, int]]]] = [
    ("latency", "downstream", lambda r: {"latency": r.randint(200, 1500), "jitter": 100}),
    ("timeout", "downstream", lambda _r: {"timeout": 0}),  # a stalled connection
    ("reset_peer", "upstream", lambda r: {"timeout": r.randint(20, 400)}),  # reset mid-push
    ("limit_data", "upstream", lambda r: {"bytes": r.randint(300, 6000)}),  # cut mid-transfer
    ("slow_close", "downstream", lambda r: {"delay": r.randint(500, 3000)}),
    ("bandwidth", "downstream", lambda r: {"rate": r.randint(2, 32)}),  # KB/s
]


@dataclass
class Chaos:
    """The operator process and the faults done to it and around it."""

    kube: Kube
    plane: ControlPlane
    workdir: Path
    namespaces: list[str]
    proxies: dict[str, Proxy]
    rng: random.Random
    operator: OperatorProcess | None = None
    kills: int = 0
    phases_killed: Counter[str] = field(default_factory=Counter)
    toxics: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_operator(self) -> None:
        """A fresh operator process on the same cache and log (a Pod restarted); returns
        once it answers liveness (kopf is up), as a Pod's readiness would say."""
        port = procs.free_port()
        self.operator = OperatorProcess(
            self.kube,
            self.workdir,
            self.namespaces,
            log=self.workdir / "operator.log",
            cache=self.workdir / "cache",
            environment_refresh=1.0,
            max_backoff=2.0,
            extra_args=[f"--liveness=http://127.0.0.1:{port}/healthz"],
        ).start()
        with contextlib.suppress(TimeoutError):  # an API server restart may hold it up
            procs.wait_until(
                lambda: _answers(f"http://127.0.0.1:{port}/healthz"),
                timeout=60,
                what="the operator's liveness",
            )

    def kill_operator(self) -> None:
        """SIGKILL, noting the phase of every unfinished Promotion; then start it again."""
        phases = self.unfinished_phases()
        if self.operator is not None and self.operator.proc is not None:
            self.operator.proc.kill()
            self.operator.proc.wait()
        self.kills += 1
        self.phases_killed.update(phases or ["(none in flight)"])
        time.sleep(self.rng.uniform(0, 1.5))  # a Pod takes a moment to come back
        self.start_operator()

    def unfinished_phases(self) -> list[str]:
        """The phases of Promotions in flight right now ("Pending" before any status)."""
        result = self.kube.kubectl("get", "promotions", "-A", "-o", "json", check=False)
        if result.returncode != 0:
            return ["(API server down)"]
        phases = []
        for item in json.loads(result.stdout)["items"]:
            phase = (item.get("status") or {}).get("phase") or "Pending (no status yet)"
            if phase not in FINAL:
                phases.append(phase)
        return phases

    def network_fault(self) -> None:
        """One toxic on the git or registry link for a few seconds."""
        link = self.rng.choice(sorted(self.proxies))
        kind, stream, attributes = self.rng.choice(TOXICS)
        proxy = self.proxies[link]
        name = proxy.add_toxic(kind, stream=stream, **attributes(self.rng))
        self.toxics[f"{kind} on {link}"] += 1
        self.stop.wait(self.rng.uniform(2, 8))
        proxy.remove_toxic(name)

    def restart(self, component: str) -> None:
        """SIGKILL etcd or kube-apiserver and start it again after a short outage."""
        self.plane.restart(component, down=self.rng.uniform(0.5, 3))
        self.restarts[component] += 1

    def run(self, kills: int) -> None:
        """Faults until `kills` SIGKILLs are done; network faults run beside the kills."""
        network = threading.Thread(target=self._network_loop, daemon=True)
        network.start()
        while self.kills < kills:
            self.stop.wait(self.rng.uniform(0, 8))  # a random moment of the operator's work
            roll = self.rng.random()
            with self.lock:
                if roll < 0.05:
                    self.restart("kube-apiserver")
                elif roll < 0.08:
                    self.restart("etcd")
                else:
                    self.kill_operator()
                if self.kills % 10 == 0:
                    toxics = sum(self.toxics.values())
                    say(f"{self.kills} kills, {toxics} toxics, {dict(self.restarts)}")
        self.stop.set()
        network.join()

    def _network_loop(self) -> None:
        while self.proxies and not self.stop.is_set():
            self.network_fault()
            self.stop.wait(self.rng.uniform(0, 2))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback
            return bool(answer.status == 200)
    except OSError:
        return False


# --- promotions and their judgement --------------------------------------------------------


def final_status(kube: Kube, ns: str, name: str, deadline: float) -> dict[str, Any] | None:
    """Poll until the Promotion is finished (None past `deadline`); tolerates API outages."""
    while time.monotonic() < deadline:
        result = kube.kubectl("get", "promotion", name, "-n", ns, "-o", "json", check=False)
        if result.returncode == 0:
            obj = json.loads(result.stdout)
            status: dict[str, Any] = obj.get("status") or {}
            if status.get("phase") in FINAL:
                status["uid"] = obj["metadata"]["uid"]
                return status
        time.sleep(0.5)
    return None


def promote(kube: Kube, team: Team, timeout: float) -> Trial:
    """Dev runs the version prod does not; one Promotion carries it to prod."""
    version = NEW_VERSION if team.prod == OLD_VERSION else OLD_VERSION
    team.count += 1
    name = f"p-{team.count:03d}"
    for _ in range(60):  # the API server may be restarting
        with contextlib.suppress(Exception):
            kube.apply(*team.objects(version))
            kube.apply(promotion(team.ns, name, version, timeout=f"{timeout:g}s"))
            break
        time.sleep(1)
    trial = Trial(team, name, version, time.monotonic())
    # the deadline counts from startedAt, which comes a moment after the create
    status = final_status(kube, team.ns, name, trial.created + timeout + SLACK)
    if status is None:
        trial.unfinished = True
        status = final_status(kube, team.ns, name, time.monotonic() + 120) or {}
    trial.status = status
    trial.uid = str(status.get("uid", ""))
    if status.get("phase") == "Succeeded":
        team.prod = version
    return trial


def commits_by_uid(repo: Path) -> dict[str, list[str]]:
    """Every commit sha on main, keyed by the Promotion-UID of its trailer block."""
    out = git("--git-dir", str(repo), "log", "--format=%H%x1f%B%x1e", "main", strip=False)
    found: dict[str, list[str]] = {}
    for record in out.split("\x1e"):
        sha, _, message = record.strip("\n").partition("\x1f")
        for key, value in trailer_block(message):
            if key == Trailer.UID:
                found.setdefault(value, []).append(sha)
    return found


@dataclass
class Verdict:
    """The campaign's figures."""

    trials: int = 0
    succeeded: int = 0
    failed: int = 0
    duplicates: int = 0
    wrong: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)


def judge(trials: list[Trial], timeout: float) -> Verdict:
    """Compare every final status with what the remote holds."""
    verdict = Verdict(trials=len(trials))
    by_repo: dict[Path, dict[str, list[str]]] = {}
    for trial in trials:
        commits = by_repo.setdefault(trial.team.repo, commits_by_uid(trial.team.repo))
        mine = commits.get(trial.uid, [])
        status = trial.status
        phase = status.get("phase", "(none)")
        conditions: list[dict[str, Any]] = status.get("conditions", [])
        ready = next((c for c in conditions if c["type"] == "Ready"), {})
        reason = ready.get("reason", "")
        verdict.reasons[f"{phase}/{reason}"] += 1
        label = f"{trial.team.ns}/{trial.name} {phase}/{reason}"
        if len(mine) > 1:
            verdict.duplicates += 1
            verdict.wrong.append(f"{label}: {len(mine)} commits")
        if phase == "Succeeded":
            verdict.succeeded += 1
            pushed = reason != "AlreadyAtVersion"
            if pushed and (len(mine) != 1 or status.get("commit") not in mine):
                verdict.wrong.append(f"{label}: commit {status.get('commit')} vs remote {mine}")
            if not pushed and mine:
                verdict.wrong.append(f"{label}: AlreadyAtVersion but the remote has {mine}")
        elif mine:
            verdict.wrong.append(f"{label}: ended {phase} although {mine} landed")
        else:
            verdict.failed += 1
        if trial.unfinished:
            verdict.unfinished.append(label)
        started, finished = status.get("startedAt"), status.get("finishedAt")
        if started and finished:
            took = (parse_time(finished) - parse_time(started)).total_seconds()
            verdict.durations.append(took)
            if took > timeout + SLACK:
                verdict.unfinished.append(f"{label}: finished {took:.0f} s after its start")
    return verdict


# --- main ----------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> str:
    """The campaign; returns the markdown report."""
    rng = random.Random(args.seed)  # noqa: S311 - chaos, not cryptography
    began = time.monotonic()
    plane = ControlPlane(workdir / "controlplane", repo_root=CHECKOUT)
    world = World(workdir / "world")
    git_root = workdir / "git-root"
    server = HTTPGitServer(
        git_root, workdir / "git-http", username=GIT_USER, password=GIT_PASSWORD, tls=False
    )
    toxiproxy: Toxiproxy | None = None
    with contextlib.ExitStack() as stack:
        kube = plane.up()
        stack.callback(plane.stop)
        world.start(versions=(OLD_VERSION, NEW_VERSION))
        stack.callback(world.stop)
        server.start()
        stack.callback(server.stop)
        proxies: dict[str, Proxy] = {}
        blocked = ""
        try:
            find_binary()
            toxiproxy = Toxiproxy(workdir / "toxiproxy").start()
            stack.callback(toxiproxy.stop)
            proxies["git"] = toxiproxy.proxy("git", f"127.0.0.1:{server.port}")
            proxies["registry"] = toxiproxy.proxy("registry", world.registry.host)
        except FileNotFoundError as error:
            blocked = f"network faults skipped: {error}"
            say(blocked)
        git_host = proxies["git"].address if "git" in proxies else f"127.0.0.1:{server.port}"
        registry = proxies["registry"].address if "registry" in proxies else world.registry.host
        teams = []
        for index in range(args.teams):
            ns = kube.create_namespace(f"faults-{index}")
            repo = git_root / f"team-{index}.git"
            init_bare_repo(repo, gitops_files(registry), message="initial layout")
            objects = team_objects(world, ns, f"http://{git_host}/{repo.name}", registry)
            kube.apply(*objects(OLD_VERSION))
            teams.append(Team(ns, repo, objects))
        chaos = Chaos(kube, plane, workdir, [t.ns for t in teams], proxies, rng)
        chaos.start_operator()
        stack.callback(lambda: chaos.operator.stop() if chaos.operator else None)
        trials: list[Trial] = []
        trials_lock = threading.Lock()

        def promote_until_done(team: Team) -> None:
            while not chaos.stop.is_set():
                trial = promote(kube, team, args.timeout)
                with trials_lock:
                    trials.append(trial)

        workers = [threading.Thread(target=promote_until_done, args=(t,)) for t in teams]
        for worker in workers:
            worker.start()
        say(f"chaos: {args.kills} operator kills, {len(teams)} teams promoting")
        chaos.run(args.kills)
        say("chaos over; the last Promotions finish")
        for worker in workers:
            worker.join()
        verdict = judge(trials, args.timeout)
        log_lines = (workdir / "operator.log").read_text(errors="replace").splitlines()
        tracebacks = sum("Traceback" in line for line in log_lines)
    return report(args, verdict, chaos, blocked, time.monotonic() - began, tracebacks)


def report(
    args: argparse.Namespace,
    verdict: Verdict,
    chaos: Chaos,
    blocked: str,
    elapsed: float,
    tracebacks: int,
) -> str:
    """The markdown figures."""
    durations = sorted(verdict.durations) or [0.0]
    lines = [
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: `bench/faults.py --kills {args.kills} "
        f"--teams {args.teams} --timeout {args.timeout:g} --seed {args.seed}` "
        f"({elapsed:.0f} s in all) on {platform.machine()}, {platform.python_version()}.",
        "",
        "| figure | value | target |",
        "| --- | ---: | ---: |",
        f"| trials (Promotions) | {verdict.trials} | |",
        f"| Succeeded / Failed | {verdict.succeeded} / {verdict.failed} | |",
        f"| SIGKILLs of the operator | {chaos.kills} | ≥ 100 |",
        f"| kube-apiserver / etcd restarts | {chaos.restarts['kube-apiserver']} / "
        f"{chaos.restarts['etcd']} | |",
        f"| network toxics | {sum(chaos.toxics.values())} | |",
        f"| **duplicate commits** | **{verdict.duplicates}** | 0 |",
        f"| **wrong final statuses** | **{len(verdict.wrong)}** | 0 |",
        f"| **unfinished past their timeout** | **{len(verdict.unfinished)}** | 0 |",
        f"| start → finish, p50 / max | {durations[len(durations) // 2]:.1f} / "
        f"{durations[-1]:.1f} s | |",
        f"| tracebacks in the operator log | {tracebacks} | |",
        "",
        "Phases in flight at each SIGKILL: "
        + ", ".join(f"{phase} {n}" for phase, n in chaos.phases_killed.most_common())
        + ".",
        "",
        "Toxics: "
        + (", ".join(f"{k} {n}" for k, n in sorted(chaos.toxics.items())) or "none")
        + (f" ({blocked})" if blocked else "")
        + ".",
        "",
        "Final phase/reason: "
        + ", ".join(f"{k} {n}" for k, n in verdict.reasons.most_common())
        + ".",
    ]
    for problem in [*verdict.wrong, *verdict.unfinished]:
        lines.append(f"- {problem}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs of the operator")
    parser.add_argument("--teams", type=int, default=4, help="namespaces promoting at once")
    parser.add_argument("--timeout", type=float, default=180.0, help="each Promotion's timeout")
    parser.add_argument("--seed", type=int, default=7, help="the chaos's random seed")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    workdir = Path(tempfile.mkdtemp(prefix="promotion-faults-"))
    try:
        print(run(args, workdir))
    finally:
        if args.keep:
            say(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
