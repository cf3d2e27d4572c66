"""The only module that touches the Kubernetes client.

Everything the lifecycle reads or writes in the cluster goes through `Cluster`, so the
lifecycle stays testable against a real API server and the RBAC the chart grants can be
read off this file.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config import incluster_config
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock
from kubernetes.watch.watch import iter_resp_lines

from promotion_operator import API_GROUP, API_VERSION
from promotion_operator.domain.errors import Reason, RetryableError
from promotion_operator.metrics import CALL_ERRORS, CALL_SECONDS, EVENTS

log = logging.getLogger(__name__)
_lock = threading.Lock()
_api_client: client.ApiClient | None = None

Object = dict[str, Any]
# one page at most: more approvals of one Promotion, or more policies, are never needed
_LIST_LIMIT = 500
# Connections kept open to the API server. The client's default is 5 per CPU (10 on a
# 2-core node): fewer than the threads that call it at once (16 promotion workers, the
# refresh round's steps, the batch's newest-wins checks, the Event sender), so in a
# burst every call past the tenth opened a new TLS connection and threw it away after.
CONNECTIONS = 48


def load_config(kubeconfig: str | None = None) -> None:
    """The kubeconfig when one is given, else the in-cluster config in a Pod, else
    ~/.kube/config (see `in_cluster`)."""
    global _api_client  # noqa: PLW0603 - one shared client per process
    with _lock:
        _load(kubeconfig)
        _api_client = _new_client()


def in_cluster(kubeconfig: str | None = None) -> bool:
    """Whether to connect as the Pod's ServiceAccount: no kubeconfig was given (`kubeconfig`,
    the --kubeconfig flag, or $KUBECONFIG) and the process runs in a Pod (the kubelet's
    service address and the mounted token are there). controller-runtime's order."""
    if kubeconfig or os.environ.get("KUBECONFIG"):
        return False
    return bool(os.environ.get(incluster_config.SERVICE_HOST_ENV_NAME)) and os.path.isfile(
        incluster_config.SERVICE_TOKEN_FILENAME
    )


def _load(kubeconfig: str | None) -> None:
    if in_cluster(kubeconfig):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]


def _client() -> client.ApiClient:
    global _api_client  # noqa: PLW0603
    with _lock:
        if _api_client is None:
            _load(None)
            _api_client = _new_client()
        return _api_client


def _new_client() -> client.ApiClient:
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = CONNECTIONS
    return client.ApiClient(configuration)


class NotFoundError(Exception):
    """The object does not exist."""


class ClusterAPI(Protocol):
    """What the lifecycle reads and writes in the cluster; `Cluster` is the real one.

    The lifecycle depends on this protocol only, so its state machine runs against a fake
    of it in unit tests and against the API server in e2e.
    """

    def get_environment(self, namespace: str, name: str) -> Object:
        """Return the Environment object; raise NotFoundError."""
        ...

    def list_promotions(self, namespace: str, environment: str) -> list[Object]:
        """Return the Promotions of one Environment."""
        ...

    def patch_status(self, plural: str, namespace: str, name: str, status: Object) -> None:
        """Merge-patch `.status` of one of our objects."""
        ...

    def list_approvals(self, namespace: str, promotion: str) -> list[Object]:
        """Return the PromotionApprovals naming one Promotion."""
        ...

    def list_promotion_policies(self) -> list[Object]:
        """Return the cluster's PromotionPolicies."""
        ...

    def delete_promotion(self, namespace: str, name: str, uid: str) -> None:
        """Delete a Promotion, only if it is still the object with this uid."""
        ...

    def get_secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """Return a Secret's decoded data; raise NotFoundError."""
        ...

    def get_argocd_application(self, namespace: str, name: str) -> Object:
        """Return an Argo CD Application; raise NotFoundError."""
        ...

    def list_deployments(self, namespace: str, selector: str | None) -> list[Object]:
        """Return the Deployments in a namespace as plain dicts."""
        ...

    def get_argocd_project(self, namespace: str, name: str) -> Object:
        """Return an Argo CD AppProject; raise NotFoundError."""
        ...

    def refresh_argocd_application(self, namespace: str, name: str) -> None:
        """Ask Argo CD to compare an Application with git now (its refresh annotation)."""
        ...

    def post_event(self, obj: Object, *, reason: str, message: str, warning: bool = False) -> None:
        """Record an Event on `obj` (best effort)."""
        ...


@contextlib.contextmanager
def _translated(what: str, operation: str | None = None) -> Iterator[None]:
    """Turn API errors into our own: 404 -> NotFoundError, others -> retryable.

    A 403 is retried too: RBAC is often fixed after the fact, and the message names the
    exact verb and resource the operator's role lacks. Each call is timed (the call
    duration metric, kind `kube`, by verb and resource).
    """
    if operation is None:  # "<verb> <resource>[/<name>] ...": never a name, a closed set
        verb, _, rest = what.partition(" ")
        operation = f"{verb} {rest.split('/', 1)[0].split(' ', 1)[0]}"
    began, failed = time.monotonic(), False
    try:
        yield
    except ApiException as error:
        if error.status == 404:  # an answer, not a failed call
            raise NotFoundError(what) from None
        failed = True
        raise RetryableError(
            Reason.KUBERNETES_API_ERROR,
            f"cannot {what}: API server answered {error.status} {error.reason}",
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        # the API server restarting or unreachable: as retryable as a 503 (the fault
        # campaign found these escaping as bugs while kube-apiserver restarted)
        failed = True
        raise RetryableError(
            Reason.KUBERNETES_API_ERROR,
            f"cannot {what}: API server unreachable ({type(error).__name__})",
        ) from None
    finally:
        CALL_SECONDS.labels("kube", operation).observe(time.monotonic() - began)
        if failed:
            CALL_ERRORS.labels("kube", operation).inc()


@dataclass(frozen=True)
class Page:
    """One page of a paginated LIST: its items, the token of the next page (None on the
    last) and the list's resourceVersion (where a watch starts)."""

    items: list[Object]
    next_token: str | None
    resource_version: str


class WatchExpiredError(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


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

    def get_promotion(self, namespace: str, name: str) -> Object:
        """Return one Promotion; raise NotFoundError."""
        return self._get_custom(API_GROUP, namespace, "promotions", name)

    def list_promotions_page(
        self, namespace: str | None, *, limit: int, token: str | None, timeout: float = 60
    ) -> Page:
        """One page of Promotions (all namespaces when `namespace` is None): a bounded
        read, so a year of history is never one response in memory."""
        kwargs: dict[str, Any] = {"limit": limit, "_request_timeout": timeout}
        if token:
            kwargs["_continue"] = token
        where = namespace or "all namespaces"
        try:
            with _translated(f"list promotions in {where}"):
                if namespace is None:
                    result = self._custom.list_cluster_custom_object(
                        API_GROUP, API_VERSION, "promotions", **kwargs
                    )
                else:
                    result = self._custom.list_namespaced_custom_object(
                        API_GROUP, API_VERSION, namespace, "promotions", **kwargs
                    )
        except RetryableError as error:
            if "answered 410" in error.message:
                raise WatchExpiredError(error.message) from None
            raise
        page = cast(Object, result)
        meta = page.get("metadata") or {}
        return Page(
            items=cast(list[Object], page.get("items") or []),
            next_token=meta.get("continue") or None,
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    def watch_promotions(
        self, namespace: str | None, resource_version: str, *, timeout: int = 300
    ) -> Iterator[tuple[str, Object]]:
        """Yield (ADDED | MODIFIED | DELETED | BOOKMARK, object) from `resource_version` on.

        The server ends the watch after `timeout` seconds; every read has a deadline a
        little past that (bookmarks keep a quiet watch talking), so a dead connection is
        noticed. A 410 (history compacted) raises WatchExpiredError: list again.
        """
        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout,
            "_preload_content": False,
            "_request_timeout": (10, timeout + 30),
        }
        with _translated(f"watch promotions in {namespace or 'all namespaces'}"):
            response: Any
            if namespace is None:
                response = self._custom.list_cluster_custom_object(
                    API_GROUP, API_VERSION, "promotions", **kwargs
                )
            else:
                response = self._custom.list_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, "promotions", **kwargs
                )
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                event = json.loads(line)
                kind, obj = str(event.get("type")), cast(Object, event.get("object") or {})
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpiredError(str(obj.get("message")))
                    raise RetryableError(
                        Reason.KUBERNETES_API_ERROR,
                        f"watching promotions: {obj.get('code')} {obj.get('message')}",
                    )
                yield kind, obj
        finally:
            response.close()
            response.release_conn()

    def list_approvals(self, namespace: str, promotion: str) -> list[Object]:
        """Return the PromotionApprovals naming one Promotion (a field selector: filtered
        server-side, so the cost is this Promotion's approvals, not the namespace's)."""
        with _translated(f"list promotionapprovals in {namespace}"):
            result = self._custom.list_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                "promotionapprovals",
                field_selector=f"spec.promotion={promotion}",
                limit=_LIST_LIMIT,
            )
        return cast(list[Object], cast(Object, result).get("items", []))

    def list_promotion_policies(self) -> list[Object]:
        """Return the cluster's PromotionPolicies (a platform team's few objects)."""
        with _translated("list promotionpolicies"):
            result = self._custom.list_cluster_custom_object(
                API_GROUP, API_VERSION, "promotionpolicies", limit=_LIST_LIMIT
            )
        return cast(list[Object], cast(Object, result).get("items", []))

    def patch_status(self, plural: str, namespace: str, name: str, status: Object) -> None:
        """Merge-patch `.status` of one of our objects (through the status subresource)."""
        with _translated(f"patch {plural}/{name} status in {namespace}"):
            self._custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, namespace, plural, name, {"status": status}
            )

    def delete_promotion(self, namespace: str, name: str, uid: str) -> None:
        """Delete a Promotion, only if it is still the object with this uid (a precondition:
        a Promotion re-created under the same name in the meantime is left alone)."""
        with _translated(f"delete promotions/{name} in {namespace}"):
            self._custom.delete_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                "promotions",
                name,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
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

    def get_argocd_project(self, namespace: str, name: str) -> Object:
        """Return an Argo CD AppProject (its sync windows); raise NotFoundError."""
        return self._get_custom("argoproj.io", namespace, "appprojects", name)

    def refresh_argocd_application(self, namespace: str, name: str) -> None:
        """Set `argocd.argoproj.io/refresh: normal`: Argo CD then compares the Application
        with git at once instead of at its next poll (about 3 minutes), and clears it."""
        with _translated(f"refresh applications.argoproj.io/{name} in {namespace}"):
            self._custom.patch_namespaced_custom_object(
                "argoproj.io",
                "v1alpha1",
                namespace,
                "applications",
                name,
                {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}},
            )

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
        """Record a core/v1 Event on `obj`: queued, posted in the background (best effort:
        an Event is never worth failing or waiting for; see `EventQueue`)."""
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
        _EVENTS.submit(self._core, meta["namespace"], event)


_DROP_WARNING_EVERY = 60.0  # seconds between two "queue full" warnings


class EventQueue:
    """Events are posted by one background thread from a bounded queue, as client-go's
    event recorder does: a promotion's status write never waits on its Event (three of
    them were a promotion's critical path), and an API server slow to take Events costs at
    most `size` queued ones; beyond that the newest are dropped and counted."""

    def __init__(self, size: int = 1024, timeout: float = 10.0) -> None:
        self._queue: queue.Queue[tuple[client.CoreV1Api, str, client.CoreV1Event] | None] = (
            queue.Queue(size)
        )
        self._timeout = timeout
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._warned = -_DROP_WARNING_EVERY

    def submit(self, core: client.CoreV1Api, namespace: str, event: client.CoreV1Event) -> None:
        """Queue one Event; never blocks."""
        with self._start:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._post_forever, name="events")
                self._thread.daemon = True
                self._thread.start()
        try:
            self._queue.put_nowait((core, namespace, event))
        except queue.Full:
            EVENTS.labels("dropped").inc()
            now = time.monotonic()
            if now - self._warned >= _DROP_WARNING_EVERY:  # a flood logs once in a while
                self._warned = now
                log.warning(
                    "Event queue full: dropping Events (%s on %s first)",
                    event.reason,
                    event.metadata.name,
                )

    def flush(self, timeout: float) -> bool:
        """Wait until every queued Event was posted (or given up on); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _post_forever(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is not None:
                    self._post(*item)
            except Exception:  # a bug in one Event must not stop the others
                EVENTS.labels("failed").inc()
                log.exception("posting an Event failed")
            finally:
                self._queue.task_done()

    def _post(self, core: client.CoreV1Api, namespace: str, event: client.CoreV1Event) -> None:
        try:
            with _translated(f"create events/{event.metadata.name} in {namespace}"):
                # the answer is not read into objects: nothing needs it, and this thread's
                # allocations would keep a malloc arena of their own resident
                answer: Any = core.create_namespaced_event(
                    namespace, event, _request_timeout=self._timeout, _preload_content=False
                )
                answer.drain_conn()  # an urllib3 response: read to its end, then its
                answer.release_conn()  # connection goes back to the pool
        except (RetryableError, NotFoundError) as error:  # refused, away, namespace gone
            EVENTS.labels("failed").inc()
            log.info("Event %s not posted: %s", event.reason, error)
        else:
            EVENTS.labels("posted").inc()


_EVENTS = EventQueue()


def flush_events(timeout: float = 5.0) -> bool:
    """Post what is still queued (at shutdown, and in tests); False when time ran out."""
    return _EVENTS.flush(timeout)


STATUS_KEY_FIELD = "hmac-sha256"


def status_key(namespace: str, name: str) -> bytes:
    """The operator's sealing key: Secret `name` in the operator's own namespace.

    Created with 32 random bytes on the first start; replicas racing to create it all read
    the one that won (409), so every replica seals alike. Tenants cannot read this
    namespace, so they cannot seal what they write.
    """
    core = client.CoreV1Api(_client())
    what = f"get or create secret/{name} in {namespace}"
    for _ in range(3):
        with _translated(what, "get-or-create secret"):
            try:
                data = core.read_namespaced_secret(name, namespace).data or {}
                if STATUS_KEY_FIELD in data:
                    return base64.b64decode(data[STATUS_KEY_FIELD])
                raise RetryableError(
                    Reason.KUBERNETES_API_ERROR,
                    f"Secret {namespace}/{name} has no {STATUS_KEY_FIELD!r} key: delete it "
                    "and the operator creates a new one",
                )
            except ApiException as error:
                if error.status != 404:
                    raise
            body = client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name=name,
                    labels={"app.kubernetes.io/managed-by": "promotion-operator"},
                ),
                type="Opaque",
                data={STATUS_KEY_FIELD: base64.b64encode(secrets.token_bytes(32)).decode()},
            )
            try:
                core.create_namespaced_secret(namespace, body)
                log.info("created the status sealing key Secret %s/%s", namespace, name)
            except ApiException as error:
                if error.status != 409:  # another replica created it first: read theirs
                    raise
    raise RetryableError(Reason.KUBERNETES_API_ERROR, f"cannot {what}: it keeps changing")


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's leader-election timings, shortened so a standby takes over in <= 15 s.

    A follower takes the Lease once its record has not changed for `duration` seconds,
    looking every `retry`; the leader gives up (and the process exits) when it could not
    renew for `renew_deadline`, which is shorter than `duration`, so the old leader has
    stopped before a new one can start.
    """

    duration: int = 10
    renew_deadline: int = 7
    retry: int = 2


def lead(
    namespace: str,
    name: str,
    identity: str,
    *,
    on_lost: Callable[[], None],
    timing: LeaseTiming = LeaseTiming(),
) -> None:
    """Block until this process holds the `coordination.k8s.io` Lease, then return.

    The Lease is renewed by a daemon thread for as long as the process lives; if a renewal
    fails past the deadline, `on_lost` is called (the operator exits: two leaders must
    never act at once). Uses the Kubernetes client's own leader election.
    """
    leading = threading.Event()
    election = leaderelection.LeaderElection(
        electionconfig.Config(  # type: ignore[no-untyped-call]
            LeaseLock(name, namespace, identity),  # type: ignore[no-untyped-call]
            lease_duration=timing.duration,
            renew_deadline=timing.renew_deadline,
            retry_period=timing.retry,
            onstarted_leading=leading.set,
            onstopped_leading=on_lost,
        )
    )
    thread = threading.Thread(target=election.run, name="leader-election", daemon=True)
    thread.start()
    log.info("waiting to lead Lease %s/%s as %s", namespace, name, identity)
    leading.wait()
    log.info("leading Lease %s/%s as %s", namespace, name, identity)
