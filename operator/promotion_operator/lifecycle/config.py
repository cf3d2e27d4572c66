"""The operator's process-wide settings, from the command line."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from promotion_operator.domain.models import NotificationFormat

DEFAULT_CACHE_DIR = "/var/cache/promotion-operator"


@dataclass(frozen=True)
class OperatorConfig:
    """Process-wide settings, from the command line."""

    cache_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("PROMOTION_OPERATOR_CACHE_DIR", DEFAULT_CACHE_DIR)
        )
    )
    allow_file_urls: bool = False
    backoff_initial: float = 2.0
    backoff_max: float = 60.0
    environment_refresh: float = 30.0
    git_timeout: float = 60.0
    keep_finished: int = 0  # finished Promotions kept per Environment; 0 keeps all
    # Namespaces, besides an Environment's own, that its health sources may read (Argo CD
    # Applications usually live in `argocd`); a tenant may not look into another team's.
    health_namespaces: frozenset[str] = frozenset()
    # The default webhook (`namespace/name` of a Secret with key `url`) for Environments
    # without spec.webhook; its body format and diff link template.
    notify_secret: str | None = None
    notify_format: NotificationFormat = NotificationFormat.JSON
    notify_diff_url: str | None = None
    # The clone cache: history kept by a clone (a shallow clone; deepened on demand by the
    # crash-safety lookup; None keeps all), and eviction of clones unused for
    # `cache_idle` seconds or beyond `cache_budget` bytes, looked at every `cache_sweep` s.
    clone_history: dt.timedelta | None = dt.timedelta(days=14)
    cache_idle: float = 3600.0
    cache_budget: int = 1536 << 20
    cache_sweep: float = 300.0
    # The key of the operator's seal on Environment status (domain/seal.py). The cli loads
    # it from a Secret in the operator's namespace; without one, a key for this process.
    status_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
