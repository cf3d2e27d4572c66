"""The only module that touches the Kubernetes client.

Everything the lifecycle reads or writes in the cluster goes through `Cluster`, so the
lifecycle stays testable against a real API server and the RBAC the chart grants can be
read off this file.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from promotion_operator import API_GROUP, API_VERSION
from promotion_operator.domain.errors import Reason, RetryableError

_lock = threading.Lock()
_api_client: client.ApiClient | None = None

Object = dict[str, Any]


def load_config(kubeconfig: str | None = None) -> None:
    """Load in-cluster config when running in a Pod, else the kubeconfig."""
    global _api_client  # noqa: PLW0603 - one shared client per process
    with _lock:
        _load(kubeconfig)
        _api_client = client.ApiClient()


def _load(kubeconfig: str | None) -> None:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]


def _client() -> client.ApiClient:
    global _api_client  # noqa: PLW0603
    with _lock:
        if _api_client is None:
            _load(None)
            _api_client = client.ApiClient()
        return _api_client


class NotFoundError(Exception):
    """The object does not exist."""


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn API errors into our own: 404 -> NotFoundError, others -> retryable.

    A 403 is retried too: RBAC is often fixed after the fact, and the message names the
    exact verb and resource the operator's role lacks.
    """
    try:
        yield
    except ApiException as error:
        if error.status == 404:
            raise NotFoundError(what) from None
        raise RetryableError(
            Reason.KUBERNETES_API_ERROR,
            f"cannot {what}: API server answered {error.status} {error.reason}",
        ) from None


class Cluster:
    """Typed access to the objects the operator reads and writes."""

    def __init__(self) -> None:
        api = _client()
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._apps = client.AppsV1Api(api)

    # -- our kinds -------------------------------------------------------------------
    def get_environment(self, namespace: str, name: str) -> Object:
        """Return the Environment object; raise NotFoundError."""
        return self._get_custom(API_GROUP, namespace, "environments", name)

    def get_promotion(self, namespace: str, name: str) -> Object:
        """Return the Promotion object; raise NotFoundError."""
        return self._get_custom(API_GROUP, namespace, "promotions", name)

    def list_promotions(self, namespace: str, environment: str) -> list[Object]:
        """Return the Promotions of one Environment (a field selector: filtered server-side)."""
        with _translated(f"list promotions in {namespace}"):
            result = self._custom.list_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                "promotions",
                field_selector=f"spec.environment={environment}",
            )
        return cast(list[Object], cast(Object, result).get("items", []))

    def patch_status(self, plural: str, namespace: str, name: str, status: Object) -> None:
        """Merge-patch `.status` of one of our objects (through the status subresource)."""
        with _translated(f"patch {plural}/{name} status in {namespace}"):
            self._custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, namespace, plural, name, {"status": status}
            )

    # -- things we read --------------------------------------------------------------
    def get_secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """Return a Secret's decoded data; raise NotFoundError."""
        with _translated(f"get secret/{name} in {namespace}"):
            secret = self._core.read_namespaced_secret(name, namespace)
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def get_argocd_application(self, namespace: str, name: str) -> Object:
        """Return an Argo CD Application; raise NotFoundError."""
        return self._get_custom("argoproj.io", namespace, "applications", name)

    def list_deployments(self, namespace: str, selector: str | None) -> list[Object]:
        """Return the Deployments in a namespace as plain dicts."""
        with _translated(f"list deployments in {namespace}"):
            result = self._apps.list_namespaced_deployment(namespace, label_selector=selector or "")
        plain = _client().sanitize_for_serialization(result)  # type: ignore[no-untyped-call]
        return cast(list[Object], cast(Object, plain).get("items", []))

    def _get_custom(self, group: str, namespace: str, plural: str, name: str) -> Object:
        version = API_VERSION if group == API_GROUP else "v1alpha1"
        with _translated(f"get {plural}.{group}/{name} in {namespace}"):
            obj = self._custom.get_namespaced_custom_object(group, version, namespace, plural, name)
        return cast(Object, obj)

    # -- events ----------------------------------------------------------------------
    def post_event(self, obj: Object, *, reason: str, message: str, warning: bool = False) -> None:
        """Record a core/v1 Event on `obj` (best effort: an event is never worth failing)."""
        meta = obj["metadata"]
        now = dt.datetime.now(dt.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{meta['name']}.{uuid.uuid4().hex[:12]}", namespace=meta["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=obj.get("apiVersion", f"{API_GROUP}/{API_VERSION}"),
                kind=obj.get("kind"),
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="promotion-operator"),
            reporting_component="promotion-operator",
            reporting_instance="promotion-operator",
        )
        with contextlib.suppress(ApiException):
            self._core.create_namespaced_event(meta["namespace"], event)
