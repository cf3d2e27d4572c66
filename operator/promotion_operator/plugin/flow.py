"""The promote flow that `promote` and `rollback` share: dry run, confirm, create, follow.

1. A dry-run Promotion is created and watched until every check has run once; its checks
   and the overlay diff are shown. A dry run still waiting (a soak, say) is deleted, so it
   costs the operator nothing more; a finished one stays as a record (retention prunes it).
2. The user confirms (`--yes` skips; without a terminal and without `--yes` it refuses).
3. The real Promotion is created and followed with a watch: the phase, the check being
   waited on and the soak countdown. Ctrl-C stops following, never the promotion.
4. The exit code says how it ended: 0 Succeeded, 1 Failed or Superseded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from rich.live import Live
from rich.prompt import Confirm
from rich.text import Text

from promotion_operator import REQUESTED_BY_ANNOTATION
from promotion_operator.domain.models import Phase
from promotion_operator.plugin.kube import Kube, KubeError, Object
from promotion_operator.plugin.render import LiveLine, checks_table, diff_view, phase_text
from promotion_operator.plugin.session import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_CONFIRMED,
    EXIT_OK,
    PluginError,
    Session,
)
from promotion_operator.plugin.views import (
    condition,
    is_current_generation_finished,
    progress,
)

DRY_RUN_WAIT = 120.0  # seconds for the operator to run every check of the dry run once
_NAME_UNSAFE = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class Request:
    """What the user asked for."""

    environment: str
    version: str
    reason: str
    rollback: bool = False
    timeout: str | None = None


def promotion_name(environment: str, version: str) -> str:
    """`<environment>-<version>` made a valid object name (lower case, `-` for the rest)."""
    name = _NAME_UNSAFE.sub("-", f"{environment}-{version}".lower()).strip("-")
    return name[:200].rstrip("-")


def manifest(namespace: str, name: str, request: Request, *, dry_run: bool) -> Object:
    """The Promotion object for a request."""
    spec: dict[str, Any] = {
        "environment": request.environment,
        "version": request.version,
        "reason": request.reason,
    }
    if dry_run:
        spec["dryRun"] = True
    if request.rollback:
        spec["rollback"] = True
    if request.timeout:
        spec["timeout"] = request.timeout
    return {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Promotion",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def create(kube: Kube, body: Object, requester: str | None) -> Object:
    """Create under the given name, or under a generated one when the name is taken."""
    if requester:
        body["metadata"]["annotations"] = {REQUESTED_BY_ANNOTATION: requester}
    try:
        return kube.create_promotion(body)
    except KubeError as error:
        if error.status != 409:
            raise PluginError(str(error)) from None
    meta = body["metadata"]
    meta["generateName"] = meta.pop("name")[:240] + "-"
    try:
        return kube.create_promotion(body)
    except KubeError as error:
        raise PluginError(str(error)) from None


def _checks_ran(obj: Object) -> bool:
    """Whether a dry run has run every check it can run now (it is finished, or it waits
    with its checks recorded)."""
    status = obj.get("status") or {}
    current = status.get("observedGeneration") == obj["metadata"].get("generation", 1)
    return is_current_generation_finished(obj) or (
        current and status.get("phase") == Phase.VERIFYING and bool(status.get("checks"))
    )


def dry_run(session: Session, request: Request, *, requester: str | None) -> Object:
    """Create the dry run, wait until its checks ran, show them and the diff."""
    kube = session.kube
    # The dry run keeps the operator's default timeout: it is deleted if it still waits,
    # and a short --timeout must not fail it before its checks have been shown.
    body = manifest(
        kube.namespace,
        promotion_name(request.environment, request.version)[:190] + "-dryrun",
        dataclasses.replace(request, timeout=None),
        dry_run=True,
    )
    obj = create(kube, body, requester)
    name = obj["metadata"]["name"]
    session.err.print(Text.assemble("dry run ", (name, "bold"), " created; waiting for its checks"))
    until = time.monotonic() + DRY_RUN_WAIT
    seen = obj
    try:
        if not _checks_ran(seen):
            for seen in kube.watch_promotion(name, obj["metadata"]["resourceVersion"], until=until):
                if _checks_ran(seen):
                    break
    except KeyboardInterrupt:
        kube.delete_promotion(name)  # nobody will look at it: no more work for the operator
        raise
    if not _checks_ran(seen):
        kube.delete_promotion(name)
        raise PluginError(
            f"the operator did not take up dry run {name} within {DRY_RUN_WAIT:g}s: is it "
            f"running and watching namespace {kube.namespace}?"
        )
    show_dry_run(session, seen)
    if not is_current_generation_finished(seen):
        kube.delete_promotion(name)  # still waiting: it would keep the operator busy
    return seen


def show_dry_run(session: Session, obj: Object) -> None:
    """The dry run's checks, its diff (or why there is none) and its outcome."""
    status = obj.get("status") or {}
    out = session.out
    out.print(checks_table(status.get("checks") or ()))
    phase = str(status.get("phase"))
    diff = status.get("diff")
    if diff:
        out.print("overlay diff:")
        out.print(diff_view(diff))
    if phase == Phase.VERIFYING:
        out.print(
            "some checks are still waiting; the Promotion will wait for them (or fail at "
            f"its timeout): {status.get('message') or ''}"
        )
    elif phase == Phase.FAILED:
        ready = condition(obj, "Ready")
        out.print(phase_text("Failed"), f"{ready.get('reason')}: {ready.get('message')}")


def refuse_without_terminal(*, yes: bool) -> None:
    """No terminal to ask on and no --yes: refuse before anything is created."""
    if not yes and not sys.stdin.isatty():
        raise PluginError(
            "not confirmed: no terminal to ask on; pass --yes to promote without asking",
            EXIT_NOT_CONFIRMED,
        )


def confirm(session: Session, request: Request, *, yes: bool) -> None:
    """Ask "promote? [y/N]" on the terminal, unless --yes."""
    if yes:
        return
    refuse_without_terminal(yes=yes)
    verb = "Roll back" if request.rollback else "Promote"
    if not Confirm.ask(
        f"{verb} {request.environment} to {request.version}?", default=False, console=session.err
    ):
        raise PluginError("not confirmed: nothing was promoted", EXIT_NOT_CONFIRMED)


def follow(session: Session, obj: Object) -> int:
    """Watch a Promotion until it ends; print how, return the exit code."""
    kube = session.kube
    name = obj["metadata"]["name"]
    environment = obj["spec"]["environment"]
    env = _maybe(kube, "environments", environment)
    upstream_name = (env or {}).get("spec", {}).get("upstream")
    upstream = _maybe(kube, "environments", upstream_name) if upstream_name else None
    latest = obj
    line = LiveLine(name, lambda now: progress(latest, env, upstream, now=now))
    shown: tuple[Any, ...] = ()
    try:
        with Live(line, console=session.err, refresh_per_second=2, transient=True) as live:
            for latest in kube.watch_promotion(name, obj["metadata"]["resourceVersion"]):
                state = progress(latest, env, upstream, now=dt.datetime.now(dt.UTC))
                if (state.phase, state.check) != shown:
                    shown = (state.phase, state.check)
                    live.console.print(
                        phase_text(state.phase),
                        f"check {state.check}" if state.check else "",
                        state.message,
                    )
                if state.check and state.soak_left is not None and upstream_name:
                    upstream = _maybe(kube, "environments", upstream_name)
                if is_current_generation_finished(latest):
                    break
    except KeyboardInterrupt:
        session.err.print(
            f"stopped following; the promotion goes on: kubectl get promotion {name} "
            f"-n {kube.namespace} -w"
        )
        return EXIT_INTERRUPTED
    return report(session, latest)


def report(session: Session, obj: Object) -> int:
    """The final line of a Promotion, and its exit code."""
    status = obj.get("status") or {}
    phase = str(status.get("phase") or "")
    ready = condition(obj, "Ready")
    name = obj["metadata"]["name"]
    if phase == Phase.SUCCEEDED:
        commit = status.get("shortCommit")
        session.out.print(
            phase_text(phase),
            f"{name}: {ready.get('reason')}" + (f", commit {commit}" if commit else ""),
        )
        return EXIT_OK
    if not phase:
        session.out.print(f"{name} was deleted before it finished")
        return EXIT_FAILED
    session.out.print(
        phase_text(phase), f"{name}: {ready.get('reason')}: {ready.get('message') or ''}"
    )
    return EXIT_FAILED


def _maybe(kube: Kube, plural: str, name: str) -> Object | None:
    try:
        return kube.get(plural, name)
    except KubeError:
        return None


def run(session: Session, request: Request, *, yes: bool) -> int:
    """The whole flow; returns the exit code."""
    refuse_without_terminal(yes=yes)
    requester = session.kube.whoami()
    seen = dry_run(session, request, requester=requester)
    status = seen.get("status") or {}
    if status.get("phase") == Phase.FAILED:
        session.out.print("the dry run failed: nothing was promoted")
        return EXIT_FAILED
    if status.get("phase") == Phase.SUCCEEDED and not status.get("diff"):
        session.out.print(
            f"{request.environment} already pins {request.version}: nothing to promote"
        )
        return EXIT_OK
    confirm(session, request, yes=yes)
    body = manifest(
        session.kube.namespace,
        promotion_name(request.environment, request.version),
        request,
        dry_run=False,
    )
    obj = create(session.kube, body, requester)
    session.err.print(Text.assemble("promotion ", (obj["metadata"]["name"], "bold"), " created"))
    return follow(session, obj)
