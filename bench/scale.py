"""Production scale: a year of history and a thousand Environments, then the operator starts.

1,000 prod-like Environments (one overlay folder each in one repository) and 10,000
finished Promotions are written to a fresh sandbox control plane; then the operator starts
with its defaults (--environment-refresh=30, --max-backoff=60) and this measures:

- its RSS (peak, from the kernel's high-water mark, and after `--settle` seconds) and CPU;
- API writes to the 10,000 finished Promotions (every one's resourceVersion, before/after);
- start -> a Promotion created at start is Succeeded;
- start -> every Environment has a status;
- 10 sequential promotions under that load (create -> Succeeded);
- a burst of 100 Promotions to 100 Environments of the one repository at once.

Every moment is taken from a watch (a kubectl watch of the Promotions, a watch of the
Environments), never by polling: polling read the 1,000 Environments five times a second,
and 100 Promotions five hundred times a second during the burst, which loaded the 2-core
machine the operator shares, and it rounded every figure up to its 0.2 s step.

Run: `.venv/bin/python bench/scale.py` (about 8 minutes on 2 cores). It prints a Markdown
table for docs/benchmarks.md and the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config, watch

from promotion_sandbox.controlplane import ControlPlane
from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.watch import PhaseWatch
from promotion_sandbox.world import NEW_VERSION, OLD_VERSION, World, promotion

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION = "promotion.gitops.dev", "v1alpha1"


def main(argv: Sequence[str] | None = None) -> int:
    """Build the world, start the operator, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--environments", type=int, default=1000)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--settle", type=float, default=300.0, help="seconds before the last RSS")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--workdir", help="keep everything here (default: a new temp folder)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="promotion-scale-"))
    print(f"work folder (operator log, control plane): {workdir}", file=sys.stderr)
    results = run(workdir, args.environments, args.history, args.settle, args.burst)
    print(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


def run(
    workdir: Path, environments: int, history: int, settle: float, burst: int
) -> dict[str, Any]:
    """The whole measurement; returns the figures."""
    plane = ControlPlane(workdir / "control-plane", repo_root=ROOT)
    kube = plane.up()
    world = World(workdir / "world")
    try:
        world.start()
        return _measure(kube, world, workdir, environments, history, settle, burst)
    finally:
        world.stop()
        plane.stop()


def _measure(
    kube: Kube,
    world: World,
    workdir: Path,
    count: int,
    history: int,
    settle: float,
    burst: int,
) -> dict[str, Any]:
    namespace = kube.create_namespace("scale")
    overlays = world.add_prod_like_overlays(count)
    names = [f"tvhub-{Path(path).name}" for path in overlays]
    objects = [
        *world.objects(namespace),
        *(world.prod_like_environment(namespace, path) for path in overlays),
    ]
    for chunk in _chunks(objects, 200):
        kube.apply(*chunk)
    config.load_kube_config(config_file=str(kube.kubeconfig))  # type: ignore[no-untyped-call]
    api = client.CustomObjectsApi()
    began = time.monotonic()
    _write_history(api, namespace, names, history)
    written = time.monotonic() - began
    before = _resource_versions(api, namespace)

    statuses = _StatusWatch(api, namespace)
    phases = PhaseWatch(kube, namespace, watch_only=True)
    operator = OperatorProcess(
        kube,
        workdir,
        [namespace],
        environment_refresh=30,
        max_backoff=60,
        log=workdir / "operator.log",
        cache=workdir / "operator-cache",
    )
    results: dict[str, Any] = {
        "environments": count,
        "finished_promotions": history,
        "history_written_s": round(written, 1),
    }
    with statuses, phases:
        time.sleep(1.0)  # let both watches open before anything they should see happens
        with operator:
            assert operator.proc is not None
            started = time.monotonic()
            rss = _RSSSampler(operator.proc.pid)
            kube.apply(promotion(namespace, "first", NEW_VERSION, environment=names[0]))
            results["start_to_first_succeeded_s"] = round(
                _finished(phases, "first", operator).moment - started, 2
            )
            everyone = count + 2  # the prod-like ones, and the world's tvhub-dev and tvhub-prod
            _wait(lambda: statuses.observed() >= everyone, started, operator, timeout=600)
            results["start_to_all_environments_s"] = round(
                statuses.moment_of(everyone) - started, 2
            )
            sequential: list[float] = []
            for index in range(1, 11):
                name = f"seq-{index}"
                body = promotion(namespace, name, NEW_VERSION, environment=names[index])
                applied = time.monotonic()
                api.create_namespaced_custom_object(GROUP, VERSION, namespace, "promotions", body)
                sequential.append(_finished(phases, name, operator).moment - applied)
            results["sequential_p50_s"] = round(statistics.median(sequential), 3)
            results["sequential_max_s"] = round(max(sequential), 3)
            rss.sample_until(started + settle)
            results["rss_peak_mib"] = rss.peak_mib()
            results["rss_after_settle_mib"] = rss.current_mib()
            results["settle_s"] = settle
            results["cpu_s"] = _cpu_seconds(operator.proc.pid)
            after = _resource_versions(api, namespace)
            results["writes_to_finished_promotions"] = sum(
                1 for name, version in before.items() if after.get(name) != version
            )
            results.update(_burst(kube, phases, world, namespace, names[20 : 20 + burst], operator))
    return results


_FINAL = frozenset({"Succeeded", "Failed", "Superseded"})


def _finished(phases: PhaseWatch, name: str, operator: OperatorProcess) -> Any:
    """The watch event that ended Promotion `name` (it must have Succeeded)."""
    try:
        change = phases.wait(name, _FINAL, timeout=300)
    except TimeoutError as error:
        raise TimeoutError(f"{error}\n{operator.logs()[-3000:]}") from None
    if change.phase != "Succeeded":
        raise RuntimeError(f"{name} ended {change.phase}: {change.message}")
    return change


def _burst(
    kube: Kube,
    phases: PhaseWatch,
    world: World,
    namespace: str,
    names: Sequence[str],
    operator: OperatorProcess,
) -> dict[str, Any]:
    """`len(names)` Promotions to as many Environments of one repository, at once."""
    commits_before = len(world.remote_messages())
    began = time.monotonic()
    kube.apply(
        *(
            promotion(namespace, f"burst-{i}", NEW_VERSION, environment=n)
            for i, n in enumerate(names)
        )
    )
    applied = time.monotonic() - began
    ends = []
    for i in range(len(names)):
        try:
            ends.append(phases.wait(f"burst-{i}", _FINAL, timeout=600))
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{operator.logs()[-3000:]}") from None
    return {
        "burst_promotions": len(names),
        "burst_wall_s": round(max(end.moment for end in ends) - began, 2),
        "burst_applied_s": round(applied, 2),
        "burst_succeeded": sum(1 for end in ends if end.phase == "Succeeded"),
        "burst_commits": len(world.remote_messages()) - commits_before,
    }


def _write_history(
    api: client.CustomObjectsApi, namespace: str, environments: Sequence[str], count: int
) -> None:
    """`count` finished Promotions, spread over the Environments, as the operator leaves them."""

    def one(index: int) -> None:
        name = f"history-{index:05d}"
        env = environments[index % len(environments)]
        body = promotion(namespace, name, OLD_VERSION, environment=env, reason=f"release {index}")
        created = cast(
            dict[str, Any],
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, "promotions", body),
        )
        stamp = "2025-06-01T12:00:00Z"
        commit = f"{index:040x}"
        status = {
            "phase": "Succeeded",
            "observedGeneration": created["metadata"]["generation"],
            "previousVersion": "v20250101-0000000",
            "commit": commit,
            "shortCommit": commit[:7],
            "diff": f"--- a/k8s/overlays/{env}/kustomization.yaml\n+++ b/...\n" + "-x\n+y\n" * 4,
            "checks": [
                {"name": "VersionPattern", "target": OLD_VERSION, "status": "Passed"},
                {"name": "TagExists", "target": f"app:{OLD_VERSION}", "status": "Passed"},
            ],
            "conditions": [
                {
                    "type": kind,
                    "status": "True",
                    "reason": "Promoted",
                    "message": "pushed",
                    "lastTransitionTime": stamp,
                    "observedGeneration": 1,
                }
                for kind in ("Ready", "Verified", "Committed")
            ],
            "startedAt": "2025-06-01T11:59:58.000000Z",
            "finishedAt": stamp,
            "message": f"{env} promoted to {OLD_VERSION}",
        }
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "promotions", name, {"status": status}
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(count)))


def _resource_versions(api: client.CustomObjectsApi, namespace: str) -> dict[str, str]:
    """resourceVersion of every history Promotion (paginated LIST)."""
    versions: dict[str, str] = {}
    token: str | None = None
    while True:
        page = cast(
            dict[str, Any],
            api.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "promotions", limit=1000, _continue=token
            ),
        )
        for item in page["items"]:
            meta = item["metadata"]
            if meta["name"].startswith("history-"):
                versions[meta["name"]] = meta["resourceVersion"]
        token = page["metadata"].get("continue")
        if not token:
            return versions


class _StatusWatch:
    """When each Environment first had a `status.version`, from one watch of them."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str) -> None:
        self._api = api
        self._namespace = namespace
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._version = ""

    def start(self) -> _StatusWatch:
        """List once (what has a status already), then follow the watch in a thread."""
        self._relist()
        threading.Thread(target=self._follow, name="environment-watch", daemon=True).start()
        return self

    def __enter__(self) -> _StatusWatch:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def observed(self) -> int:
        """How many Environments have had a status.version."""
        with self._lock:
            return len(self._seen)

    def moment_of(self, count: int) -> float:
        """When the `count`-th Environment got its status (monotonic seconds)."""
        with self._lock:
            return sorted(self._seen.values())[count - 1]

    def _note(self, obj: dict[str, Any], moment: float) -> None:
        if (obj.get("status") or {}).get("version"):
            with self._lock:
                self._seen.setdefault(obj["metadata"]["name"], moment)

    def _relist(self) -> None:
        listed = cast(
            dict[str, Any],
            self._api.list_namespaced_custom_object(
                GROUP, VERSION, self._namespace, "environments"
            ),
        )
        moment = time.monotonic()
        for item in listed["items"]:
            self._note(item, moment)
        self._version = listed["metadata"]["resourceVersion"]

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self._namespace,
                    "environments",
                    resource_version=self._version,
                    timeout_seconds=300,
                ):
                    obj = event["object"]
                    self._version = obj["metadata"]["resourceVersion"]
                    self._note(obj, time.monotonic())
            except Exception:  # expired (410), or the control plane going away at the end
                if self._stop.wait(1.0):
                    return
                self._relist()  # what changed meanwhile is in the listing


def _wait(
    done: Callable[[], bool],
    since: float,
    operator: OperatorProcess,
    *,
    timeout: float = 300,
) -> float:
    while not done():
        if not operator.running():
            raise RuntimeError(f"the operator exited:\n{operator.logs()[-3000:]}")
        if time.monotonic() - since > timeout:
            raise TimeoutError(f"not done in {timeout:.0f} s:\n{operator.logs()[-3000:]}")
        time.sleep(0.05)
    return round(time.monotonic() - since, 2)


class _RSSSampler:
    """Reads the process's resident set from /proc; the kernel keeps the peak (VmHWM)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _field(self, name: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def peak_mib(self) -> float:
        return self._field("VmHWM")

    def current_mib(self) -> float:
        return self._field("VmRSS")

    def sample_until(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            time.sleep(1)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return round(ticks / 100, 1)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def markdown(results: dict[str, Any]) -> str:
    """The figures as the table in docs/benchmarks.md."""
    rows = [
        ("operator RSS, peak", f"{results['rss_peak_mib']} MiB", "<= 200 MiB"),
        (
            f"operator RSS after {results['settle_s']:.0f} s",
            f"{results['rss_after_settle_mib']} MiB",
            "<= 150 MiB",
        ),
        (
            "start -> a new Promotion Succeeded",
            f"{results['start_to_first_succeeded_s']} s",
            "<= 5 s",
        ),
        (
            "start -> every Environment has status",
            f"{results['start_to_all_environments_s']} s",
            "<= 30 s",
        ),
        (
            "10 sequential promotions: p50 / max",
            f"{results['sequential_p50_s']} s / {results['sequential_max_s']} s",
            "<= 0.3 s / <= 2 s",
        ),
        (
            "API writes to the finished Promotions",
            str(results["writes_to_finished_promotions"]),
            "0",
        ),
        ("operator CPU seconds (start + settle + sequential)", str(results["cpu_s"]), ""),
        (
            f"burst: {results['burst_promotions']} Promotions to as many Environments",
            f"{results['burst_wall_s']} s, {results['burst_succeeded']} Succeeded, "
            f"{results['burst_commits']} commits",
            "<= 15 s, all, 100",
        ),
    ]
    lines = [
        f"Scale run: {results['environments']} Environments, "
        f"{results['finished_promotions']} finished Promotions.",
        "",
        "| what | measured | target |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {what} | {measured} | {target} |" for what, measured, target in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
