"""The pure parts of the real-Argo CD sandbox: CI's overlay bump and the "done" gate."""

from __future__ import annotations

from typing import Any

import pytest

from promotion_sandbox.gitops_world import pin_tags, runs
from promotion_sandbox.world import NEW_VERSION, OLD_VERSION, overlay

REGISTRY = "127.0.0.1:5000"
FRONTEND = f"{REGISTRY}/team/tvhub-frontend"
BACKEND = f"{REGISTRY}/team/tvhub-backend"
SHA = "a" * 40


def test_pin_tags_moves_only_the_named_image() -> None:
    before = overlay(REGISTRY, OLD_VERSION, "dev")
    after = pin_tags(before, {FRONTEND: NEW_VERSION})
    assert f"- name: {FRONTEND}\n    newTag: {NEW_VERSION}" in after
    assert f"- name: {BACKEND}\n    newTag: {OLD_VERSION}" in after
    assert after.replace(NEW_VERSION, OLD_VERSION) == before


def test_pin_tags_refuses_an_image_the_overlay_does_not_pin() -> None:
    with pytest.raises(ValueError, match="pinned 0 times"):
        pin_tags(overlay(REGISTRY, OLD_VERSION, "dev"), {f"{REGISTRY}/team/other": NEW_VERSION})


def app(images: list[str], **changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "sync": {"status": "Synced", "revision": SHA},
        "health": {"status": "Healthy"},
        "operationState": {"phase": "Succeeded", "syncResult": {"revision": SHA}},
        "summary": {"images": images},
    }
    status.update(changes)
    return {"status": status}


def test_runs_needs_every_image_at_its_tag_only() -> None:
    tags = {FRONTEND: NEW_VERSION, BACKEND: NEW_VERSION}
    done = [f"{FRONTEND}:{NEW_VERSION}", f"{BACKEND}:{NEW_VERSION}"]
    assert runs(app(done), SHA, tags)
    # mid-rollout Argo CD lists the old and the new tag together
    assert not runs(app([*done, f"{BACKEND}:{OLD_VERSION}"]), SHA, tags)
    assert not runs(app(done[:1]), SHA, tags)


@pytest.mark.parametrize(
    "changes",
    [
        {"sync": {"status": "OutOfSync", "revision": SHA}},
        {"sync": {"status": "Synced", "revision": "b" * 40}},
        {"health": {"status": "Progressing"}},
        {"operationState": {"phase": "Running", "syncResult": {"revision": SHA}}},
        {"operationState": {"phase": "Succeeded", "syncResult": {"revision": "b" * 40}}},
    ],
)
def test_runs_is_false_until_argocd_is_done_with_the_revision(changes: dict[str, Any]) -> None:
    images = [f"{FRONTEND}:{NEW_VERSION}"]
    assert not runs(app(images, **changes), SHA, {FRONTEND: NEW_VERSION})


def test_runs_reads_the_revisions_of_an_application_with_several_sources() -> None:
    images = [f"{FRONTEND}:{NEW_VERSION}"]
    several = {
        "sync": {"status": "Synced", "revisions": [SHA, SHA]},
        "operationState": {"phase": "Succeeded", "syncResult": {"revisions": [SHA, SHA]}},
    }
    assert runs(app(images, **several), SHA, {FRONTEND: NEW_VERSION})
    several["sync"] = {"status": "Synced", "revisions": [SHA, "b" * 40]}
    assert not runs(app(images, **several), SHA, {FRONTEND: NEW_VERSION})
