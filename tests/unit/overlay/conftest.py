"""Markers of the overlay tests (registered here so `--strict-markers` knows them)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register `fuzz`: bigger hypothesis budgets, still seconds; `-m 'not fuzz'` skips them."""
    config.addinivalue_line(
        "markers", "fuzz: hypothesis with a bigger budget (OVERLAY_FUZZ_EXAMPLES to raise it)"
    )
