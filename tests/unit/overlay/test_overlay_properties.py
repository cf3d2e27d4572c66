"""Property tests: random but valid kustomization texts, edited and compared line by line."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from promotion_operator.domain.overlay import read_image_tags, set_image_tags

POOL = (
    "registry.example.com/team/frontend",
    "registry.example.com/team/backend",
    "docker.io/library/redis",
    "ghcr.io/org/worker",
)
TAGS = st.from_regex(r"v[0-9]{8}-[0-9a-f]{7}", fullmatch=True)
QUOTES = st.sampled_from(["", "'", '"'])
COMMENT_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " :#'\"-{}[],&*!|>%@`")
SLOT = "\x00"
NEW_ENTRY_LINE = re.compile(r" *(images:|-? *name: \S+|newTag: \S+|- \{name: \S+, newTag: \S+\})")
INLINE_COMMENTS = st.one_of(st.just(""), COMMENT_TEXT.map(lambda text: "  # " + text))


@dataclass
class Kustomization:
    """A generated text plus where each image's newTag line is and how it is written."""

    lines: list[str] = field(default_factory=list)
    # image -> (line index, line template with SLOT where the tag goes)
    tag_lines: dict[str, tuple[int, str]] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)
    eol: str = "\n"
    final_newline: bool = True

    @property
    def text(self) -> str:
        return self.eol.join(self.lines) + (self.eol if self.final_newline else "")


@st.composite
def filler(draw: st.DrawFn, indent: str) -> list[str]:
    """Blank lines and whole-line comments, as people sprinkle them."""
    kinds = draw(st.lists(st.sampled_from(["blank", "comment"]), max_size=2))
    return ["" if kind == "blank" else f"{indent}# {draw(COMMENT_TEXT)}" for kind in kinds]


@st.composite
def kustomizations(draw: st.DrawFn) -> Kustomization:
    doc = Kustomization(
        eol=draw(st.sampled_from(["\n", "\r\n"])), final_newline=draw(st.booleans())
    )
    dash = " " * draw(st.sampled_from([0, 2, 4]))
    gap = " " * draw(st.sampled_from([1, 3]))
    keys = dash + " " * (1 + len(gap))
    if draw(st.booleans()):
        doc.lines.append("---")
    doc.lines += draw(filler(""))

    def images_section() -> None:
        doc.lines.append("images:" + draw(INLINE_COMMENTS))
        for image in draw(st.lists(st.sampled_from(POOL), unique=True, max_size=len(POOL))):
            doc.lines += draw(filler(dash))
            tag = doc.current[image] = draw(TAGS)
            name_q, tag_q = draw(QUOTES), draw(QUOTES)
            pairs = {"name": f"{name_q}{image}{name_q}", "newTag": f"{tag_q}{SLOT}{tag_q}"}
            if draw(st.booleans()):
                pairs["newName"] = f"mirror.example.com/{image.rsplit('/', 1)[1]}"
            order = draw(st.permutations(list(pairs)))
            if draw(st.booleans()):  # flow style: one line
                body = ", ".join(f"{key}: {pairs[key]}" for key in order)
                template = f"{dash}- {{{body}}}{draw(INLINE_COMMENTS)}"
                doc.tag_lines[image] = (len(doc.lines), template)
                doc.lines.append(template.replace(SLOT, tag))
                continue
            for position, key in enumerate(order):
                if position:
                    doc.lines += draw(filler(keys))
                lead = f"{dash}-{gap}" if position == 0 else keys
                template = f"{lead}{key}: {pairs[key]}{draw(INLINE_COMMENTS)}"
                if key == "newTag":
                    doc.tag_lines[image] = (len(doc.lines), template)
                doc.lines.append(template.replace(SLOT, tag) if key == "newTag" else template)

    sections = {
        "apiVersion": lambda: doc.lines.append("apiVersion: kustomize.config.k8s.io/v1beta1"),
        "kind": lambda: doc.lines.append("kind: Kustomization" + draw(INLINE_COMMENTS)),
        "resources": lambda: doc.lines.extend(["resources:", f"{dash}- ../../base"]),
        "namePrefix": lambda: doc.lines.append("namePrefix: 'prod-'"),
        "images": images_section,
    }
    chosen = [name for name in sections if name == "kind" or draw(st.booleans())]
    for name in draw(st.permutations(chosen)):
        sections[name]()
        doc.lines += draw(filler(""))
    return doc


@st.composite
def requests(draw: st.DrawFn, doc: Kustomization) -> dict[str, str]:
    """Some images (present or not), each to a new tag or the tag it already has."""
    tags: dict[str, str] = {}
    for image in POOL:
        choice = draw(st.sampled_from(["skip", "new", "same"]))
        if choice == "same" and image in doc.current:
            tags[image] = doc.current[image]
        elif choice != "skip":
            tags[image] = draw(TAGS)
    return tags


@st.composite
def cases(draw: st.DrawFn) -> tuple[Kustomization, dict[str, str]]:
    doc = draw(kustomizations())
    return doc, draw(requests(doc))


def lines_of(text: str) -> list[str]:
    return re.split(r"\r?\n", text)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_edit_reads_back_and_touches_only_tag_lines(
    case: tuple[Kustomization, dict[str, str]],
) -> None:
    doc, tags = case
    original = doc.text

    edit = set_image_tags(original, tags)

    # (1) the requested tags read back
    assert read_image_tags(edit.text, tags) == tags
    assert {c.image for c in edit.changes} == {
        i for i, t in tags.items() if doc.current.get(i) != t
    }
    assert {c.image for c in edit.changes if c.added} == set(tags) - set(doc.current)
    # (2) outside the changed newTag lines nothing moves: the original lines, with only those
    # lines rewritten in their own quoting, reappear around one block of appended lines.
    expected = list(doc.lines)
    for change in edit.changes:
        if not change.added:
            index, template = doc.tag_lines[change.image]
            assert change.old_tag == doc.current[change.image]
            expected[index] = template.replace(SLOT, change.new_tag)
    # A one-line text without a final newline shows no line ending: the editor uses "\n".
    eol = doc.eol if "\n" in original else "\n"
    new_lines = edit.text.split(eol)[:-1] if doc.final_newline else edit.text.split(eol)
    inserted = len(new_lines) - len(expected)
    added = [c.image for c in edit.changes if c.added]
    assert (inserted > 0) == bool(added)
    split = next(
        (
            k
            for k in range(len(expected) + 1)
            if new_lines[:k] + new_lines[k + inserted :] == expected
        ),
        None,
    )
    assert split is not None, "lines outside the edited tags changed"
    block = new_lines[split : split + inserted]
    assert all(NEW_ENTRY_LINE.fullmatch(line) for line in block), block
    assert [image for image in added if any(image in line for line in block)] == added
    assert edit.text.endswith("\n") == original.endswith("\n")
    assert edit.text.count("\n") == edit.text.count(eol)
    # (3) editing again is a no-op
    again = set_image_tags(edit.text, tags)
    assert again.changes == ()
    assert again.text is edit.text
