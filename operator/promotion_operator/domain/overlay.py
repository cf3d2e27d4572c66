"""Edit the `images:` of a Kustomize overlay, byte for byte everywhere else.

The overlay is plain text owned by people: comments, quoting, indentation and line endings
must survive a promotion untouched, so a diff shows only the tags that moved. ruamel.yaml
only *locates* things here (its composer gives every node's exact character span); the new
values are spliced into the original text and the document is never re-dumped. Every edit
is re-read before it is returned, so a file this module cannot edit safely is an error, not
a silently wrong commit.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

from promotion_operator.domain.errors import PermanentError, Reason

__all__ = ["ImageChange", "OverlayEdit", "read_image_tags", "set_image_tags", "unified_diff"]

_FILE = "kustomization.yaml"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
# Kustomize reads YAML with a 1.2-ish parser, but people and older tools still read 1.1
# (`yes`, `on`, `1:20`); a plain value must be a string under both.
_RESOLVERS = (VersionedResolver(version=(1, 1)), VersionedResolver(version=(1, 2)))
_PLAIN_SAFE = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./:@+-]*")
_ENTRY_HINT = "`images` must be a list of {name, newTag} entries"
# An overlay is a short file people write. Far larger or deeper input is an attack or an
# accident, and it must end as INVALID_OVERLAY, not as seconds of work under the
# repository lock or a RecursionError (ruamel composes nodes recursively).
MAX_OVERLAY_BYTES = 1 << 20
MAX_NESTING = 64

# (start, end, replacement) over the original text.
_Splice = tuple[int, int, str]


@dataclass(frozen=True)
class ImageChange:
    """One image whose tag the edit moves.

    `old_tag` is the entry's previous `newTag` (None when it had none or did not exist);
    `added` is True when a new `images:` entry was appended for it.
    """

    image: str
    old_tag: str | None
    new_tag: str
    added: bool


@dataclass(frozen=True)
class OverlayEdit:
    """The edited overlay text and the real changes it holds (empty: nothing to change)."""

    text: str
    changes: tuple[ImageChange, ...]

    @property
    def changed(self) -> bool:
        """True when the edit changes at least one image."""
        return bool(self.changes)


def set_image_tags(text: str, tags: Mapping[str, str], *, add_missing: bool = True) -> OverlayEdit:
    """Set `newTag` of each image in `tags` ({image name: tag}) in a kustomization text.

    An entry matches an image by its `name` (`newName` is left alone). An entry that pins a
    `digest` loses it, because the digest would override the tag: such an entry always
    counts as a change, even when its `newTag` already equals the tag. Images without an
    entry are appended to `images:` (created at the end of the file if absent) in the
    file's own indentation style, or raise `IMAGE_NOT_IN_OVERLAY` when `add_missing` is
    False. Returns the edit; when nothing changes its text is `text` itself.

    Raises `PermanentError(INVALID_OVERLAY)` when the text is not a single YAML mapping with
    a well-formed `images:` list, or cannot be edited without rewriting other bytes.
    """
    overlay = _Overlay.parse(text)
    eol = _line_ending(text)
    changes: list[ImageChange] = []
    splices: list[_Splice] = []
    missing: dict[str, str] = {}
    for image, tag in tags.items():
        entry = overlay.entry(image)
        if entry is None:
            missing[image] = tag
            continue
        old_tag = entry.tag()
        if old_tag == tag and "digest" not in entry.pairs:
            continue
        changes.append(ImageChange(image, old_tag, tag, added=False))
        splices.extend(_entry_splices(text, entry, tag, eol))
    if missing and not add_missing:
        names = ", ".join(missing)
        raise PermanentError(
            Reason.IMAGE_NOT_IN_OVERLAY,
            f"{_FILE} has no `images` entry named {names}; add `- name: <image>` under "
            "`images:` in the overlay, or remove the image from the Environment's spec.images",
        )
    if missing:
        changes.extend(ImageChange(image, None, tag, added=True) for image, tag in missing.items())
        splices.extend(_append_splices(overlay, missing, eol))
    if not changes:
        return OverlayEdit(text, ())
    new_text = _apply(text, splices)
    _verify(new_text, tags)
    return OverlayEdit(new_text, tuple(changes))


def read_image_tags(text: str, images: Iterable[str]) -> dict[str, str | None]:
    """Return the current `newTag` of each image (None when it has no entry or no newTag).

    A `newTag` written as a number (`newTag: 1.20`) is read as the string written. Raises
    `PermanentError(INVALID_OVERLAY)` like `set_image_tags`.
    """
    overlay = _Overlay.parse(text)
    result: dict[str, str | None] = {}
    for image in images:
        entry = overlay.entry(image)
        result[image] = None if entry is None else entry.tag()
    return result


def unified_diff(path: str, old: str, new: str) -> str:
    """Return a git-style unified diff (`--- a/<path>`, `+++ b/<path>`) of two texts.

    Empty when the texts are equal. Like git, a last line without a newline is marked
    `\\ No newline at end of file`, and a carriage return stays part of its line.
    """
    if old == new:
        return ""
    out: list[str] = []
    diff = difflib.unified_diff(
        _split_keep_newline(old), _split_keep_newline(new), f"a/{path}", f"b/{path}"
    )
    for line in diff:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


@dataclass(frozen=True)
class _Entry:
    """One `images:` entry: its mapping node and its pairs by key."""

    node: MappingNode
    pairs: dict[str, tuple[Node, Node]]

    def tag(self) -> str | None:
        pair = self.pairs.get("newTag")
        if pair is None or _is_null(pair[1]):
            return None
        return str(pair[1].value)


@dataclass(frozen=True)
class _Overlay:
    """Where things are in one kustomization text."""

    text: str
    root: MappingNode
    images_pair: tuple[Node, Node] | None
    images: SequenceNode | None  # None when `images:` is absent or empty
    entries: tuple[_Entry, ...]

    @classmethod
    def parse(cls, text: str) -> _Overlay:
        # one promotion reads the same text several times (its version, the edit, the
        # rollback rule), some of it under the repository's lock: a small text is parsed once
        if len(text) <= _REMEMBERED_CHARS:
            return _remembered_parse(text)
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> _Overlay:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_OVERLAY_BYTES:
            raise PermanentError(
                Reason.INVALID_OVERLAY,
                f"{_FILE} is {size} bytes, more than the {MAX_OVERLAY_BYTES} an overlay may "
                "have; keep generated content out of the overlay the operator edits",
            )
        yaml = YAML(typ="rt")
        yaml.Composer = _BoundedComposer
        try:
            # A stray `---` at the end yields an empty document that Kustomize ignores too.
            documents = [doc for doc in yaml.compose_all(text) if not _is_empty(doc)]
        except YAMLError as exc:
            raise PermanentError(Reason.INVALID_OVERLAY, _yaml_error_message(exc)) from exc
        if not documents:
            raise PermanentError(
                Reason.INVALID_OVERLAY,
                f"{_FILE} is empty; it must be a mapping (kind: Kustomization, resources, ...)",
            )
        if len(documents) > 1:
            raise PermanentError(
                Reason.INVALID_OVERLAY,
                f"{_at(documents[1])}: the file holds {len(documents)} YAML documents; "
                "keep only the Kustomization (remove the extra `---` sections)",
            )
        root = documents[0]
        if not isinstance(root, MappingNode):
            raise PermanentError(
                Reason.INVALID_OVERLAY,
                f"{_at(root)}: {_FILE} must be a mapping (kind: Kustomization, resources, ...)",
            )
        images_pair = _pairs(root).get("images")
        images: SequenceNode | None = None
        if images_pair is not None and not _is_null(images_pair[1]):
            if not isinstance(images_pair[1], SequenceNode):
                raise PermanentError(
                    Reason.INVALID_OVERLAY, f"{_at(images_pair[1])}: {_ENTRY_HINT}"
                )
            images = images_pair[1]
        entries = tuple(_parse_entry(item) for item in images.value) if images else ()
        return cls(text, root, images_pair, images, entries)

    def entry(self, image: str) -> _Entry | None:
        found = [entry for entry in self.entries if entry.pairs["name"][1].value == image]
        if len(found) > 1:
            lines = " and ".join(str(entry.node.start_mark.line + 1) for entry in found)
            raise PermanentError(
                Reason.INVALID_OVERLAY,
                f"{_FILE} lines {lines}: image {image} is listed twice under `images`; "
                "keep one entry",
            )
        return found[0] if found else None


# The parses kept: the 32 newest texts of at most this many characters (typical overlays
# have a few hundred). A parse holds about 50 bytes per character, so whatever tenants
# write the cache stays under 7 MiB.
_REMEMBERED_CHARS = 4096


@functools.lru_cache(maxsize=32)
def _remembered_parse(text: str) -> _Overlay:
    return _Overlay._parse(text)


class _BoundedComposer(Composer):
    """ruamel's composer, refusing nesting deeper than MAX_NESTING before it recurses."""

    def __init__(self, loader: object = None) -> None:
        super().__init__(loader)
        self._nesting = 0
        # YAML allows an anchor to be redefined; a warning would only be noise in the logs.
        self.warn_double_anchors = False

    def compose_node(self, parent: Node | None, index: object) -> Node:
        self._nesting += 1
        try:
            if self._nesting > MAX_NESTING:
                mark = self.parser.peek_event().start_mark
                raise PermanentError(
                    Reason.INVALID_OVERLAY,
                    f"{_FILE} line {mark.line + 1}: nested more than {MAX_NESTING} levels "
                    "deep; a kustomization needs only a few levels",
                )
            node: Node = super().compose_node(parent, index)
            return node
        finally:
            self._nesting -= 1


def _parse_entry(node: Node) -> _Entry:
    if not isinstance(node, MappingNode):
        raise PermanentError(Reason.INVALID_OVERLAY, f"{_at(node)}: {_ENTRY_HINT}")
    pairs = _pairs(node)
    name = pairs.get("name")
    if name is None or not isinstance(name[1], ScalarNode) or _is_null(name[1]):
        raise PermanentError(
            Reason.INVALID_OVERLAY,
            f"{_at(node)}: this `images` entry has no `name`; add `name: <image as in the base>`",
        )
    tag = pairs.get("newTag")
    if tag is not None and not isinstance(tag[1], ScalarNode):
        raise PermanentError(
            Reason.INVALID_OVERLAY, f"{_at(tag[1])}: `newTag` must be a single tag string"
        )
    return _Entry(node, pairs)


def _pairs(node: MappingNode) -> dict[str, tuple[Node, Node]]:
    """Map each scalar key to its (key, value) nodes; a repeated key is an error."""
    pairs: dict[str, tuple[Node, Node]] = {}
    for key, value in node.value:
        if not isinstance(key, ScalarNode):
            continue
        if key.value in pairs:
            raise PermanentError(
                Reason.INVALID_OVERLAY,
                f"{_at(key)}: `{key.value}` appears twice in the same mapping; keep one",
            )
        pairs[key.value] = (key, value)
    return pairs


def _entry_splices(text: str, entry: _Entry, tag: str, eol: str) -> list[_Splice]:
    tag_pair = entry.pairs.get("newTag")
    digest_pair = entry.pairs.get("digest")
    if tag_pair is None and digest_pair is not None:
        # The digest line becomes the newTag line: the entry keeps its shape and order.
        start, end = digest_pair[0].start_mark.index, _value_end(text, digest_pair)
        return [(start, end, f"newTag: {_render(tag)}")]
    splices = []
    if digest_pair is not None:
        splices.append(_remove_pair(text, entry, "digest"))
    if tag_pair is None:
        splices.append(_add_tag_splice(text, entry, tag, eol))
    elif tag_pair[1].value != tag or _is_null(tag_pair[1]):
        splices.append(_replace_value(text, tag_pair, tag))
    return splices


def _replace_value(text: str, pair: tuple[Node, Node], tag: str) -> _Splice:
    key, value = pair
    start, end = value.start_mark.index, value.end_mark.index
    if start < key.end_mark.index:
        raise _cannot_edit(value, "is an alias (*name); write the tag itself")
    if start == end:
        # An empty value's mark sits on the next token; the value goes right after the colon.
        colon = text.find(":", key.end_mark.index, start + 1)
        if colon < 0:
            raise _cannot_edit(value, "has no `:`; write `newTag: <tag>`")
        return (colon + 1, colon + 1, f" {_render(tag)}")
    if text[start] in "&!|>":
        raise _cannot_edit(value, "uses an anchor, a tag or a block scalar; write a plain tag")
    return (start, end, _render(tag, _quote_style(value)))


def _remove_pair(text: str, entry: _Entry, name: str) -> _Splice:
    keys = [key for key, _ in entry.node.value]
    index = next(i for i, key in enumerate(keys) if key.value == name)
    key, value = entry.node.value[index]
    end = _value_end(text, (key, value))
    if entry.node.flow_style:
        if index > 0:
            return (_value_end(text, entry.node.value[index - 1]), end, "")
        return (key.start_mark.index, keys[index + 1].start_mark.index, "")
    line_start = text.rfind("\n", 0, key.start_mark.index) + 1
    if text[line_start : key.start_mark.index].strip():
        # The key shares its line with the sequence dash: pull the next key up instead.
        return (key.start_mark.index, keys[index + 1].start_mark.index, "")
    return (line_start, _line_end(text, end), "")


def _add_tag_splice(text: str, entry: _Entry, tag: str, eol: str) -> _Splice:
    node = entry.node
    if node.flow_style:
        at = _value_end(text, node.value[-1])
        return (at, at, f", newTag: {_render(tag)}")
    at = _line_end(text, _content_end(text, node))
    line = " " * node.start_mark.column + f"newTag: {_render(tag)}"
    return _insert_lines(text, at, [line], eol)


def _append_splices(overlay: _Overlay, missing: Mapping[str, str], eol: str) -> list[_Splice]:
    text = overlay.text
    style = _tag_style(overlay.entries)
    if overlay.images_pair is None:
        return [_add_images_key(overlay, missing, eol, style)]
    key, value = overlay.images_pair
    images = overlay.images
    if images is None:  # `images:` with no value, or `null`
        dash_col = key.start_mark.column + _dash_offset(overlay)
        items = _block_items(missing, style, dash_col)
        splices = [_insert_lines(text, _line_end(text, key.end_mark.index), items, eol)]
        if value.start_mark.index != value.end_mark.index:
            colon = text.find(":", key.end_mark.index)
            splices.append((colon + 1, value.end_mark.index, ""))
        return splices
    if images.flow_style:
        flows = [_flow_item(image, tag, style, padded=False) for image, tag in missing.items()]
        if not images.value:
            at = images.start_mark.index + 1
            return [(at, at, ", ".join(flows))]
        at = images.value[-1].end_mark.index
        return [(at, at, "".join(f", {flow}" for flow in flows))]
    return [_append_block_items(text, images, missing, style, eol)]


def _append_block_items(
    text: str, images: SequenceNode, missing: Mapping[str, str], style: str | None, eol: str
) -> _Splice:
    last = images.value[-1]
    dash_col = images.start_mark.column
    at = _line_end(text, _content_end(text, last))
    if last.flow_style:
        padded = text[last.start_mark.index + 1] == " "
        pad = " " * dash_col
        lines = [f"{pad}- {_flow_item(i, t, style, padded=padded)}" for i, t in missing.items()]
        return _insert_lines(text, at, lines, eol)
    key_col = last.start_mark.column
    before = text[: last.start_mark.index].rstrip(" ")
    if not before.endswith("-"):  # `-` alone on its line, keys below it
        key_col = dash_col + 2
    return _insert_lines(text, at, _block_items(missing, style, dash_col, key_col), eol)


def _add_images_key(
    overlay: _Overlay, missing: Mapping[str, str], eol: str, style: str | None
) -> _Splice:
    text, root = overlay.text, overlay.root
    if root.flow_style:
        raise PermanentError(
            Reason.INVALID_OVERLAY,
            f"{_at(root)}: {_FILE} is written as a flow mapping ({{...}}); add an `images:` "
            "list to it by hand",
        )
    column = root.start_mark.column
    lines = [" " * column + "images:"]
    lines += _block_items(missing, style, dash_col=column + _dash_offset(overlay))
    at = _line_end(text, _content_end(text, root))
    # Trailing comments stay above the new key unless something else (`---`, `...`) follows.
    if all(not line.strip() or line.lstrip().startswith("#") for line in text[at:].splitlines()):
        at = len(text)
    return _insert_lines(text, at, lines, eol)


def _block_items(
    missing: Mapping[str, str], style: str | None, dash_col: int, key_col: int | None = None
) -> list[str]:
    key_col = dash_col + 2 if key_col is None else key_col
    gap = " " * (key_col - dash_col - 1)
    lines = []
    for image, tag in missing.items():
        lines.append(" " * dash_col + f"-{gap}name: {_render(image)}")
        lines.append(" " * key_col + f"newTag: {_render(tag, style)}")
    return lines


def _flow_item(image: str, tag: str, style: str | None, *, padded: bool) -> str:
    pad = " " if padded else ""
    return f"{{{pad}name: {_render(image)}, newTag: {_render(tag, style)}{pad}}}"


def _dash_offset(overlay: _Overlay) -> int:
    """How far this file indents a list's dash under its key (0 for Kustomize's own style)."""
    for key, value in overlay.root.value:
        if isinstance(value, SequenceNode) and not value.flow_style and value.value:
            return max(0, int(value.start_mark.column - key.start_mark.column))
    return 0


def _tag_style(entries: Sequence[_Entry]) -> str | None:
    """The quote style of the last `newTag` written, so appended entries look the same."""
    for entry in reversed(entries):
        pair = entry.pairs.get("newTag")
        if pair is not None and not _is_null(pair[1]):
            return _quote_style(pair[1])
    return None


def _render(value: str, style: str | None = None) -> str:
    """Write `value` as a YAML scalar that reads back as exactly this string."""
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style != '"' and _plain_is_string(value):
        return value
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value)


def _plain_is_string(value: str) -> bool:
    if not _PLAIN_SAFE.fullmatch(value) or value.endswith(":"):
        return False
    return all(
        resolver.resolve(ScalarNode, value, (True, False)) == _STR_TAG for resolver in _RESOLVERS
    )


def _verify(new_text: str, tags: Mapping[str, str]) -> None:
    """Re-read the edit: a wrong edit must fail here rather than be committed."""
    overlay = _Overlay.parse(new_text)
    for image, tag in tags.items():
        entry = overlay.entry(image)
        if entry is None or entry.tag() != tag or "digest" in entry.pairs:
            where = f"the `images` entry for {image}"
            raise PermanentError(
                Reason.INVALID_OVERLAY,
                f"{_FILE}: could not set the tag of {where} without rewriting other lines; "
                f"write it as `- name: {image}` with a plain `newTag:` line",
            )


def _apply(text: str, splices: Sequence[_Splice]) -> str:
    out = text
    # Back to front so earlier offsets stay valid; at one offset the splice made later is
    # applied first, which leaves the earlier one's text in front (newTag before new entries).
    order = sorted(range(len(splices)), key=lambda i: (splices[i][0], i), reverse=True)
    for start, end, replacement in (splices[i] for i in order):
        out = out[:start] + replacement + out[end:]
    return out


def _insert_lines(text: str, at: int, lines: Sequence[str], eol: str) -> _Splice:
    body = "".join(line + eol for line in lines)
    if at == len(text) and not text.endswith("\n"):
        # Keep the file's missing final newline: the break goes before the new lines.
        body = eol + body[: -len(eol)]
    return (at, at, body)


def _content_end(text: str, node: Node, seen: dict[int, int] | None = None) -> int:
    """Index just after the last character of `node`'s content (not its trailing comments).

    Block collections and empty scalars end where the *next* token starts, so only
    flow collections and non-empty scalars are trusted. An alias is the very node it
    names, so one node can be reached along many paths (`*a` listed twice in `&b`, `*b`
    listed twice in `&c`, ...): `seen` answers each node once, which keeps the walk linear
    in the text instead of exponential in the number of alias levels.
    """
    seen = {} if seen is None else seen
    known = seen.get(id(node))
    if known is not None:
        return known
    if not isinstance(node, MappingNode | SequenceNode) or node.flow_style:
        end = int(node.end_mark.index)
    else:
        children: list[Node] = (
            [n for pair in node.value for n in pair]
            if isinstance(node, MappingNode)
            else node.value
        )
        ends = [
            _content_end(text, child, seen)
            for child in children
            if child.start_mark.index != child.end_mark.index
        ]
        end = max(ends, default=int(node.start_mark.index))
    while end > 0 and text[end - 1] in " \t\r\n":
        end -= 1
    seen[id(node)] = end
    return end


def _value_end(text: str, pair: tuple[Node, Node]) -> int:
    """Index just after a pair's value; an empty value ends at its colon, not the next token."""
    key, value = pair
    if value.start_mark.index != value.end_mark.index:
        return int(value.end_mark.index)
    return text.find(":", key.end_mark.index) + 1


def _line_end(text: str, index: int) -> int:
    """Index just after the line break of the line holding `index` (or the text's end)."""
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _line_ending(text: str) -> str:
    newline = text.find("\n")
    return "\r\n" if newline > 0 and text[newline - 1] == "\r" else "\n"


def _split_keep_newline(text: str) -> list[str]:
    # str.splitlines would also split on \r, \x0c, \u2028...; git splits on \n only.
    return re.findall(r"[^\n]*\n|[^\n]+", text)


def _quote_style(node: Node) -> str | None:
    style = getattr(node, "style", None)
    return style if style in ("'", '"') else None


def _is_empty(node: Node | None) -> bool:
    return node is None or (_is_null(node) and node.start_mark.index == node.end_mark.index)


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG and not node.style


def _at(node: Node) -> str:
    return f"{_FILE} line {node.start_mark.line + 1}"


def _cannot_edit(node: Node, problem: str) -> PermanentError:
    return PermanentError(Reason.INVALID_OVERLAY, f"{_at(node)}: `newTag` {problem}")


def _yaml_error_message(exc: YAMLError) -> str:
    if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
        where = f"{_FILE} line {exc.problem_mark.line + 1}"
        problem = exc.problem or "syntax error"
        context = ""
        if exc.context and exc.context_mark is not None:
            context = f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        elif exc.context:
            context = f" ({exc.context})"
        return f"{where}: not valid YAML: {problem}{context}; fix the syntax"
    return f"{_FILE} is not valid YAML ({exc}); fix the syntax"
