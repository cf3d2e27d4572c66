"""The `promotion-operator` command: `run` the operator, `crds` to regenerate the CRDs."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import yaml

from promotion_operator import __version__, logs
from promotion_operator.domain.crdgen import custom_resource_definitions
from promotion_operator.lifecycle.config import DEFAULT_CACHE_DIR


def _write_crds(out_dirs: list[Path]) -> None:
    for out in out_dirs:
        out.mkdir(parents=True, exist_ok=True)
        for file_name, crd in custom_resource_definitions().items():
            (out / file_name).write_text(render_yaml(crd))


def render_yaml(document: object) -> str:
    """Render a document as the YAML committed under crds/ (stable key order)."""
    return "---\n" + yaml.safe_dump(document, sort_keys=False, width=100)


def _run(args: argparse.Namespace) -> int:
    import kopf

    from promotion_operator import handlers, k8s, metrics
    from promotion_operator.gitops.runner import remove_stale_secrets

    del handlers  # imported for its @kopf decorators
    from promotion_operator.domain.models import NotificationFormat
    from promotion_operator.lifecycle.config import OperatorConfig

    logs.configure(json_lines=args.log_format == "json", verbose=args.verbose)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's login reads it too
    k8s.load_config(args.kubeconfig)
    for stale in remove_stale_secrets():
        logging.getLogger(__name__).info("removed %s, left by a killed operator", stale)
    config = OperatorConfig(
        cache_dir=Path(args.cache_dir),
        allow_file_urls=args.allow_local_git,
        environment_refresh=args.environment_refresh,
        backoff_max=args.max_backoff,
        keep_finished=args.keep_finished,
        health_namespaces=frozenset(args.health_namespace or ()),
        notify_secret=args.notify_webhook_secret,
        notify_format=NotificationFormat(args.notify_format),
        notify_diff_url=args.notify_diff_url,
        status_key=k8s.status_key(args.operator_namespace, args.status_key_secret),
        clone_history=dt.timedelta(days=args.clone_history_days)
        if args.clone_history_days
        else None,
        cache_idle=args.clone_cache_idle,
        cache_budget=args.clone_cache_budget << 20,
    )
    namespaces = args.namespace or []
    if args.metrics_port:
        metrics.serve(args.metrics_port, args.metrics_address)
    if args.leader_elect:
        _wait_for_leadership(args, k8s)
    kopf.run(
        memo=kopf.Memo(config=config, namespaces=namespaces),
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness,
    )
    return 0


def _wait_for_leadership(args: argparse.Namespace, k8s: ModuleType) -> None:
    """Stand by until this replica leads; answer liveness meanwhile, exit if the lead is lost.

    Only the leader runs kopf, so a second replica never reconciles (no double push, no
    status flapping); it takes over within the Lease timings after the leader dies.
    """
    identity = f"{socket.gethostname()}-{os.getpid()}"
    standby = _standby_liveness(args.liveness)

    def lost() -> None:
        logging.getLogger(__name__).error("lost the leader Lease: exiting so a standby leads")
        os._exit(70)

    try:
        k8s.lead(args.leader_election_namespace, args.leader_election_id, identity, on_lost=lost)
    finally:
        if standby is not None:
            standby.shutdown()
            standby.server_close()


def _standby_liveness(url: str | None) -> ThreadingHTTPServer | None:
    """Serve the liveness URL while standing by (kopf serves it once leading)."""
    if not url:
        return None
    parts = urlsplit(url)
    path = parts.path or "/"

    class Live(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == path else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 80), Live)  # noqa: S104
    threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="promotion-operator")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument("--namespace", "-n", action="append", help="watch only this namespace")
    run.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    run.add_argument(
        "--cache-dir",
        default=os.environ.get("PROMOTION_OPERATOR_CACHE_DIR", DEFAULT_CACHE_DIR),
        help="where the persistent git clones live",
    )
    run.add_argument(
        "--allow-local-git",
        action="store_true",
        help="allow file:// (and plain http://) git URLs: for local sandboxes only",
    )
    run.add_argument(
        "--environment-refresh", type=float, default=30.0, help="seconds between status looks"
    )
    run.add_argument(
        "--max-backoff", type=float, default=60.0, help="longest wait between check rounds"
    )
    run.add_argument(
        "--keep-finished",
        type=int,
        default=0,
        help="keep the newest N finished Promotions per Environment and delete older ones "
        "(never one a GitOps tool manages); 0 keeps all",
    )
    run.add_argument(
        "--health-namespace",
        action="append",
        help="a namespace, besides an Environment's own, that its health sources may read "
        "(e.g. argocd, where Argo CD keeps Applications); repeat for more",
    )
    run.add_argument(
        "--clone-history-days",
        type=float,
        default=14.0,
        help="history a cached clone keeps, in days (deepened on demand); 0 keeps all",
    )
    run.add_argument(
        "--clone-cache-idle",
        type=float,
        default=3600.0,
        help="seconds after which an unused cached clone is removed",
    )
    run.add_argument(
        "--clone-cache-budget",
        type=int,
        default=1536,
        help="MiB the clone cache may hold; least recently used clones are removed beyond it",
    )
    run.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="run as one of several replicas: only the holder of the Lease reconciles",
    )
    run.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (default: $POD_NAMESPACE)",
    )
    run.add_argument("--leader-election-id", default="promotion-operator", help="Lease name")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus metrics at /metrics on this port (0: off)",
    )
    run.add_argument(
        "--metrics-address",
        default="0.0.0.0",  # noqa: S104 - a Pod's metrics port, scraped from outside
        help="address the metrics port binds",
    )
    run.add_argument(
        "--notify-webhook-secret",
        default=None,
        metavar="NAMESPACE/NAME",
        help="default webhook for Environments without spec.webhook: a Secret whose key "
        "`url` holds the URL (POSTed on Succeeded, Failed and Superseded)",
    )
    run.add_argument(
        "--notify-format", choices=("json", "slack"), default="json", help="default body"
    )
    run.add_argument(
        "--notify-diff-url",
        default=None,
        metavar="TEMPLATE",
        help="default diff link, e.g. https://git.example/org/repo/commit/{commit}",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per line, naming the object each line is about",
    )
    run.add_argument(
        "--operator-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="the operator's own namespace, which tenants cannot read (default: $POD_NAMESPACE)",
    )
    run.add_argument(
        "--status-key-secret",
        default="promotion-operator-status-key",
        help="Secret in --operator-namespace holding the key that seals Environment status "
        "(created on first start)",
    )
    run.add_argument("--verbose", "-v", action="store_true")
    crds = sub.add_parser("crds", help="write the CRDs generated from the models")
    crds.add_argument("out", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "crds":
        _write_crds(args.out)
        return 0
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
