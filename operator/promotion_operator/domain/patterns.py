"""Match versions against an Environment's `versionPattern`, in time linear in the input.

The pattern is written by a tenant. Python's `re` backtracks, so a pattern such as
`^(a|aa)+$` takes seconds (growing exponentially) on a short version while holding the
GIL, which stalls every handler of the operator. RE2 compiles the pattern to an automaton
and matches in time linear in the pattern and the version, whatever they are; the price is
that it refuses the few constructs that need backtracking (backreferences, lookaround,
possessive quantifiers), which a version pattern does not need.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

__all__ = ["VersionPattern", "compile_version_pattern", "version_matches"]

# RE2's own memory budget for one compiled pattern; a pattern needing more is refused
# (at most 512 characters are allowed by the schema, so only pathological repetition
# counts such as `(a{1,999}){1,999}` come near it).
_MAX_PATTERN_MEMORY = 8 << 20


class VersionPattern:
    """A compiled `versionPattern`: `matches(version)` runs in linear time."""

    def __init__(self, text: str, compiled: Any) -> None:
        self.text = text
        self._compiled = compiled

    def matches(self, version: str) -> bool:
        """Whether the pattern matches somewhere in `version` (like `re.search`)."""
        return self._compiled.search(version) is not None

    def __repr__(self) -> str:
        return f"VersionPattern({self.text!r})"


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the error is raised to the caller; no stderr noise
    options.max_mem = _MAX_PATTERN_MEMORY
    return options


@lru_cache(maxsize=256)
def compile_version_pattern(text: str) -> VersionPattern:
    """Compile a `versionPattern` for linear-time matching.

    Raises `ValueError` saying what is wrong when the text is not a regular expression
    RE2 accepts: a syntax error, or a backtracking-only construct (backreferences such as
    `\\1`, lookahead/lookbehind `(?=...)`, possessive quantifiers `a++`).
    """
    try:
        compiled = re2.compile(text, _options())
    except re2.error as error:
        detail = error.args[0] if error.args else error
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(
            f"versionPattern is not a valid regular expression ({detail}); it is matched "
            "with RE2 (https://github.com/google/re2/wiki/Syntax), which has no "
            "backreferences, lookahead/lookbehind or possessive quantifiers"
        ) from None
    return VersionPattern(text, compiled)


def version_matches(pattern: str, version: str) -> bool:
    """Whether `version` matches `pattern` (searched, like `re.search`), in linear time.

    Raises `ValueError` when the pattern does not compile (see `compile_version_pattern`).
    """
    return compile_version_pattern(pattern).matches(version)
