"""The Helm chart: helm lint, values.schema.json, and the real API server accepting it.

Every rendering is applied with `kubectl apply --dry-run=server`, so the API server runs
its schema validation (unknown fields refused), admission and the CRDs' own rules on each
object, as an install would, without changing the shared cluster.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from support.chart import CHART, TEST_IMAGE, helm, render_chart, template_args
from support.kube import Kube

pytestmark = pytest.mark.integration


def test_helm_lint_is_clean(kube: Kube) -> None:
    linted = helm(kube, "lint", "--strict", str(CHART), f"--set=image.repository={TEST_IMAGE}")

    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout, linted.stdout
    assert "[WARNING]" not in linted.stdout and "[ERROR]" not in linted.stdout, linted.stdout


def test_without_an_image_repository_the_chart_says_what_to_do(kube: Kube) -> None:
    # no registry publishes the image: installing without one must not pull a made-up name
    refused = helm(kube, "template", "promotion-operator", str(CHART), check=False)

    assert refused.returncode != 0
    assert "image.repository is required" in refused.stderr
    assert "make image IMAGE=" in refused.stderr and "--set image.repository=" in refused.stderr


def dry_run(kube: Kube, documents: list[dict[str, Any]]) -> list[str]:
    """`kubectl apply --dry-run=server` of the documents; returns kubectl's lines."""
    applied = kube.kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        input_text=yaml.safe_dump_all(documents),
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    return applied.stdout.splitlines()


# (id, --set values, other flags, check of the rendering); "{ns1}"/"{ns2}" become namespaces
OPTIONS: list[tuple[str, tuple[str, ...], tuple[str, ...], Callable[[dict[str, int]], bool]]] = [
    (
        "defaults",
        (),
        (),
        lambda kinds: (
            kinds.get("PodDisruptionBudget") == 1 and kinds.get("CustomResourceDefinition") == 2
        ),
    ),
    (
        "watchNamespaces",
        ("watchNamespaces={{ns1},{ns2}}",),
        (),
        lambda kinds: kinds.get("Role") == 3 and kinds.get("RoleBinding") == 3,
    ),
    ("one replica", ("replicas=1",), (), lambda kinds: "PodDisruptionBudget" not in kinds),
    ("three replicas", ("replicas=3",), (), lambda kinds: kinds.get("PodDisruptionBudget") == 1),
    (
        "retention and health namespaces",
        ("keepFinished=20", "healthNamespaces={argocd,{ns1}}", "environmentRefresh=5"),
        (),
        lambda kinds: kinds.get("Deployment") == 1,
    ),
    (
        "own ServiceAccount, no admission policies",
        (
            "serviceAccount.create=false",
            "serviceAccount.name=ops-bot",
            "requestedByPolicy=false",
            "requestedByGuard=false",
            "nameOverride=po",
        ),
        (),
        lambda kinds: (
            "ServiceAccount" not in kinds
            and "MutatingAdmissionPolicy" not in kinds
            and "ValidatingAdmissionPolicy" not in kinds
        ),
    ),
    (
        "a private git CA, resources, tag and pull policy",
        ("image.tag=0.1.0-rc1", "image.pullPolicy=Always", "cache.sizeLimit=500Mi"),
        (
            '--set-json=extraEnv=[{"name":"GIT_SSL_CAINFO","value":"/etc/git-ca/ca.crt"}]',
            '--set-json=extraVolumes=[{"name":"git-ca","configMap":{"name":"git-ca"}}]',
            '--set-json=extraVolumeMounts=[{"name":"git-ca","mountPath":"/etc/git-ca",'
            '"readOnly":true}]',
            '--set-json=resources={"requests":{"cpu":"100m","memory":"256Mi"},'
            '"limits":{"cpu":2,"memory":"1Gi"}}',
        ),
        lambda kinds: kinds.get("Deployment") == 1,
    ),
]


@pytest.fixture(scope="module")
def namespaces(kube: Kube) -> Iterator[tuple[str, str, str]]:
    """The release's namespace and two tenants' (a dry run needs them to exist)."""
    with contextlib.ExitStack() as made:
        release, team_a, team_b = (
            made.enter_context(kube.namespace(prefix)) for prefix in ("chart", "team-a", "team-b")
        )
        yield release, team_a, team_b


@pytest.mark.parametrize(
    ("values", "flags", "check"),
    [pytest.param(values, flags, check, id=name) for name, values, flags, check in OPTIONS],
)
def test_the_api_server_accepts_the_rendered_chart(
    kube: Kube,
    namespaces: tuple[str, str, str],
    values: tuple[str, ...],
    flags: tuple[str, ...],
    check: Callable[[dict[str, int]], bool],
) -> None:
    release_ns, ns1, ns2 = namespaces
    names = {"{ns1}": ns1, "{ns2}": ns2}
    for placeholder, name in names.items():
        values = tuple(value.replace(placeholder, name) for value in values)
    # the CRDs (the chart's crds/ folder) once, with the defaults
    crds = ("--include-crds",) if not values and not flags else ()
    documents = render_chart(kube, release_ns, *values, flags=(*flags, *crds))
    kinds: dict[str, int] = {}
    for doc in documents:
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1

    lines = dry_run(kube, documents)

    assert check(kinds), kinds
    assert len(lines) == len(documents), lines
    assert all(line.endswith("(server dry run)") for line in lines), lines


def test_the_deployment_carries_the_options(kube: Kube) -> None:
    documents = render_chart(
        kube,
        "promotion-system",
        "watchNamespaces={team-a,team-b}",
        "healthNamespaces={argocd}",
        "keepFinished=7",
        "replicas=3",
        "image.tag=9.9.9",
    )
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]

    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == f"{TEST_IMAGE}:9.9.9"
    args = container["args"]
    assert {"--namespace=team-a", "--namespace=team-b", "--health-namespace=argocd"} <= set(args)
    assert {"--leader-elect", "--keep-finished=7"} <= set(args)


# (id, --set or --set-json flag, what the refusal must name)
BAD_VALUES = [
    ("replicas not a number", "--set=replicas=two", "replicas"),
    ("negative keepFinished", "--set=keepFinished=-1", "keepFinished"),
    ("unknown pull policy", "--set=image.pullPolicy=Sometimes", "pullPolicy"),
    ("misspelt key", "--set=watchNamespace={team-a}", "watchNamespace"),
    ("bad namespace name", "--set=healthNamespaces={Argo_CD}", "healthNamespaces"),
    ("zero refresh", "--set=environmentRefresh=0", "environmentRefresh"),
    ("string for a boolean", "--set=serviceAccount.create=yes", "create"),
    ("env without a name", '--set-json=extraEnv=[{"value":"x"}]', "name"),
    ("mount without a path", '--set-json=extraVolumeMounts=[{"name":"x"}]', "mountPath"),
    ("size that is no quantity", "--set=cache.sizeLimit=lots", "sizeLimit"),
    ("memory that is no quantity", "--set=resources.limits.memory=big", "memory"),
    ("unknown image field", "--set=image.registry=ghcr.io", "registry"),
]


@pytest.mark.parametrize(
    ("flag", "named"), [pytest.param(flag, named, id=name) for name, flag, named in BAD_VALUES]
)
def test_values_schema_refuses_bad_values(kube: Kube, flag: str, named: str) -> None:
    refused = helm(kube, *template_args("promotion-system", flags=(flag,)), check=False)

    assert refused.returncode != 0, refused.stdout[:500]
    assert "schema" in refused.stderr, refused.stderr
    assert named in refused.stderr, refused.stderr


def test_values_yaml_is_valid_and_fully_described_by_the_schema() -> None:
    # every key of values.yaml (to the depth the chart reads) has a schema entry
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def undescribed(node: Any, entry: dict[str, Any], path: str) -> list[str]:
        if not isinstance(node, dict) or "properties" not in entry:
            return []
        missing = []
        for key, value in node.items():
            if key not in entry["properties"]:
                missing.append(f"{path}{key}")
            else:
                missing += undescribed(value, entry["properties"][key], f"{path}{key}.")
        return missing

    assert undescribed(values, schema, "") == []
    assert schema["additionalProperties"] is False
