"""Pure planning helpers: commit messages and newest-wins ordering."""

from __future__ import annotations

TRAILER_KEYS = ("Promotion", "Promotion-UID", "Promotion-Generation", "Requested-By")


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
        f"Promotion: {namespace}/{name}",
        f"Promotion-UID: {uid}",
        f"Promotion-Generation: {generation}",
        f"Requested-By: {_one_line(requested_by)}",
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
