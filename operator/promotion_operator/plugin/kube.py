"""The plugin's Kubernetes access, with the user's own kubeconfig and rights.

kubectl's resolution: `--kubeconfig`, else `$KUBECONFIG` (a `:`-separated list, merged),
else `~/.kube/config`; `--context`, else the current context; `-n`, else the context's
namespace, else `default`. Every call has a deadline; following a Promotion is a watch.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3 import HTTPHeaderDict

from promotion_operator import API_GROUP, API_VERSION

Object = dict[str, Any]
REQUEST_TIMEOUT = 30.0  # seconds, for every API call but a watch
WATCH_SECONDS = 60  # a watch is re-opened (from its last resourceVersion) this often


class KubeError(Exception):
    """An API call failed; the message says what and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _server_message(error: ApiException) -> str | None:
    """The `message` of the API server's Status body (an admission policy's or a CEL
    rule's own words), if it sent one."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        return None
    message = body.get("message") if isinstance(body, dict) else None
    return str(message) if message else None


def _error(what: str, error: ApiException) -> KubeError:
    if error.status == 404:
        return KubeError(f"{what}: not found", 404)
    if error.status == 403:
        return KubeError(f"{what}: forbidden (your account may not do this)", 403)
    return KubeError(f"{what}: the API server answered {error.status} {error.reason}", error.status)


@dataclass(frozen=True)
class KubeFlags:
    """kubectl's connection flags, as the user gave them."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    as_user: str | None = None  # kubectl's --as
    as_groups: tuple[str, ...] = ()  # kubectl's --as-group, repeated


class _Impersonating:
    """The API client's urllib3 pool with kubectl's impersonation headers on every request.

    The Kubernetes client keeps its default headers in a plain dict, one value per name;
    `Impersonate-Group` is repeated once per group (as kubectl sends it), so the headers
    are added here, as an HTTPHeaderDict that urllib3 sends line by line.
    """

    def __init__(self, pool: Any, user: str, groups: tuple[str, ...]) -> None:
        self._pool = pool
        self._user = user
        self._groups = groups

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        """The pool's request, with Impersonate-User and one Impersonate-Group per group."""
        headers = HTTPHeaderDict(kwargs.pop("headers", None) or {})
        headers["Impersonate-User"] = self._user
        for group in self._groups:
            headers.add("Impersonate-Group", group)
        return self._pool.request(method, url, *args, headers=headers, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class Kube:
    """Our kinds, Secrets and who-am-I, in one namespace, through one API client."""

    def __init__(self, flags: KubeFlags) -> None:
        try:
            api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=flags.kubeconfig, context=flags.context
            )
            contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=flags.kubeconfig
            )
        except (config.ConfigException, OSError) as error:
            raise KubeError(f"cannot load the kubeconfig: {error}") from None
        if flags.as_groups and not flags.as_user:
            raise KubeError("--as-group needs --as: the user to impersonate (as kubectl)")
        if flags.as_user:
            rest = api.rest_client
            rest.pool_manager = _Impersonating(rest.pool_manager, flags.as_user, flags.as_groups)
        chosen = next((c for c in contexts if c["name"] == flags.context), active)
        self.namespace = flags.namespace or (chosen or {}).get("context", {}).get(
            "namespace", "default"
        )
        self._api = api
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    # -- our kinds -----------------------------------------------------------------------

    def get(self, plural: str, name: str) -> Object:
        """One Environment or Promotion of the namespace."""
        try:
            obj = self._custom.get_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                self.namespace,
                plural,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            raise _error(f"{plural}/{name} in namespace {self.namespace}", error) from None
        return cast(Object, obj)

    def list(
        self, plural: str, *, environment: str | None = None, all_namespaces: bool = False
    ) -> list[Object]:
        """Every object of a kind in the namespace (or all), optionally of one Environment
        (a field selector: filtered by the server)."""
        selector = f"spec.environment={environment}" if environment else None
        items: list[Object] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": 500, "_request_timeout": REQUEST_TIMEOUT}
            if selector:
                kwargs["field_selector"] = selector
            if token:
                kwargs["_continue"] = token
            try:
                if all_namespaces:
                    page = self._custom.list_cluster_custom_object(
                        API_GROUP, API_VERSION, plural, **kwargs
                    )
                else:
                    page = self._custom.list_namespaced_custom_object(
                        API_GROUP, API_VERSION, self.namespace, plural, **kwargs
                    )
            except ApiException as error:
                where = "all namespaces" if all_namespaces else f"namespace {self.namespace}"
                raise _error(f"list {plural} in {where}", error) from None
            items.extend(cast(Object, page).get("items", []))
            token = cast(Object, page).get("metadata", {}).get("continue")
            if not token:
                return items

    def create_promotion(self, body: Object) -> Object:
        """Create a Promotion; a 409 (name taken) is a KubeError with status 409."""
        try:
            obj = self._custom.create_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                self.namespace,
                "promotions",
                body,
                field_manager="kubectl-promote",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 409:
                raise KubeError("name taken", 409) from None
            raise _error(f"create a Promotion in namespace {self.namespace}", error) from None
        return cast(Object, obj)

    def create_approval(self, body: Object) -> Object:
        """Create a PromotionApproval, as the admission policies stamp it. A refusal is a
        KubeError with the API server's own message (an admission policy's, RBAC's)."""
        try:
            obj = self._custom.create_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                self.namespace,
                "promotionapprovals",
                body,
                field_manager="kubectl-promote",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            said = _server_message(error)
            if said is None:
                raise _error(f"create a PromotionApproval in {self.namespace}", error) from None
            raise KubeError(f"the API server refused the approval: {said}", error.status) from None
        return cast(Object, obj)

    def delete_promotion(self, name: str) -> None:
        """Delete a Promotion (a dry run the plugin made); gone already is fine."""
        try:
            self._custom.delete_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                self.namespace,
                "promotions",
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status != 404:
                raise _error(f"delete promotions/{name}", error) from None

    def watch_promotion(
        self, name: str, resource_version: str, *, until: float | None = None
    ) -> Iterator[Object]:
        """Yield the Promotion each time it changes (a watch, re-opened from the last
        resourceVersion every WATCH_SECONDS; a 410 re-reads the object). Ends when the
        caller stops iterating, the object is deleted, or at `until` (time.monotonic())."""
        version = resource_version
        while True:
            seconds = WATCH_SECONDS
            if until is not None:
                seconds = min(seconds, math.ceil(until - time.monotonic()))
                if seconds <= 0:
                    return
            watcher = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in watcher.stream(  # type: ignore[no-untyped-call]
                    self._custom.list_namespaced_custom_object,
                    API_GROUP,
                    API_VERSION,
                    self.namespace,
                    "promotions",
                    field_selector=f"metadata.name={name}",
                    resource_version=version,
                    timeout_seconds=seconds,
                    allow_watch_bookmarks=True,
                    _request_timeout=seconds + 10,
                ):
                    obj = cast(Object, event["object"])
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    if event["type"] == "DELETED":
                        return
                    if event["type"] in ("ADDED", "MODIFIED"):
                        yield obj
            except ApiException as error:
                if error.status != 410:
                    raise _error(f"watch promotions/{name}", error) from None
                fresh = self.get("promotions", name)
                version = fresh["metadata"]["resourceVersion"]
                yield fresh
            finally:
                watcher.stop()  # type: ignore[no-untyped-call]

    # -- other things --------------------------------------------------------------------

    def secret_data(self, name: str) -> dict[str, bytes]:
        """A Secret's decoded data; KubeError 403/404 when it may not be read or is gone."""
        try:
            secret = self._core.read_namespaced_secret(
                name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            raise _error(f"secret/{name} in namespace {self.namespace}", error) from None
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def whoami(self) -> str | None:
        """The authenticated user name (SelfSubjectReview), or None when not allowed."""
        try:
            review = client.AuthenticationV1Api(self._api).create_self_subject_review(
                client.V1SelfSubjectReview(), _request_timeout=REQUEST_TIMEOUT
            )
        except (ApiException, ValueError):
            return None
        info = review.status.user_info if review.status else None
        return info.username if info else None
