"""Telling people a promotion ended: the notice (no I/O) and where it goes.

`notice_of` runs in the reconcile and only reads the status it just wrote. `resolve` runs
in a notifier worker, off the reconcile path: it reads the Environment's `spec.webhook`
Secret (of the Environment's own namespace), or the operator's default Secret.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from promotion_operator import API_GROUP, API_VERSION
from promotion_operator.domain.errors import ConditionType, PermanentError, Reason
from promotion_operator.domain.models import PromotionStatus
from promotion_operator.domain.notifications import Notice
from promotion_operator.k8s import ClusterAPI, NotFoundError
from promotion_operator.lifecycle.config import OperatorConfig
from promotion_operator.lifecycle.credentials import secret_text
from promotion_operator.lifecycle.objects import Promotion, load_environment
from promotion_operator.notify import Destination, WebhookNotifier


def notice_of(promotion: Promotion, status: PromotionStatus) -> Notice:
    """The notice of a generation that just ended in `status`."""
    ready = next((c for c in status.conditions or () if c.type == ConditionType.READY), None)
    return Notice(
        event=str(status.phase),
        namespace=promotion.namespace,
        promotion=promotion.name,
        environment=promotion.spec.environment,
        from_version=status.previous_version,
        to_version=promotion.spec.version,
        who=status.requested_by,
        why=promotion.spec.reason,
        commit=status.commit,
        reason=ready.reason if ready is not None else "",
        message=status.message or "",
        uid=promotion.uid,
    )


def resolve(config: OperatorConfig, cluster: ClusterAPI, notice: Notice) -> Destination | None:
    """Where a notice goes: the Environment's webhook, else the operator's default, else
    nowhere. A Secret that is missing or holds no http(s) URL is an error naming the Secret
    (never the URL)."""
    try:
        env = load_environment(cluster, notice.namespace, notice.environment)
        webhook = env.spec.webhook
    except (PermanentError, NotFoundError):
        webhook = None  # the Environment is gone: the default may still want to know
    if webhook is not None:
        namespace, name, key = notice.namespace, webhook.secret_ref.name, webhook.key
        form, template = webhook.format, webhook.diff_url_template
    elif config.notify_secret:
        namespace, _, name = config.notify_secret.rpartition("/")
        key, form, template = "url", config.notify_format, config.notify_diff_url
    else:
        return None
    url = secret_text(cluster, namespace, name, key, "webhook URL").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError(
            Reason.SECRET_INVALID, f"Secret {name!r}: key {key} holds no http(s) URL"
        )
    return Destination(url, form, template, source=f"Secret {namespace}/{name}")


def report_failure(cluster: ClusterAPI, notice: Notice, problem: str) -> None:
    """A Warning Event on the Promotion: its tenant cannot read the operator's logs."""
    obj = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Promotion",
        "metadata": {"name": notice.promotion, "namespace": notice.namespace, "uid": notice.uid},
    }
    cluster.post_event(obj, reason=Reason.NOTIFICATION_FAILED, message=problem, warning=True)


_shared: WebhookNotifier | None = None
_shared_lock = threading.Lock()


def shared_notifier(config: OperatorConfig, cluster: ClusterAPI) -> WebhookNotifier:
    """The process's one notifier (one queue, its workers started on first use)."""
    global _shared  # noqa: PLW0603 - one queue per process, like the lock registry
    with _shared_lock:
        if _shared is None:
            _shared = WebhookNotifier(
                lambda notice: resolve(config, cluster, notice),
                failed=lambda notice, problem: report_failure(cluster, notice, problem),
            )
        return _shared
