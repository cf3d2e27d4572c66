"""Pure planning helpers: commit messages and newest-wins ordering."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from promotion_operator.domain.models import Phase


class Trailer(StrEnum):
    """The git trailer keys a promotion commit carries; UID and generation prove a push."""

    PROMOTION = "Promotion"
    UID = "Promotion-UID"
    GENERATION = "Promotion-Generation"
    REQUESTED_BY = "Requested-By"
    APPROVED_BY = "Approved-By"
    WINDOW_OVERRIDE = "Window-Override"


TRAILER_KEYS = tuple(Trailer)


def identity_trailers(uid: str, generation: int) -> dict[str, str]:
    """The trailers that identify one generation of one Promotion on the remote."""
    return {Trailer.UID: uid, Trailer.GENERATION: str(generation)}


def _one_line(text: str) -> str:
    """Collapse user text to one line so it can never forge a trailer or a subject."""
    return " ".join(text.split())


def commit_message(
    *,
    namespace: str,
    name: str,
    uid: str,
    generation: int,
    environment: str,
    old: str | None,
    new: str,
    reason: str | None,
    requested_by: str,
    audit: Sequence[tuple[Trailer, str]] = (),
) -> str:
    """Return the commit message of a promotion: subject, reason, then the trailers.

    The trailers are the last paragraph (what `git interpret-trailers` reads); the UID and
    generation pair is how a restarted operator recognises its own push.
    """
    subject = f"promote {environment}: {_one_line(old or '(none)')} -> {new}"
    lines = [subject, ""]
    if reason and reason.strip():
        lines += [f"Reason: {_one_line(reason)}", ""]
    lines += [
        f"{Trailer.PROMOTION}: {namespace}/{name}",
        *(f"{key}: {value}" for key, value in identity_trailers(uid, generation).items()),
        f"{Trailer.REQUESTED_BY}: {_one_line(requested_by)}",
        *(f"{key}: {_one_line(value)}" for key, value in audit),
    ]
    return "\n".join(lines) + "\n"


def supersedes(
    other: tuple[str, str],
    mine: tuple[str, str],
    *,
    other_phase: str | None,
    other_name: str,
    my_name: str,
) -> bool:
    """Whether another Promotion of the same Environment makes mine obsolete.

    Each side is (request time, creation time). A newer request wins unless it already
    failed: a failed newer Promotion (a typo in its version, say) leaves the older intent
    standing. Ties are broken by name so that exactly one of two equal requests wins.
    """
    if other_phase == "Failed":
        return False
    if other != mine:
        return other > mine
    return other_name > my_name


# Marks of a GitOps tool that owns an object: deleting such an object would only make the
# tool re-create it (Argo CD annotation and label tracking, Flux kustomize and helm).
GITOPS_ANNOTATIONS = ("argocd.argoproj.io/tracking-id",)
GITOPS_LABELS = (
    "app.kubernetes.io/instance",
    "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/name",
)
_FINISHED_PHASES = frozenset(phase.value for phase in Phase if phase.finished)


def is_finished(obj: Mapping[str, Any]) -> bool:
    """Whether a Promotion object's current generation is finished: nothing left to do.

    A Succeeded generation whose `Deployed` condition is still Unknown is not finished:
    the operator still watches the Environment run the version.
    """
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if status.get("observedGeneration") != meta.get("generation", 1):
        return False
    return status.get("phase") in _FINISHED_PHASES and not awaits_deployment(status)


def awaits_deployment(status: Mapping[str, Any]) -> bool:
    """Whether a Promotion's status says: pushed, now waiting to see it run (Deployed
    Unknown)."""
    deployed = next(
        (c for c in status.get("conditions") or () if c.get("type") == "Deployed"), None
    )
    return (
        status.get("phase") == "Succeeded"
        and deployed is not None
        and (deployed.get("status") == "Unknown")
    )


def managed_by_gitops(obj: Mapping[str, Any]) -> bool:
    """Whether a GitOps tool tracks the object (it must then never be deleted by us)."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    return any(key in annotations for key in GITOPS_ANNOTATIONS) or any(
        key in labels for key in GITOPS_LABELS
    )


def history_to_prune(promotions: Sequence[Mapping[str, Any]], keep: int) -> list[Mapping[str, Any]]:
    """The finished Promotions of one Environment beyond the newest `keep`, oldest first.

    Only objects whose current generation is finished count; objects a GitOps tool manages
    are kept and do not use up the `keep` budget of the others.
    """
    finished: list[Mapping[str, Any]] = []
    for obj in promotions:
        meta = obj.get("metadata") or {}
        if is_finished(obj) and not meta.get("deletionTimestamp") and not managed_by_gitops(obj):
            finished.append(obj)

    def newest_first(obj: Mapping[str, Any]) -> tuple[str, str]:
        status = obj.get("status") or {}
        meta = obj.get("metadata") or {}
        return (str(status.get("finishedAt") or ""), str(meta.get("creationTimestamp") or ""))

    finished.sort(key=newest_first, reverse=True)
    return list(reversed(finished[max(keep, 0) :]))
