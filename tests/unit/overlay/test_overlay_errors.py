"""Overlays the editor refuses: each error names the reason and what to fix."""

from __future__ import annotations

import pytest

from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.overlay import read_image_tags, set_image_tags

APP = "registry.example.com/team/app"


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        pytest.param(
            "images:\n- name: app\n  newTag: [v1\n",
            ["line 4", "starts at line 3", "not valid YAML"],
            id="invalid-yaml",
        ),
        pytest.param("kind: Kustomization\n\tbad: tab\n", ["not valid YAML"], id="tab-indent"),
        pytest.param("", ["empty", "mapping"], id="empty-file"),
        pytest.param("# only a comment\n", ["empty", "mapping"], id="only-comments"),
        pytest.param("- name: app\n", ["line 1", "must be a mapping"], id="top-level-list"),
        pytest.param(
            "kind: Kustomization\nimages:\n  name: app\n  newTag: v1\n",
            ["line 3", "`images` must be a list of {name, newTag} entries"],
            id="images-not-a-list",
        ),
        pytest.param(
            "kind: Kustomization\nimages: app\n",
            ["line 2", "`images` must be a list"],
            id="images-a-string",
        ),
        pytest.param(
            "images:\n- name: other\n  newTag: v1\n- app:v1\n",
            ["line 4", "`images` must be a list of {name, newTag} entries"],
            id="entry-not-a-mapping",
        ),
        pytest.param(
            "images:\n- name: other\n- newName: app\n  newTag: v1\n",
            ["line 3", "no `name`"],
            id="entry-without-name",
        ),
        pytest.param(
            "images:\n- name:\n  newTag: v1\n", ["line 2", "no `name`"], id="entry-with-empty-name"
        ),
        pytest.param(
            "kind: Kustomization\n---\nkind: Kustomization\n",
            ["line 3", "2 YAML documents", "`---`"],
            id="several-documents",
        ),
        pytest.param(
            f"images:\n- name: {APP}\n  newTag: v1\n- name: {APP}\n  newTag: v2\n",
            ["lines 2 and 4", "listed twice"],
            id="image-listed-twice",
        ),
        pytest.param(
            f"images:\n- name: {APP}\n  newTag: v1\n  newTag: v2\n",
            ["line 4", "`newTag` appears twice"],
            id="duplicate-key",
        ),
        pytest.param(
            f"images:\n- name: {APP}\n  newTag: [v1]\n",
            ["line 3", "`newTag` must be"],
            id="tag-list",
        ),
    ],
)
def test_invalid_overlay(text: str, needles: list[str]) -> None:
    with pytest.raises(PermanentError) as caught:
        set_image_tags(text, {APP: "v2"})

    assert caught.value.reason is Reason.INVALID_OVERLAY
    assert not caught.value.retryable
    for needle in needles:
        assert needle in caught.value.message
    with pytest.raises(PermanentError):
        read_image_tags(text, [APP])


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param(f"x: &t v1\nimages:\n- name: {APP}\n  newTag: *t\n", "alias", id="alias"),
        pytest.param(f"images:\n- name: {APP}\n  newTag: &t v1\n", "anchor", id="anchor"),
        pytest.param(f"images:\n- name: {APP}\n  newTag: !!str 1\n", "tag", id="explicit-tag"),
        pytest.param(f"images:\n- name: {APP}\n  newTag: |\n    v1\n", "block", id="block"),
    ],
)
def test_tag_written_in_a_way_that_cannot_be_spliced(text: str, needle: str) -> None:
    with pytest.raises(PermanentError) as caught:
        set_image_tags(text, {APP: "v2"})

    assert caught.value.reason is Reason.INVALID_OVERLAY
    assert needle in caught.value.message
    assert "line" in caught.value.message


def test_missing_image_without_add_missing() -> None:
    text = "images:\n- name: registry.example.com/team/other\n  newTag: v1\n"

    with pytest.raises(PermanentError) as caught:
        set_image_tags(text, {APP: "v2"}, add_missing=False)

    assert caught.value.reason is Reason.IMAGE_NOT_IN_OVERLAY
    assert APP in caught.value.message
    assert "add `- name: <image>`" in caught.value.message


def test_add_missing_false_still_edits_present_images() -> None:
    text = f"images:\n- name: {APP}\n  newTag: v1\n"

    assert set_image_tags(text, {APP: "v2"}, add_missing=False).text == text.replace("v1", "v2")


def test_flow_root_cannot_get_an_images_key() -> None:
    with pytest.raises(PermanentError) as caught:
        set_image_tags("{kind: Kustomization}\n", {APP: "v2"})

    assert caught.value.reason is Reason.INVALID_OVERLAY
    assert "flow mapping" in caught.value.message
