"""The operator's git work over an emulated WAN, and how flat it stays as history grows.

A realistic GitOps monorepo (`--files` files, `--commits` commits of CI history,
`promotion_sandbox.history`) is served by sshd on loopback, with toxiproxy
(`promotion_sandbox.toxiproxy`) in front of it: `--latency` ms each way and `--rate` KB/s
(25 ms and 6,250 KB/s = 50 Mbit/s by default). Measured side by side in one run,
interleaved, each `--runs` times:

- what a hand-written promote script does: a fresh full `git clone`, edit the overlay,
  commit, push; and the same with `--depth=1`;
- the operator's git work per promotion, exactly as `promote()` does it on its warm
  persistent clone: under the branch lock `sync(if_stale=True)` and a look for this
  Promotion's trailers (`find_commit`), then `commit_and_push(batch=True)`, whose edit
  reads the overlay.
  Interleaved with the two scripts, whose pushes move the branch each time (so the
  operator's optimistic push is rejected, it fetches and pushes again), and then
  `--runs` times back to back (no one else pushing).

End to end (`--only e2e`): the sandbox world's repository with the same history, served
by sshd behind toxiproxy, and its registry behind a second proxy with the same toxics
(the images are named after the proxy). The operator runs as a process on a real control
plane (`--environment-refresh`, default 30 s as in production). Each run: the two scripts
promote, then a Promotion is created through the API and timed to `Succeeded`, split at
the phase changes (pickup, verify, git); then `--runs` Promotions back to back.

History flatness: the operator's git work, p50, on a repository of 100 commits against
one of `--commits` commits (same tree width), through the same sshd without toxics.

Run: `.venv/bin/python bench/wan.py` (about 8 minutes on 2 cores). Prints Markdown for
docs/benchmarks.md and the raw figures as JSON. Each figure carries the load average
measured right after it, since the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config

from promotion_operator import API_GROUP, API_VERSION
from promotion_operator.domain.planning import commit_message
from promotion_operator.gitops import GitRepository, Reader, SSHAuth
from promotion_sandbox.controlplane import ControlPlane
from promotion_sandbox.gitserver import (
    SSHGitServer,
    commit_count,
    git,
    init_bare_repo,
    pack_mib,
    tracked_files,
)
from promotion_sandbox.history import add_history, ci_version
from promotion_sandbox.registry import LocalRegistry
from promotion_sandbox.stack import Stack, running_stack
from promotion_sandbox.toxiproxy import Proxy, Toxiproxy
from promotion_sandbox.world import (
    NEW_VERSION,
    PROD_OVERLAY,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    World,
    promotion,
)

CHECKOUT = Path(__file__).resolve().parent.parent  # this file's own checkout
OVERLAY = "k8s/overlays/prod/kustomization.yaml"
NAMESPACE = "wan"
SEED = {
    "k8s/base/kustomization.yaml": "resources:\n  - deployment.yaml\n",
    OVERLAY: (
        "resources:\n  - ../../base\nimages:\n"
        "  - name: registry.example.com/team/tvhub\n    newTag: v20250101-0000000\n"
    ),
}


def say(text: str) -> None:
    """Progress on stderr."""
    print(f"[wan {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def load() -> str:
    """The 1-minute load average, as `uptime` shows it."""
    return f"{os.getloadavg()[0]:.1f}"


def make_repo(path: Path, commits: int, files: int) -> Path:
    """A bare monorepo: the seed overlay, `files` more files and `commits` commits."""
    init_bare_repo(path, SEED)
    add_history(path, commits, files=files)
    return path


def retag(text: str, new: str) -> str:
    """Move every image's newTag in the overlay, as a script's `sed` would."""
    return re.sub(r"(?m)^(\s*newTag:) \S+$", rf"\g<1> {new}", text)


class Naive:
    """A hand-written promote script: fresh clone, edit, commit, push, with plain git."""

    def __init__(
        self, url: str, scratch: Path, key: str, known_hosts: str, overlay: str = OVERLAY
    ) -> None:
        self.url, self.scratch, self.overlay = url, scratch, overlay
        scratch.mkdir(parents=True, exist_ok=True)
        key_file, hosts = scratch / "id", scratch / "known_hosts"
        key_file.write_text(key.strip() + "\n")
        key_file.chmod(0o600)
        hosts.write_text(known_hosts)
        ssh = (
            f"ssh -F /dev/null -i {key_file} -o IdentitiesOnly=yes -o BatchMode=yes "
            f"-o UserKnownHostsFile={hosts} -o StrictHostKeyChecking=yes"
        )
        os.environ["GIT_SSH_COMMAND"] = ssh  # the sandbox's git() passes os.environ on

    def promote(self, new: str, depth: int) -> float:
        """Seconds from the clone to the end of the push."""
        work = self.scratch / f"naive-{new}-{depth}"
        began = time.perf_counter()
        clone = ["clone", "-q", "--branch", "main", "--single-branch", "--no-tags"]
        if depth:
            clone.append(f"--depth={depth}")
        git(*clone, self.url, str(work))
        path = work / self.overlay
        path.write_text(retag(path.read_text(), new))
        git("commit", "-q", "-am", f"promote prod to {new}", cwd=work)
        git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
        elapsed = time.perf_counter() - began
        shutil.rmtree(work)
        return elapsed


class OperatorGit:
    """The operator's git work per promotion on its warm clone, as `promote()` does it."""

    def __init__(self, url: str, cache: Path, auth: SSHAuth) -> None:
        self.repo = GitRepository(url, "main", cache_dir=cache, auth=auth)
        began = time.perf_counter()
        self.repo.sync()
        self.cold = time.perf_counter() - began
        self.count = 0

    def promote(self, new: str) -> float:
        """Seconds for one promotion's git work (lookup under the lock, then the push)."""
        self.count += 1
        uid = f"bench-{self.count}-{new}"
        message = commit_message(
            namespace="bench",
            name=uid,
            uid=uid,
            generation=1,
            environment="tvhub-prod",
            old=None,
            new=new,
            reason="bench",
            requested_by="bench",
        )
        edit: Callable[[Reader], dict[str, str]] = lambda read: {  # noqa: E731
            OVERLAY: retag(read(OVERLAY), new)
        }
        began = time.perf_counter()
        with self.repo.lock():
            self.repo.sync(if_stale=True)  # the edit itself reads the overlay
            since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            found = self.repo.find_commit(
                {"Promotion-UID": uid, "Promotion-Generation": "1"}, since=since, refresh=False
            )
            if found is not None:
                raise RuntimeError("found a commit that cannot exist")
        pushed = self.repo.commit_and_push(edit, message, batch=True)
        elapsed = time.perf_counter() - began
        if not pushed.changed:
            raise RuntimeError("the operator pushed nothing")
        return elapsed


def p50(samples: list[float]) -> float:
    """The median, rounded."""
    return round(statistics.median(samples), 3)


def describe(repo: Path) -> dict[str, Any]:
    """Commits, files and pack size of a bare repository."""
    return {
        "commits": commit_count(repo),
        "files": len(tracked_files(repo)),
        "pack_mib": round(pack_mib(repo), 1),
    }


def bench_wan(args: argparse.Namespace, workdir: Path, repo: Path) -> dict[str, Any]:
    """Fresh full clone, fresh shallow clone and the operator, interleaved, over the WAN."""
    ssh = SSHGitServer(workdir / "repos", workdir / "sshd")
    ssh.start()
    toxics = Toxiproxy(workdir / "toxiproxy")
    try:
        toxics.start()
        proxy = toxics.proxy("git", f"127.0.0.1:{ssh.port}")
        proxy.wan(latency_ms=args.latency, rate_kbps=args.rate)
        url = f"ssh://{ssh.user}@127.0.0.1:{proxy.port}{repo.resolve()}"
        hosts = ssh.known_hosts.replace(f"[127.0.0.1]:{ssh.port}", f"[127.0.0.1]:{proxy.port}")
        auth = SSHAuth(private_key=ssh.client_private_key, known_hosts=hosts)
        naive = Naive(url, workdir / "naive", ssh.client_private_key, hosts)
        operator = OperatorGit(url, workdir / "cache-wan", auth)
        full: list[float] = []
        shallow: list[float] = []
        ours: list[float] = []
        for run in range(args.runs):
            full.append(naive.promote(ci_version(f"full{run}", run), 0))
            shallow.append(naive.promote(ci_version(f"shallow{run}", run), 1))
            ours.append(operator.promote(ci_version(f"operator{run}", run)))
            say(f"WAN run {run + 1}: full {full[-1]:.2f} s, shallow {shallow[-1]:.2f} s, "
                f"operator {ours[-1]:.3f} s (load {load()})")  # fmt: skip
        # the same promotions with no one else pushing in between: no rejected push
        alone = [operator.promote(ci_version(f"alone{run}", run)) for run in range(args.runs)]
        say(f"WAN, operator alone: {[round(x, 2) for x in alone]} (load {load()})")
        return {
            "operator_alone_p50_s": p50(alone),
            "ratio_full_alone": round(p50(full) / p50(alone), 1),
            "ratio_shallow_alone": round(p50(shallow) / p50(alone), 1),
            "latency_ms_each_way": args.latency,
            "rate_kbps": args.rate,
            "runs": args.runs,
            "full_clone_p50_s": p50(full),
            "shallow_clone_p50_s": p50(shallow),
            "operator_p50_s": p50(ours),
            "operator_max_s": round(max(ours), 3),
            "operator_cold_clone_s": round(operator.cold, 2),
            "ratio_full": round(p50(full) / p50(ours), 1),
            "ratio_shallow": round(p50(shallow) / p50(ours), 1),
            "load": load(),
        }
    finally:
        toxics.stop()
        ssh.stop()


def bench_history(args: argparse.Namespace, workdir: Path, big: Path) -> dict[str, Any]:
    """The operator's git work, p50, at 100 commits and at `--commits` (no toxics)."""
    small = make_repo(workdir / "repos" / "small.git", 100, args.files)
    ssh = SSHGitServer(workdir / "repos", workdir / "sshd")
    ssh.start()
    try:
        auth = SSHAuth(private_key=ssh.client_private_key, known_hosts=ssh.known_hosts)
        contenders = {
            name: OperatorGit(ssh.url_for(repo.name), workdir / f"cache-{name}", auth)
            for name, repo in (("small", small), ("big", big))
        }
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for run in range(args.runs):
            for name, operator in contenders.items():
                samples[name].append(operator.promote(ci_version(f"{name}{run}", run)))
        say(f"history: {samples} (load {load()})")
        return {
            "small": describe(small),
            "big": describe(big),
            "small_p50_s": p50(samples["small"]),
            "big_p50_s": p50(samples["big"]),
            "ratio": round(p50(samples["big"]) / p50(samples["small"]), 2),
            "load": load(),
        }
    finally:
        ssh.stop()


class Promoter:
    """Creates Promotions through the API and times each create -> Succeeded."""

    def __init__(self, stack: Stack, custom: client.CustomObjectsApi) -> None:
        self.stack, self.custom = stack, custom

    def promote(self, name: str, version: str) -> dict[str, float]:
        """Dev runs `version`, then a Promotion of prod to it; seconds per stage once Succeeded."""
        self.stack.dev_runs(version)
        body = promotion(NAMESPACE, name, version, reason="bench")
        began = time.monotonic()
        self.custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, NAMESPACE, "promotions", body
        )
        change = self.stack.watch.wait(name, {"Succeeded", "Failed", "Superseded"}, timeout=120)
        if change.phase != "Succeeded":
            raise RuntimeError(
                f"Promotion {name} ended {change.phase}: {change.message}\n"
                f"--- operator log (tail) ---\n{self.stack.operator.logs()[-3000:]}"
            )
        seen = self.stack.watch.first_seen(name)
        pending = seen.get("Pending", began)
        promoting = seen.get("Promoting", pending)
        return {
            "total": seen["Succeeded"] - began,
            "pickup": pending - began,  # watch event, kopf, first status write
            "verify": promoting - pending,  # registry over the WAN, dev's Application
            "git": seen["Succeeded"] - promoting,  # lookup, commit, push over the WAN
        }


def wan_world(
    args: argparse.Namespace, workdir: Path, toxics: Toxiproxy, versions: list[str]
) -> tuple[World, Proxy]:
    """The sandbox world, its images named after a WAN proxy in front of the registry."""
    registry = LocalRegistry(
        workdir / "registry", auth="htpasswd", users={REGISTRY_USER: REGISTRY_PASSWORD}
    )
    (workdir / "registry").mkdir(parents=True, exist_ok=True)
    registry.start()
    try:
        proxy = toxics.proxy("registry", registry.host)
        proxy.wan(latency_ms=args.latency, rate_kbps=args.rate)
        world = World(workdir, registry, image_host=proxy.address)
        for version in versions:
            world.push_version(version)  # CI pushes next to the registry, not over the WAN
        world.create_repo()
        add_history(world.repo, args.commits, files=args.files)
    except BaseException:
        registry.stop()
        raise
    return world, proxy


def bench_end_to_end(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """apply -> Succeeded through the operator process, git and registry behind the WAN."""
    runs = args.runs
    names = [f"{kind}-{run}" for kind in ("warm", "mixed", "alone") for run in range(runs)]
    versions = [NEW_VERSION, *(ci_version(name, index) for index, name in enumerate(names))]
    toxics = Toxiproxy(workdir / "toxiproxy")
    plane = ControlPlane(workdir / "controlplane", repo_root=CHECKOUT)
    world: World | None = None
    ssh: SSHGitServer | None = None
    try:
        toxics.start()
        began = time.perf_counter()
        world, registry_proxy = wan_world(args, workdir / "world", toxics, versions)
        say(f"world written in {time.perf_counter() - began:.0f} s: {describe(world.repo)}")
        ssh = SSHGitServer(world.repo.parent, workdir / "sshd")
        ssh.start()
        git_proxy = toxics.proxy("git", f"127.0.0.1:{ssh.port}")
        git_proxy.wan(latency_ms=args.latency, rate_kbps=args.rate)
        url = f"ssh://{ssh.user}@127.0.0.1:{git_proxy.port}{world.repo.resolve()}"
        hosts = ssh.known_hosts.replace(f"[127.0.0.1]:{ssh.port}", f"[127.0.0.1]:{git_proxy.port}")
        naive = Naive(url, workdir / "naive", ssh.client_private_key, hosts, PROD_OVERLAY)
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "git-ssh", "namespace": NAMESPACE},
            "stringData": {"ssh-privatekey": ssh.client_private_key, "known_hosts": hosts},
        }
        objects = [secret, *world.objects(NAMESPACE, git_url=url)]
        for obj in objects:
            if obj["kind"] == "Environment":
                obj["spec"]["git"]["secretRef"] = {"name": "git-ssh"}
        kube = plane.up()
        with (
            running_stack(
                kube,
                world,
                NAMESPACE,
                workdir / "operator",
                world_objects=objects,
                environment_refresh=args.environment_refresh,
            ) as stack,
            contextlib.closing(
                # the kubernetes client has no type hints
                config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=str(kube.kubeconfig)
                )
            ) as api,
        ):
            observed = stack.wait_observed(timeout=300)
            say(f"operator observed both Environments over the WAN in {observed:.1f} s")
            promoter = Promoter(stack, client.CustomObjectsApi(api))
            versions_of = dict(zip(names, versions[1:], strict=True))
            warm = [promoter.promote(n, versions_of[n]) for n in names if n.startswith("warm")]
            say(f"warm-up (clone and SSH connection): {[round(w['total'], 2) for w in warm]}")
            full: list[float] = []
            shallow: list[float] = []
            mixed: list[dict[str, float]] = []
            for run in range(runs):
                full.append(naive.promote(ci_version(f"e2e-full{run}", run), 0))
                shallow.append(naive.promote(ci_version(f"e2e-shallow{run}", run), 1))
                name = f"mixed-{run}"
                mixed.append(promoter.promote(name, versions_of[name]))
                total = mixed[-1]["total"]
                say(f"end to end, run {run + 1}: full {full[-1]:.2f} s, shallow "
                    f"{shallow[-1]:.2f} s, operator {total:.3f} s (load {load()})")  # fmt: skip
            alone = [
                promoter.promote(f"alone-{run}", versions_of[f"alone-{run}"]) for run in range(runs)
            ]
            say(f"end to end, no one else pushing: {[round(a['total'], 2) for a in alone]}")
            return {
                "repository": describe(world.repo),
                "registry_proxy": registry_proxy.address,
                "runs": runs,
                "environment_refresh_s": args.environment_refresh,
                "observed_s": round(observed, 1),
                "full_clone_p50_s": p50(full),
                "shallow_clone_p50_s": p50(shallow),
                "mixed": {stage: p50([m[stage] for m in mixed]) for stage in mixed[0]},
                "mixed_max_s": round(max(m["total"] for m in mixed), 3),
                "alone": {stage: p50([a[stage] for a in alone]) for stage in alone[0]},
                "alone_max_s": round(max(a["total"] for a in alone), 3),
                "load": load(),
            }
    finally:
        plane.stop()
        if ssh is not None:
            ssh.stop()
        if world is not None:
            world.stop()
        toxics.stop()


def markdown(results: dict[str, Any]) -> str:
    """The figures as the tables in docs/benchmarks.md (the parts that ran)."""
    lines: list[str] = []
    if "wan" in results:
        wan, repo = results["wan"], results["repository"]
        lines += [
            f"Repository: {repo['commits']} commits, {repo['files']} files, pack "
            f"{repo['pack_mib']} MiB; sshd behind toxiproxy, {wan['latency_ms_each_way']} ms "
            f"each way, {wan['rate_kbps']} KB/s; {wan['runs']} runs each, interleaved.",
            "",
            "| git work per promotion, p50 | seconds | operator is | target | load |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| fresh full clone + commit + push | {wan['full_clone_p50_s']} | "
            f"{wan['ratio_full']}x / {wan['ratio_full_alone']}x | >= 20x | {wan['load']} |",
            f"| fresh `--depth=1` clone + commit + push | {wan['shallow_clone_p50_s']} | "
            f"{wan['ratio_shallow']}x / {wan['ratio_shallow_alone']}x | >= 5x | {wan['load']} |",
            f"| operator, warm clone, the others' pushes in between (max "
            f"{wan['operator_max_s']}) | {wan['operator_p50_s']} | | | {wan['load']} |",
            f"| operator, warm clone, no one else pushing | {wan['operator_alone_p50_s']} | "
            f"| | {wan['load']} |",
            "",
        ]
    if "e2e" in results:
        e2e = results["e2e"]
        repo = e2e["repository"]
        mixed, alone = e2e["mixed"], e2e["alone"]
        lines += [
            f"End to end: {repo['commits']} commits, {repo['files']} files, pack "
            f"{repo['pack_mib']} MiB; sshd and the registry each behind toxiproxy; operator "
            f"process with `--environment-refresh {e2e['environment_refresh_s']:g}`; "
            f"{e2e['runs']} runs each.",
            "",
            "| apply -> Succeeded, p50 | total s | pickup | verify | git | full clone is | "
            "shallow clone is | load |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *(
                f"| {what} (max {e2e[f'{key}_max_s']}) | {row['total']:.3f} | "
                f"{row['pickup']:.3f} | {row['verify']:.3f} | {row['git']:.3f} | "
                f"{e2e['full_clone_p50_s'] / row['total']:.1f}x | "
                f"{e2e['shallow_clone_p50_s'] / row['total']:.1f}x | {e2e['load']} |"
                for key, what, row in (
                    ("mixed", "operator, the others' pushes in between", mixed),
                    ("alone", "operator, no one else pushing", alone),
                )
            ),
            f"| fresh full clone + commit + push | {e2e['full_clone_p50_s']} | | | | | | |",
            f"| fresh `--depth=1` clone + commit + push | {e2e['shallow_clone_p50_s']} "
            "| | | | | | |",
            "",
        ]
    if "history" in results:
        history = results["history"]
        lines += [
            "| history flatness (no toxics) | commits | p50 s | load |",
            "| --- | ---: | ---: | ---: |",
            f"| small repository | {history['small']['commits']} | {history['small_p50_s']} | "
            f"{history['load']} |",
            f"| big repository | {history['big']['commits']} | {history['big_p50_s']} | "
            f"{history['load']} |",
            f"| ratio big / small (target <= 1.5) | | {history['ratio']} | |",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build the repositories, run both measurements, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=30_000)
    parser.add_argument("--files", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--latency", type=int, default=25, help="ms each way")
    parser.add_argument("--rate", type=int, default=6250, help="KB/s each way")
    parser.add_argument("--only", choices=("wan", "e2e", "history"), help="run one part")
    parser.add_argument(
        "--environment-refresh", type=float, default=30.0, help="the operator's, end to end"
    )
    parser.add_argument("--workdir", help="keep everything here (default: a temp folder)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="promotion-wan-"))
    say(f"work folder: {workdir}")
    began = time.perf_counter()
    results: dict[str, Any] = {}
    if args.only in (None, "wan", "history"):
        big = make_repo(workdir / "repos" / "monorepo.git", args.commits, args.files)
        say(f"monorepo written in {time.perf_counter() - began:.0f} s")
        results["repository"] = describe(big)
        if args.only in (None, "wan"):
            results["wan"] = bench_wan(args, workdir, big)
        if args.only in (None, "history"):
            results["history"] = bench_history(args, workdir, big)
    if args.only in (None, "e2e"):
        results["e2e"] = bench_end_to_end(args, workdir / "e2e")
    print(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
