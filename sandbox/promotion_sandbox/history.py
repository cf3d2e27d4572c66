"""Real-looking history for a bare repository: thousands of CI commits, written fast.

A GitOps repository that has lived for a while: a folder of Helm-style values files that
CI and people keep editing, one to three files a commit. The benchmark measures git on it;
`git fast-import` writes it in seconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from pathlib import Path

from promotion_sandbox.gitserver import git

SERVICES = 120  # files the history touches: apps/svc-NNN/values.yaml


def ci_version(salt: str, day: int) -> str:
    """A version as CI tags it, `v<YYYYMMDD>-<7 hex>`: distinct per salt, dated by `day`."""
    date = dt.date(2025, 9, 1) + dt.timedelta(days=day)
    return f"v{date:%Y%m%d}-{hashlib.sha256(salt.encode()).hexdigest()[:7]}"


def _service_values(rng: random.Random, service: int, step: int) -> str:
    """A Helm-style values file that CI and people keep editing."""
    return (
        f"# values for svc-{service:03d}\n"
        f"replicaCount: {rng.randint(1, 6)}\n"
        "image:\n"
        f"  repository: registry.example.com/team/svc-{service:03d}\n"
        f"  tag: {ci_version(f'{service}-{step}', step % 365)}\n"
        "resources:\n"
        f"  requests: {{cpu: {rng.randint(50, 500)}m, memory: {rng.randint(64, 1024)}Mi}}\n"
        f"  limits: {{cpu: {rng.randint(500, 2000)}m, memory: {rng.randint(512, 4096)}Mi}}\n"
        "env:\n"
        + "".join(
            f"  - {{name: FEATURE_{k}, value: {rng.choice(['on', 'off'])!r}}}\n" for k in range(12)
        )
        + f"configHash: {rng.getrandbits(128):032x}\n"
    )


def _static_file(index: int) -> str:
    """A manifest nobody edits (a monorepo holds thousands): a few hundred bytes."""
    return (
        f"# component {index}\napiVersion: v1\nkind: ConfigMap\n"
        f"metadata: {{name: component-{index:05d}}}\n"
        "data:\n" + "".join(f"  key{k}: value-{index}-{k}\n" for k in range(8))
    )


def add_history(
    repo: Path, commits: int, *, seed: int = 7, branch: str = "main", files: int = 0
) -> None:
    """Append `commits` commits on `branch` of the bare `repo`, then pack it as a server would.

    `files` more files (`platform/component-NNNNN.yaml`, never edited) land in the first
    commit, so the tree is as wide as a monorepo's.
    """
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    # one commit every 90 minutes, the newest a day old: a history never reaches into
    # the future (a lookup "since an hour before the Promotion" must not meet years of it)
    start = int(dt.datetime.now(dt.UTC).timestamp()) - commits * 5400 - 86400
    chunks: list[bytes] = []

    def data(text: str) -> None:
        raw = text.encode()
        chunks.append(b"data %d\n" % len(raw) + raw + b"\n")

    for step in range(commits):
        when = start + step * 5400
        touched = rng.sample(range(SERVICES), rng.randint(1, 3))
        chunks.append(
            f"commit refs/heads/{branch}\ncommitter CI Bot <ci@example.com> {when} +0000\n".encode()
        )
        data(f"ci: bump svc-{touched[0]:03d} and {len(touched) - 1} more (build {step})\n")
        if step == 0:
            chunks.append(f"from refs/heads/{branch}^0\n".encode())
            for index in range(files):
                chunks.append(f"M 100644 inline platform/component-{index:05d}.yaml\n".encode())
                data(_static_file(index))
        for service in touched:
            chunks.append(f"M 100644 inline apps/svc-{service:03d}/values.yaml\n".encode())
            data(_service_values(rng, service, step))
        chunks.append(b"\n")
    git(f"--git-dir={repo}", "fast-import", "--quiet", input_bytes=b"".join(chunks))
    # a server's repository is packed: one pack with proper deltas, as after `git gc`
    git(f"--git-dir={repo}", "repack", "-a", "-d", "-q")
