"""Golden folders: testdata/<case>/original.yaml + tags.json -> expected.yaml, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promotion_operator.domain.overlay import (
    ImageChange,
    read_image_tags,
    set_image_tags,
    unified_diff,
)

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(path.name for path in TESTDATA.iterdir() if path.is_dir())
FRONTEND = "registry.example.com/team/tvhub-frontend"
BACKEND = "registry.example.com/team/tvhub-backend"
OLD, NEW = "v20250812-a1b2c3d", "v20250819-f3b8541"


def load(case: str) -> tuple[str, str, dict[str, str]]:
    folder = TESTDATA / case
    # Bytes, not read_text(): universal newlines would hide CRLF.
    original = (folder / "original.yaml").read_bytes().decode("utf-8")
    expected = (folder / "expected.yaml").read_bytes().decode("utf-8")
    tags = json.loads((folder / "tags.json").read_text(encoding="utf-8"))
    return original, expected, tags


def test_every_required_case_has_a_folder() -> None:
    assert set(CASES) >= {
        "commented",
        "no-change",
        "several-images",
        "new-name",
        "digest",
        "quoted",
        "flow-style",
        "missing-entry",
        "missing-images-key",
        "document-marker",
        "crlf",
        "no-trailing-newline",
    }


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    original, expected, tags = load(case)

    edit = set_image_tags(original, tags)

    assert edit.text.encode() == expected.encode()
    assert edit.changed == (original != expected)
    assert read_image_tags(edit.text, tags) == tags


@pytest.mark.parametrize("case", CASES)
def test_golden_edit_is_idempotent(case: str) -> None:
    _, expected, tags = load(case)

    again = set_image_tags(expected, tags)

    assert again.text is expected
    assert again.changes == ()


def test_no_change_returns_the_same_string() -> None:
    original, _, tags = load("no-change")

    edit = set_image_tags(original, tags)

    assert edit.text is original
    assert edit.changes == ()
    assert not edit.changed


def test_commented_changes() -> None:
    original, _, tags = load("commented")

    edit = set_image_tags(original, tags)

    assert edit.changes == (
        ImageChange(FRONTEND, OLD, NEW, added=False),
        ImageChange(BACKEND, f"{OLD}#not-a-comment", NEW, added=False),
    )


def test_several_images_reports_only_real_changes() -> None:
    original, _, _ = load("several-images")

    edit = set_image_tags(original, {FRONTEND: NEW, "docker.io/library/redis": "7.2"})

    assert edit.changes == (ImageChange(FRONTEND, OLD, NEW, added=False),)


def test_missing_entries_are_reported_as_added() -> None:
    original, _, tags = load("missing-images-key")

    edit = set_image_tags(original, tags)

    assert edit.changes == (
        ImageChange(FRONTEND, None, NEW, added=True),
        ImageChange(BACKEND, None, NEW, added=True),
    )


def test_digest_entry_counts_as_a_change_even_at_the_same_tag() -> None:
    text = f"images:\n- name: {FRONTEND}\n  newTag: {NEW}\n  digest: sha256:abcd\n"

    edit = set_image_tags(text, {FRONTEND: NEW})

    assert edit.text == f"images:\n- name: {FRONTEND}\n  newTag: {NEW}\n"
    assert edit.changes == (ImageChange(FRONTEND, NEW, NEW, added=False),)


def test_digest_changes() -> None:
    original, _, tags = load("digest")

    edit = set_image_tags(original, tags)

    assert [(c.image.rsplit("/", 1)[1], c.old_tag, c.added) for c in edit.changes] == [
        ("tvhub-frontend", OLD, False),
        ("tvhub-backend", None, False),
        ("tvhub-worker", OLD, False),
        ("tvhub-cron", OLD, False),
    ]


def test_number_like_tag_is_read_as_written() -> None:
    text = "images:\n- name: app\n  newTag: 1.20\n- name: db\n  newTag:\n"

    assert read_image_tags(text, ["app", "db", "cache"]) == {
        "app": "1.20",
        "db": None,
        "cache": None,
    }
    assert set_image_tags(text, {"app": "1.20"}).changes == ()


def test_empty_new_tag_gets_a_value() -> None:
    text = "images:\n- name: app\n  newTag:   # set by CI\n"

    edit = set_image_tags(text, {"app": NEW})

    assert edit.text == f"images:\n- name: app\n  newTag: {NEW}   # set by CI\n"
    assert edit.changes == (ImageChange("app", None, NEW, added=False),)


def test_entry_without_new_tag_gets_one() -> None:
    text = "images:\n- name: app  # web\n  newName: mirror/app\nresources:\n- a.yaml\n"

    edit = set_image_tags(text, {"app": NEW})

    assert edit.text == (
        f"images:\n- name: app  # web\n  newName: mirror/app\n  newTag: {NEW}\nresources:\n"
        "- a.yaml\n"
    )


@pytest.mark.parametrize("empty", ["images:", "images: ~", "images: []"])
def test_empty_images_list_gets_the_entry(empty: str) -> None:
    text = f"kind: Kustomization\n{empty}\nresources:\n  - a.yaml\n"

    edit = set_image_tags(text, {"app": NEW})

    assert read_image_tags(edit.text, ["app"]) == {"app": NEW}
    if empty == "images: []":
        assert edit.text == f"kind: Kustomization\nimages: [{{name: app, newTag: {NEW}}}]\n" + (
            "resources:\n  - a.yaml\n"
        )
    else:
        assert edit.text == (
            f"kind: Kustomization\nimages:\n  - name: app\n    newTag: {NEW}\nresources:\n"
            "  - a.yaml\n"
        )


@pytest.mark.parametrize(
    ("tag", "written"),
    [
        (NEW, NEW),
        ("1.3", '"1.3"'),
        ("yes", '"yes"'),
        ("null", '"null"'),
        ("1e5", '"1e5"'),
        ("0x1F", '"0x1F"'),
        ("2025-08-19", '"2025-08-19"'),
        ("latest", "latest"),
    ],
)
def test_plain_tag_is_quoted_only_when_it_would_not_read_back_as_a_string(
    tag: str, written: str
) -> None:
    text = "images:\n- name: app\n  newTag: v1\n"

    edit = set_image_tags(text, {"app": tag})

    assert edit.text == f"images:\n- name: app\n  newTag: {written}\n"
    assert read_image_tags(edit.text, ["app"]) == {"app": tag}


def test_unified_diff_is_git_style() -> None:
    original, expected, _ = load("several-images")

    diff = unified_diff("k8s/overlays/prod/kustomization.yaml", original, expected)

    assert diff == (
        "--- a/k8s/overlays/prod/kustomization.yaml\n"
        "+++ b/k8s/overlays/prod/kustomization.yaml\n"
        "@@ -4,10 +4,10 @@\n"
        " - ../../base\n"
        " images:\n"
        " - name: registry.example.com/team/tvhub-frontend\n"
        f"-  newTag: {OLD}\n"
        f"+  newTag: {NEW}\n"
        " - name: registry.example.com/team/tvhub-worker\n"
        "   newTag: v20240101-0000000\n"
        " - name: registry.example.com/team/tvhub-backend\n"
        f"-  newTag: {OLD}\n"
        f"+  newTag: {NEW}\n"
        " - name: docker.io/library/redis\n"
        '   newTag: "7.2"\n'
    )


def test_unified_diff_marks_a_missing_final_newline() -> None:
    original, expected, _ = load("no-trailing-newline")

    diff = unified_diff("kustomization.yaml", original, expected)

    assert diff.endswith(
        f"-  newTag: {OLD}\n"
        "\\ No newline at end of file\n"
        f"+  newTag: {NEW}\n"
        f"+- name: {BACKEND}\n"
        f"+  newTag: {NEW}\n"
        "\\ No newline at end of file\n"
    )


def test_unified_diff_of_equal_texts_is_empty() -> None:
    assert unified_diff("kustomization.yaml", "a: 1\n", "a: 1\n") == ""


def test_new_tag_line_comes_before_appended_entries() -> None:
    text = "images:\n- name: app\n  newName: mirror/app  # mirror\n"

    edit = set_image_tags(text, {"app": NEW, "db": NEW})

    assert edit.text == (
        f"images:\n- name: app\n  newName: mirror/app  # mirror\n  newTag: {NEW}\n"
        f"- name: db\n  newTag: {NEW}\n"
    )
    assert edit.changes == (
        ImageChange("app", None, NEW, added=False),
        ImageChange("db", None, NEW, added=True),
    )


def test_trailing_empty_document_is_ignored() -> None:
    text = "kind: Kustomization\n# end\n---\n"

    edit = set_image_tags(text, {"app": NEW})

    assert edit.text == f"kind: Kustomization\nimages:\n- name: app\n  newTag: {NEW}\n# end\n---\n"
