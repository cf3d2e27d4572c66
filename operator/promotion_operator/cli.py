"""The `promotion-operator` command: `run` the operator, `crds` to regenerate the CRDs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import yaml

from promotion_operator import __version__
from promotion_operator.domain.crdgen import custom_resource_definitions
from promotion_operator.lifecycle.context import DEFAULT_CACHE_DIR


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

    from promotion_operator import handlers, k8s
    from promotion_operator.lifecycle.context import OperatorConfig

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's login reads it too
    k8s.load_config(args.kubeconfig)
    handlers.configure(
        OperatorConfig(
            cache_dir=Path(args.cache_dir),
            allow_file_urls=args.allow_local_git,
            environment_refresh=args.environment_refresh,
            backoff_max=args.max_backoff,
        )
    )
    namespaces = args.namespace or []
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness,
    )
    return 0


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
    run.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
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
