"""Hostile overlays: a tenant controls the text the editor reads under the repository lock.

Each attack must end as `PermanentError(INVALID_OVERLAY)` (or a correct edit) at once:
never exponential work, never an exception the lifecycle does not know.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promotion_operator.domain.errors import PermanentError, PromotionError, Reason
from promotion_operator.domain.overlay import (
    MAX_NESTING,
    MAX_OVERLAY_BYTES,
    read_image_tags,
    set_image_tags,
)
from support.fuzz import fuzz

APP = "registry.example.com/team/app"
VALID = f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization  # prod
resources:
  - ../../base
images:
  - name: {APP}
    newTag: v1
  - {{name: docker.io/library/redis, newTag: '7'}}
"""


def alias_bomb(levels: int, fan_out: int = 3) -> str:
    """Each anchor lists the previous one `fan_out` times: fan_out**levels paths, few bytes."""
    lines = ["l0: &l0 [x]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level}")
        lines += [f"  - *l{level - 1}"] * fan_out
    return "\n".join(lines) + "\nkind: Kustomization\n"


def test_alias_bomb_is_edited_in_linear_time() -> None:
    # 3**25 paths through the aliases: the old walk would not end within the test timeout.
    text = alias_bomb(25)
    assert len(text) < 1000

    edit = set_image_tags(text, {APP: "v2"})

    assert edit.text.startswith(text)
    assert read_image_tags(edit.text, [APP]) == {APP: "v2"}


def test_alias_bomb_inside_images_is_linear_too() -> None:
    text = alias_bomb(25) + f"images:\n- name: {APP}\n  newTag: v1\n  extra: *l25\n"

    edit = set_image_tags(text, {"registry.example.com/team/worker": "v2"})

    assert read_image_tags(edit.text, [APP, "registry.example.com/team/worker"]) == {
        APP: "v1",
        "registry.example.com/team/worker": "v2",
    }


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: " + "[" * 3000 + "]" * 3000 + "\n", id="flow-3000-deep"),
        pytest.param("a: " + "{b: " * 3000 + "}" * 3000 + "\n", id="flow-mappings-3000-deep"),
        pytest.param("".join(" " * i + f"k{i}:\n" for i in range(1000)), id="block-1000-deep"),
        pytest.param(
            "".join(" " * i + "- \n" for i in range(300)) + "images: []\n", id="block-lists"
        ),
    ],
)
def test_deep_nesting_is_refused_not_a_recursion_error(text: str) -> None:
    with pytest.raises(PermanentError) as caught:
        set_image_tags(text, {APP: "v2"})

    assert caught.value.reason is Reason.INVALID_OVERLAY
    assert f"nested more than {MAX_NESTING} levels deep" in caught.value.message
    assert "line " in caught.value.message


def test_nesting_up_to_the_limit_is_edited() -> None:
    # root mapping > `patches` mapping > levels mappings > scalar: exactly MAX_NESTING nodes
    levels = MAX_NESTING - 3
    nested = "".join("  " * (i + 1) + f"k{i}:\n" for i in range(levels))
    text = VALID + "patches:\n" + nested + "  " * (levels + 1) + "x: 1\n"

    assert set_image_tags(text, {APP: "v2"}).changed
    with pytest.raises(PermanentError, match="nested more than"):
        set_image_tags(text.replace("x: 1", "x: [1]"), {APP: "v2"})


def test_oversized_overlay_is_refused_before_parsing() -> None:
    text = VALID + "# padding\n" * (MAX_OVERLAY_BYTES // 10)

    with pytest.raises(PermanentError) as caught:
        set_image_tags(text, {APP: "v2"})

    assert caught.value.reason is Reason.INVALID_OVERLAY
    assert f"more than the {MAX_OVERLAY_BYTES}" in caught.value.message
    with pytest.raises(PermanentError):
        read_image_tags(text, [APP])


def test_redefined_anchor_is_allowed_as_in_yaml() -> None:
    text = "a: &x 1\nb: &x 2\nc: *x\n" + VALID

    assert read_image_tags(text, [APP]) == {APP: "v1"}


# -- fuzzing ---------------------------------------------------------------------------

YAML_BITS = st.sampled_from(
    [
        "\n", "\r\n", " ", "  ", "\t", "-", "- ", ":", ": ", "?", "? ", ",", "[", "]", "{", "}",
        "#", "&a", "&b ", "*a", "*b", "!!str ", "!x ", "|", ">", "'", '"', "\\", "%YAML 1.2\n",
        "---\n", "...\n", "images:", "name:", "newTag:", "digest:", "newName:", APP, "v1",
        "null", "~", "<<: ", "\ufeff", "\x00", "\u2028", "é",
    ]
)  # fmt: skip


@st.composite
def mutated_overlays(draw: st.DrawFn) -> str:
    """A valid overlay with random YAML syntax spliced in, cut out or repeated."""
    text = VALID * draw(st.integers(1, 3))
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "repeat"]))
        if kind == "insert":
            text = text[:at] + "".join(draw(st.lists(YAML_BITS, max_size=6))) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        else:
            line_start = text.rfind("\n", 0, at) + 1
            line_end = text.find("\n", at) + 1 or len(text)
            text = (
                text[:line_end]
                + text[line_start:line_end] * draw(st.integers(1, 4))
                + text[line_end:]
            )
    return text


TAGS = st.dictionaries(
    st.sampled_from([APP, "docker.io/library/redis", "ghcr.io/org/new"]),
    st.sampled_from(["v2", "1.20", "yes", "x'y", 'a"b', "v1"]),
    min_size=1,
)


def edit_or_promotion_error(text: str, tags: dict[str, str], add_missing: bool) -> None:
    try:
        edit = set_image_tags(text, tags, add_missing=add_missing)
    except PromotionError as error:
        assert error.reason in (Reason.INVALID_OVERLAY, Reason.IMAGE_NOT_IN_OVERLAY)
        assert error.message
        return
    assert read_image_tags(edit.text, tags) == tags


@pytest.mark.fuzz
@fuzz
@given(mutated_overlays(), TAGS, st.booleans())
def test_fuzz_mutated_overlays(text: str, tags: dict[str, str], add_missing: bool) -> None:
    edit_or_promotion_error(text, tags, add_missing)


@pytest.mark.fuzz
@fuzz
@given(st.lists(YAML_BITS, max_size=80).map("".join), TAGS, st.booleans())
def test_fuzz_yaml_soup(text: str, tags: dict[str, str], add_missing: bool) -> None:
    edit_or_promotion_error(text, tags, add_missing)
