"""versionPattern matching: linear time whatever the tenant writes, refused when RE2 cannot."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from promotion_operator.domain.models import DEFAULT_VERSION_PATTERN, EnvironmentSpec
from promotion_operator.domain.patterns import compile_version_pattern, version_matches

# Catastrophic backtracking for Python's `re`: 1.6x per character; 37 characters took 4.1 s.
EVIL = r"^(a|aa)+$"


def _environment(**spec: object) -> dict[str, object]:
    return {
        "git": {"url": "https://git.example.com/shop/deploy.git"},
        "overlay": {"path": "k8s/overlays/prod"},
        "images": [{"name": "app"}],
        **spec,
    }


def test_backtracking_bomb_answers_at_once() -> None:
    # 128 characters, the longest tag: `re.search` would not finish within the test timeout.
    assert not version_matches(EVIL, "a" * 127 + "b")
    assert version_matches(EVIL, "a" * 128)
    assert not version_matches(r"^(\w+\s?)*$", "a" * 127 + "!")


@pytest.mark.parametrize(
    ("pattern", "version", "expected"),
    [
        (DEFAULT_VERSION_PATTERN, "v20250819-f3b8541", True),
        (DEFAULT_VERSION_PATTERN, "latest", False),
        (DEFAULT_VERSION_PATTERN, "v20250819-f3b8541\n", False),
        (r"^\d+\.\d+\.\d+$", "1.20.3", True),
        (r"rc", "v1.0-rc1", True),  # searched, like re.search, not anchored
        (r"^v[0-9]+$", "v12a", False),
        (r"(?i)^V1$", "v1", True),
    ],
)
def test_matches_like_re_search(pattern: str, version: str, expected: bool) -> None:
    assert version_matches(pattern, version) is expected
    # same answer as Python's re for patterns both understand (but `$` before a final \n)
    if not version.endswith("\n"):
        assert (re.search(pattern, version) is not None) is expected


@pytest.mark.parametrize(
    ("pattern", "needle"),
    [
        (r"^(v)\1$", "invalid escape sequence"),
        (r"^v(?=1)", "invalid perl operator"),
        (r"^v(?<!x)1", "invalid perl operator"),
        (r"^v1++$", "bad repetition operator"),
        (r"^v(unclosed", "missing )"),
        (r"((a{1,999}){1,999}){1,999}", "invalid repetition size"),
    ],
)
def test_unsupported_or_invalid_patterns_are_a_clear_value_error(pattern: str, needle: str) -> None:
    with pytest.raises(ValueError, match="versionPattern is not a valid regular expression") as e:
        compile_version_pattern(pattern)

    assert needle in str(e.value)
    assert "RE2" in str(e.value)
    with pytest.raises(ValidationError, match="RE2"):
        EnvironmentSpec.model_validate(_environment(versionPattern=pattern))


def test_compiled_patterns_are_reused() -> None:
    assert compile_version_pattern(r"^v\d+$") is compile_version_pattern(r"^v\d+$")
