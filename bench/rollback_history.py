"""What the rollback guard's history read costs on a long-lived repository.

    .venv/bin/python bench/rollback_history.py [--promotions N] [--other N] [--runs N]

Builds a bare repository (one `git fast-import`) holding N operator promotion commits on
the prod overlay, interleaved with `--other` commits elsewhere (CI bumping dev, people
editing other files), clones it once into the operator's cache layout, and times what
RollbackGuard does each verification round: the lockless fetch (`snapshot`), the overlay
read (`read_many`), the one `git log` over the whole history (`promotions_of`: the commits
that moved the overlay to or from the version) and the pure `rollback_of` decision.
Prints a markdown table. The first history read walks everything; later ones (a soak's
rounds, the next promotion) read only the commits since the last look.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from promotion_operator.domain.planning import commit_message
from promotion_operator.domain.rollback import rollback_of
from promotion_operator.gitops import GitRepository
from promotion_sandbox.history import ci_version

OVERLAY = "k8s/overlays/prod/kustomization.yaml"


def overlay(version: str) -> str:
    return f"images:\n  - name: registry.example/team/app\n    newTag: {version}\n"


def build(bare: Path, promotions: int, other: int) -> list[str]:
    """The bare repository; returns the promoted versions, oldest first."""
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
    versions = [ci_version(f"p{n}", n % 3650) for n in range(promotions)]
    every = max(1, other // max(1, promotions))
    stream: list[str] = []
    stamp = 1_600_000_000
    previous = "(none)"

    def commit(message: str, path: str, text: str) -> None:
        nonlocal stamp
        stamp += 60
        data = message.encode()
        stream.append(
            f"commit refs/heads/main\ncommitter ci <ci@example.invalid> {stamp} +0000\n"
            f"data {len(data)}\n{message}\nM 100644 inline {path}\ndata {len(text.encode())}\n"
            f"{text}\n"
        )

    other_left = other
    for n, version in enumerate(versions):
        message = commit_message(
            namespace="shop",
            name=f"prod-{n}",
            uid=f"uid-{n}",
            generation=1,
            environment="prod",
            old=previous,
            new=version,
            reason="release",
            requested_by="ci",
        )
        commit(message, OVERLAY, overlay(version))
        previous = version
        for m in range(min(every, other_left)):
            commit(f"bump dev {n}-{m}", "k8s/overlays/dev/kustomization.yaml", overlay(f"x{n}{m}"))
        other_left -= min(every, other_left)
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=bare, input="".join(stream).encode(), check=True
    )
    return versions


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--promotions", type=int, default=10_000)
    parser.add_argument("--other", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "gitops.git"
        began = time.monotonic()
        versions = build(bare, args.promotions, args.other)
        print(f"built {args.promotions} + {args.other} commits in {time.monotonic() - began:.1f} s")
        repo = GitRepository(bare.as_uri(), "main", cache_dir=Path(tmp) / "cache", allow_file=True)
        repo.sync()
        timings: dict[str, list[float]] = {"snapshot": [], "read": [], "history": [], "rule": []}
        found = 0
        for _ in range(args.runs):
            t0 = time.monotonic()
            head = repo.snapshot()
            t1 = time.monotonic()
            repo.read_many(head, [OVERLAY])
            t2 = time.monotonic()
            history = repo.promotions_of(head, OVERLAY, versions[0])
            t3 = time.monotonic()
            verdict = rollback_of(versions[0], versions[-1], history)
            t4 = time.monotonic()
            found = len(history)
            assert verdict is not None and verdict.vouch is not None
            for key, spent in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                timings[key].append(spent)
        print(f"\n{found} promotion commits of the oldest version found; {args.runs} runs\n")
        print("| step | median | max |\n| --- | ---: | ---: |")
        first = timings["history"].pop(0)
        print(f"| history, first look (no cache) | {first * 1000:.1f} ms | |")
        timings["history, later looks"] = timings.pop("history")
        for key, values in timings.items():
            median, worst = statistics.median(values) * 1000, max(values) * 1000
            print(f"| {key} | {median:.1f} ms | {worst:.1f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
