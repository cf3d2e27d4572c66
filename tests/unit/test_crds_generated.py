"""The committed CRDs are exactly what the models generate (no drift)."""

from __future__ import annotations

from pathlib import Path

import pytest

from promotion_operator.cli import render_yaml
from promotion_operator.domain.crdgen import custom_resource_definitions, model_schema
from promotion_operator.domain.models import EnvironmentSpec, PromotionSpec

ROOT = Path(__file__).resolve().parents[2]
GENERATED = custom_resource_definitions()


@pytest.mark.parametrize("folder", ["crds", "charts/promotion-operator/crds"])
@pytest.mark.parametrize("file_name", sorted(GENERATED))
def test_committed_crd_matches_models(folder: str, file_name: str) -> None:
    committed = (ROOT / folder / file_name).read_text()
    assert committed == render_yaml(GENERATED[file_name]), (
        f"{folder}/{file_name} is stale: run `promotion-operator crds crds "
        "charts/promotion-operator/crds`"
    )


def _walk(schema: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(schema, dict):
        found.append(schema)
        for value in schema.values():
            found.extend(_walk(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(_walk(value))
    return found


@pytest.mark.parametrize("model", [EnvironmentSpec, PromotionSpec])
def test_schema_is_structural(model: type) -> None:
    nodes = _walk(model_schema(model))
    for node in nodes:
        assert "$ref" not in node and "anyOf" not in node and "title" not in node
    assert all("type" in n for n in nodes if "properties" in n or "pattern" in n or "items" in n)


def test_every_spec_field_is_described() -> None:
    spec = model_schema(PromotionSpec)
    assert set(spec["required"]) == {"environment", "version"}
    for name, field in spec["properties"].items():
        assert field.get("description"), f"spec.{name} has no description"


def test_promotion_columns() -> None:
    crd = GENERATED["promotion.gitops.dev_promotions.yaml"]
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert [c for c in columns if c != "Message"] == [
        "Environment",
        "Version",
        "Phase",
        "Commit",
        "Age",
    ]
