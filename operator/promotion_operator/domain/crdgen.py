"""Generate the CustomResourceDefinitions from the pydantic models (pure: dicts in, dicts out).

The output is a structural OpenAPI v3 schema: every `$ref` inlined, `anyOf [X, null]`
collapsed to X, titles dropped, descriptions kept so `kubectl explain` is useful.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from promotion_operator import API_GROUP, API_VERSION
from promotion_operator.domain.models import (
    EnvironmentSpec,
    EnvironmentStatus,
    PromotionApprovalSpec,
    PromotionPolicySpec,
    PromotionSpec,
    PromotionStatus,
)

Schema = dict[str, Any]

_DROPPED_KEYS = {"title", "$defs"}


def _inline(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o != {"type": "null"}]
        nullable = len(options) != len(node["anyOf"])
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            merged = {**_inline(options[0], defs), **rest}
            if nullable and merged.get("default", 0) is None:
                merged.pop("default")
            if nullable and merged.get("type") == "string" and "properties" not in rest:
                # only map values may be null; fields are simply omitted
                merged.setdefault("nullable", True)
            return _inline(merged, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "default" and value is None:
            continue
        if key == "properties":
            out[key] = {name: _inline(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _inline(value, defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _strip_field_nullability(schema: Schema) -> Schema:
    """Optional fields are omitted, never null: only map values keep `nullable`."""
    for sub in schema.get("properties", {}).values():
        sub.pop("nullable", None)
        _strip_field_nullability(sub)
    items = schema.get("items")
    if isinstance(items, dict):
        _strip_field_nullability(items)
    return schema


def model_schema(model: type[BaseModel]) -> Schema:
    """Return the structural OpenAPI v3 schema of a model, aliases as property names."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    return _strip_field_nullability(_inline(raw, defs))


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    spec: type[BaseModel],
    status: type[BaseModel] | None,
    columns: list[dict[str, Any]],
    description: str,
    selectable: tuple[str, ...] = (),
    scope: str = "Namespaced",
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": model_schema(spec),
    }
    if status is not None:
        properties["status"] = model_schema(status)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["gitops"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    **({"subresources": {"status": {}}} if status is not None else {}),
                    **(
                        {"selectableFields": [{"jsonPath": path} for path in selectable]}
                        if selectable
                        else {}
                    ),
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": properties,
                        }
                    },
                }
            ],
        },
    }


def _column(name: str, path: str, *, priority: int = 0, kind: str = "string") -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", kind="date")


def custom_resource_definitions() -> dict[str, dict[str, Any]]:
    """Return {file name: CRD object} for every kind of the API."""
    return {
        f"{API_GROUP}_environments.yaml": _crd(
            kind="Environment",
            plural="environments",
            short_names=["penv"],
            spec=EnvironmentSpec,
            status=EnvironmentStatus,
            description="A deployable target: a Kustomize overlay in git, its images, "
            "how to verify a version and how to observe it live.",
            columns=[
                _column("Version", ".status.version"),
                _column("Live", ".status.liveVersion"),
                _column("Health", ".status.health"),
                _column("Upstream", ".spec.upstream", priority=1),
                _column("Message", ".status.message", priority=1),
                _AGE,
            ],
        ),
        f"{API_GROUP}_promotions.yaml": _crd(
            kind="Promotion",
            plural="promotions",
            short_names=["promo"],
            spec=PromotionSpec,
            status=PromotionStatus,
            # newest-wins lists one Environment's Promotions, filtered by the API server
            selectable=(".spec.environment",),
            description="A request to move one Environment to one version through git.",
            columns=[
                _column("Environment", ".spec.environment"),
                _column("Version", ".spec.version"),
                _column("Phase", ".status.phase"),
                _column("Commit", ".status.shortCommit"),
                _column("Message", ".status.message", priority=1),
                _AGE,
            ],
        ),
        f"{API_GROUP}_promotionapprovals.yaml": _crd(
            kind="PromotionApproval",
            plural="promotionapprovals",
            short_names=["papproval"],
            spec=PromotionApprovalSpec,
            status=None,
            # the Approval check lists one Promotion's approvals, filtered by the API server
            selectable=(".spec.promotion",),
            description="One person's approval of one generation of a Promotion; who "
            "approved is stamped by the API server's admission policy.",
            columns=[
                _column("Promotion", ".spec.promotion"),
                _column("Version", ".spec.version"),
                _column("Approver", ".spec.approver.username"),
                _column("Generation", ".spec.generation", priority=1, kind="integer"),
                _AGE,
            ],
        ),
        f"{API_GROUP}_promotionpolicies.yaml": _crd(
            kind="PromotionPolicy",
            plural="promotionpolicies",
            short_names=["ppolicy"],
            spec=PromotionPolicySpec,
            status=None,
            scope="Cluster",
            description="Operator-wide gates a platform team owns: a freeze that stops "
            "every Promotion (stop the line) and promotion windows for every Environment.",
            columns=[
                _column("Freeze", ".spec.freeze", kind="boolean"),
                _column("Message", ".spec.message"),
                _AGE,
            ],
        ),
    }
