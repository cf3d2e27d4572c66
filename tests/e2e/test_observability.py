"""Notifications, metrics and JSON logs of the real operator process.

One operator runs with `--metrics-port`, `--log-format=json` and a default webhook
Secret, watching one namespace with three prod-like Environments promoted at once: one
notifies the default (answering receiver), one has `spec.webhook` to a receiver that
hangs, one to a receiver that answers 500. Every promotion succeeds; the receivers get
their POSTs; /metrics shows the counters moved; every log line is JSON and the lines a
promotion causes name it. The webhook URLs appear in no status, Event or log line.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from promotion_sandbox.kube import Kube
from promotion_sandbox.operator import OperatorProcess
from promotion_sandbox.procs import free_port
from promotion_sandbox.webhook import WebhookReceiver
from promotion_sandbox.world import NEW_VERSION, OLD_VERSION, World
from support.operator import wait_for, wait_phase

pytestmark = pytest.mark.e2e

ENVIRONMENTS = {
    "tvhub-prod": None,
    "tvhub-prod-0": "hang",
    "tvhub-prod-1": "fail",
    "tvhub-prod-2": "missing",
}


def secret(namespace: str, name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"url": url},
    }


def promotion_of(namespace: str, env: str) -> dict[str, Any]:
    return {
        "apiVersion": "promotion.gitops.dev/v1alpha1",
        "kind": "Promotion",
        "metadata": {"name": f"{env}-new", "namespace": namespace},
        "spec": {"environment": env, "version": NEW_VERSION, "reason": f"{env} to new"},
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def observed(
    kube: Kube,
    world: World,
    receiver: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, OperatorProcess, int, World]]:
    """The namespace, the observed operator, its metrics port, the world; all promoted."""
    workdir = tmp_path_factory.mktemp("observed")
    fresh = world.fork(workdir)
    paths = fresh.add_prod_like_overlays(3)
    port = free_port()
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(kube.namespace("obs"))
        objects = fresh.objects(ns)
        for path, kind in zip(paths, ("hang", "fail", "missing"), strict=True):
            env = fresh.prod_like_environment(ns, path)
            env["spec"]["webhook"] = {
                "secretRef": {"name": f"hook-{kind}"},
                "format": "slack",
                "diffUrlTemplate": "https://git.example/tvhub/commit/{commit}",
            }
            objects.append(env)
            if kind != "missing":  # tvhub-prod-2 names a Secret that does not exist
                objects.append(secret(ns, f"hook-{kind}", receiver.url(kind, f"{ns}-{kind}")))
        objects.append(secret(ns, "default-hook", receiver.url("ok", f"{ns}-default")))
        kube.apply(*objects)
        operator = stack.enter_context(
            OperatorProcess(
                kube,
                workdir,
                [ns],
                extra_args=[
                    f"--metrics-port={port}",
                    "--metrics-address=127.0.0.1",
                    "--log-format=json",
                    f"--notify-webhook-secret={ns}/default-hook",
                ],
            )
        )
        kube.apply(*(promotion_of(ns, env) for env in ENVIRONMENTS))
        yield ns, operator, port, fresh


def statuses(kube: Kube, observed: tuple[str, OperatorProcess, int, World]) -> dict[str, Any]:
    ns, operator, _, _ = observed
    return {env: wait_phase(kube, operator, ns, f"{env}-new", "Succeeded") for env in ENVIRONMENTS}


def test_a_webhook_that_hangs_or_fails_neither_fails_nor_holds_a_promotion(
    kube: Kube, receiver: WebhookReceiver, observed: tuple[str, OperatorProcess, int, World]
) -> None:
    ns, operator, _, fresh = observed
    done = statuses(kube, observed)

    default = receiver.wait(f"{ns}-default")[0].json()
    status = done["tvhub-prod"]
    assert default["event"] == "Succeeded"
    assert (default["environment"], default["namespace"]) == ("tvhub-prod", ns)
    assert (default["from"], default["to"]) == (OLD_VERSION, NEW_VERSION)
    assert default["why"] == "tvhub-prod to new"
    assert default["who"] == status["requestedBy"]
    assert default["commit"] == status["commit"]
    assert default["diffUrl"] is None  # the operator default has no template here
    # the hanging receiver holds its POST, and its promotion has succeeded regardless
    hung = receiver.wait(f"{ns}-hang")[0].json()
    assert "*tvhub-prod-0*" in hung["text"]
    commit = done["tvhub-prod-0"]["commit"]
    assert f"<https://git.example/tvhub/commit/{commit}|{commit[:12]}>" in hung["text"]
    # the failing one is retried (4 attempts), its promotion long done
    assert len(receiver.wait(f"{ns}-fail", 4, timeout=40)) == 4
    assert len(fresh.remote_messages()) == 1 + 1 + 4  # seed, overlays, four promotions

    # the tenant, who cannot read the operator's logs, sees why on its Promotion
    def warning(name: str) -> str:
        found = kube.kubectl(
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            f"involvedObject.name={name},reason=NotificationFailed",
            "-o",
            "json",
        ).stdout
        items = json.loads(found)["items"]
        return str(items[0]["message"]) if items else ""

    failed = wait_for("the 500 give-up Event", lambda: warning("tvhub-prod-1-new"), timeout=30)
    assert failed == (
        f"notification not sent to the webhook of Secret {ns}/hook-fail: answered 500"
    )
    missing = wait_for("the missing-Secret Event", lambda: warning("tvhub-prod-2-new"))
    assert "Secret 'hook-missing' (webhook URL) not found" in missing
    wait_for("the give-up log line", lambda: "answered 500" in operator.logs(), timeout=30)
    shown = json.dumps([kube.get("promotion", f"{e}-new", ns) for e in ENVIRONMENTS])
    events = kube.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    for text in (shown, events, operator.logs()):
        assert f"127.0.0.1:{receiver.port}" not in text


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_the_promotions_and_time_their_stages_and_calls(
    kube: Kube, observed: tuple[str, OperatorProcess, int, World]
) -> None:
    _, operator, port, _ = observed
    statuses(kube, observed)

    def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        metrics = scrape(port)
        idle = metrics.get(("promotion_operator_promotions_in_flight", ())) == 0
        return metrics if idle else None

    metrics = wait_for("no Promotion in flight", settled, logs=operator.logs)

    def value(name: str, **labels: str) -> float:
        return float(metrics.get((name, tuple(sorted(labels.items()))), 0.0))

    assert value("promotion_operator_promotions_total", phase="Succeeded", reason="Promoted") == 4
    assert value("promotion_operator_promotions_total", phase="Promoting", reason="Promoting") == 4
    for stage in ("verify", "git", "total"):
        assert value("promotion_operator_stage_duration_seconds_count", stage=stage) >= 4
    call = "promotion_operator_call_duration_seconds_count"
    # concurrent promotions of one branch may share a push (batching): at least one, at most 4
    assert 1 <= value(call, kind="git", operation="push") <= 4
    assert value(call, kind="registry", operation="check_tag") >= 8  # 2 images x 4
    assert value(call, kind="health", operation="argocd") >= 4
    assert value(call, kind="webhook", operation="post") >= 2
    assert value("promotion_operator_call_errors_total", kind="git", operation="push") == 0
    assert value("promotion_operator_environment_refresh_round_duration_seconds_count") >= 1
    # no per-Promotion label anywhere
    assert not any(
        dict(labels).keys() & {"name", "promotion", "namespace"} for _, labels in metrics
    )


def test_json_log_lines_parse_and_name_the_promotion_they_are_about(
    kube: Kube, observed: tuple[str, OperatorProcess, int, World]
) -> None:
    ns, operator, _, _ = observed
    statuses(kube, observed)
    wait_for("the sent notice", lambda: "sent to Secret" in operator.logs(), timeout=30)

    records = [json.loads(line) for line in operator.logs().splitlines() if line.strip()]
    about = [r for r in records if (r.get("object") or {}).get("name") == "tvhub-prod-new"]
    messages = " | ".join(str(r["message"]) for r in about)
    assert "Pending -> Verifying" in messages or "new -> Pending" in messages
    assert "-> Succeeded (Promoted)" in messages
    assert "sent to Secret" in messages
    assert all(r["object"]["namespace"] == ns for r in about)
    assert {"time", "level", "logger", "message"} <= set(about[0])
    assert any(r["logger"].startswith("promotion_operator") for r in about)
