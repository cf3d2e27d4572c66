"""`--gitops PATH`: the Promotion as a file in a git checkout, committed (pushed on request).

This is the user's own checkout, so git runs as the user would run it (their identity,
their credentials); only `promotions/<name>.yaml` is added to the commit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from promotion_operator.plugin.flow import Request, manifest, promotion_name
from promotion_operator.plugin.session import PluginError, Session

GIT_TIMEOUT = 120.0
FOLDER = "promotions"


def _git(checkout: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(checkout), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PluginError(f"git {args[0]} in {checkout} took more than {GIT_TIMEOUT:g}s") from None
    if done.returncode != 0:
        raise PluginError(f"git {args[0]} in {checkout} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def free_path(folder: Path, name: str) -> tuple[str, Path]:
    """`<name>.yaml`, or `<name>-2.yaml`, ... when a file of that name is there already
    (the same version promoted again, a rollback to it)."""
    candidate, n = name, 1
    while (folder / f"{candidate}.yaml").exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate, folder / f"{candidate}.yaml"


def write_and_commit(session: Session, request: Request, checkout: str, *, push: bool) -> None:
    """Write promotions/<name>.yaml into the checkout, commit it, push with `push`."""
    root = Path(_git(Path(checkout), "rev-parse", "--show-toplevel"))
    folder = Path(checkout).resolve() / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    name, path = free_path(folder, promotion_name(request.environment, request.version))
    body = manifest(session.namespace, name, request, dry_run=False)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    relative = str(path.relative_to(root))
    _git(root, "add", "--", relative)
    verb = "roll back" if request.rollback else "promote"
    _git(
        root,
        "commit",
        "--quiet",
        "-m",
        f"{verb} {request.environment} to {request.version}",
        "-m",
        f"Reason: {' '.join(request.reason.split())}",
        "--",
        relative,
    )
    commit = _git(root, "rev-parse", "--short", "HEAD")
    session.out.print(f"wrote {relative} and committed it as {commit}")
    if push:
        _git(root, "push", "--quiet")
        session.out.print("pushed: the Promotion is created when your GitOps tool syncs it")
    else:
        session.out.print("not pushed (add --push, or git push when ready)")
