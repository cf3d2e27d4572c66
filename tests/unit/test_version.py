"""The version is written once (`promotion_operator.__version__`); the rest reads or matches it."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import yaml

from promotion_operator import __version__


def test_the_distribution_takes_its_version_from_the_package() -> None:
    assert version("promotion-operator") == __version__


def test_the_chart_deploys_this_version(pytestconfig: pytest.Config) -> None:
    chart = pytestconfig.rootpath / "charts" / "promotion-operator" / "Chart.yaml"
    assert yaml.safe_load(chart.read_text())["appVersion"] == __version__, (
        f"{chart}: appVersion must be {__version__} (promotion_operator/__init__.py)"
    )
