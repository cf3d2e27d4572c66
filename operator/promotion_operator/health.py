"""Health sources: how to tell what an environment runs and whether it is healthy.

Each source turns what it observes into an `Observation`. The Argo CD and Deployment
sources are pure functions over the objects (the lifecycle fetches them through `k8s`);
the HTTP source does its own request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from promotion_operator.domain.images import pinned_version, split_reference, tags_of
from promotion_operator.domain.models import HealthStatus, HTTPHealth
from promotion_operator.fetch import BodyTooLargeError, FetchError, fetch

MAX_HEALTH_BODY = 64 << 10
"""The most bytes of a health endpoint's body read; a version field needs far fewer."""

MAX_OPERATION_MESSAGE = 300
"""The most characters of a failed Argo CD sync's message copied into a status message."""

Object = Mapping[str, Any]


@dataclass(frozen=True)
class Observation:
    """What one look at an environment showed."""

    health: HealthStatus
    images: dict[str, str | None] = field(default_factory=dict)  # image -> live tag
    message: str = ""

    @property
    def live_version(self) -> str | None:
        """The tag every image runs, or None when they differ or one is unknown."""
        return pinned_version(self.images)

    def runs(self, version: str) -> bool:
        """Whether every image runs exactly `version`."""
        return bool(self.images) and all(tag == version for tag in self.images.values())


def combine(observations: Sequence[Observation]) -> Observation:
    """Merge several sources: the worst health wins; images agree or show as unknown."""
    if not observations:
        return Observation(HealthStatus.UNKNOWN, message="no health source configured")
    order = [
        HealthStatus.DEGRADED,
        HealthStatus.UNKNOWN,
        HealthStatus.PROGRESSING,
        HealthStatus.HEALTHY,
    ]
    worst = min((o.health for o in observations), key=order.index)
    images: dict[str, str | None] = {}
    for observation in observations:
        for image, tag in observation.images.items():
            if image in images and images[image] != tag:
                images[image] = None
            else:
                images.setdefault(image, tag)
    messages = "; ".join(o.message for o in observations if o.message)
    return Observation(worst, images, messages)


def _revision(block: Object) -> str | None:
    """The revision of a sync or sync result: `revision`, or the joined `revisions` of an
    Application with several sources."""
    revisions = block.get("revisions")
    if isinstance(revisions, list) and revisions:
        return ",".join(str(r) for r in revisions)
    revision = block.get("revision")
    return str(revision) if revision else None


def _retries(operation_state: Object) -> int:
    """How many times Argo CD has retried the current sync operation."""
    count = operation_state.get("retryCount")
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def _synced_past(sync: Object, operation_state: Object) -> bool:
    """Whether the app is compared against a newer commit than its last operation synced: a
    failed sync that a later commit (a revert, say) made moot once the app is Synced."""
    synced = _revision(sync)
    operated = _revision(operation_state.get("syncResult") or {})
    return synced is not None and operated is not None and synced != operated


def observe_argocd(application: Object, images: Sequence[str], name: str) -> Observation:
    """Read an Argo CD Application as a real Argo CD writes it during and after a sync.

    Healthy needs all of: `health.status` Healthy, `sync.status` Synced, and, when there
    was a sync operation, `operationState.phase` Succeeded. A Failed or Error operation,
    or one Running a retry after a failed attempt, is Degraded. Argo CD shows "Healthy" with a
    stale health while an operation still runs or just after it succeeded and before the
    new revision is Synced; those are Progressing. The last operation's revision may be
    older than `sync.revision`: a commit that changes nothing this Application renders (a
    push to another overlay of the repository) moves `sync.revision` and starts no sync,
    and Synced then says the live objects match the new commit. The live tags come from
    `status.summary.images` (an image listed with two tags at once, mid-rollout, has no
    single tag).
    """
    status = application.get("status") or {}
    health = (status.get("health") or {}).get("status")
    sync_block = status.get("sync") or {}
    sync = sync_block.get("status")
    tags = tags_of((status.get("summary") or {}).get("images") or [], images)
    operation_state = status.get("operationState") or {}
    operation = operation_state.get("phase")
    # Argo CD retries a failed automated sync (5 times by default, with backoff) and
    # shows the operation Running meanwhile: a retry means the last attempt failed
    retrying = operation == "Running" and _retries(operation_state) > 0
    failed = operation in {"Failed", "Error"} or retrying
    failure_superseded = failed and sync == "Synced" and _synced_past(sync_block, operation_state)
    operation_done = not operation_state or operation == "Succeeded" or failure_superseded
    if health == "Healthy" and sync == "Synced" and operation_done:
        return Observation(HealthStatus.HEALTHY, tags, "")
    message = f"Argo CD Application {name}: health {health or 'unknown'}, sync {sync or 'unknown'}"
    if operation and operation != "Succeeded" and not failure_superseded:
        message += f", operation {operation}"
        if retrying:
            message += f" (retry {_retries(operation_state)} after a failed sync)"
        detail = str(operation_state.get("message") or "")[:MAX_OPERATION_MESSAGE]
        if detail and failed:
            message += f" ({detail})"
    if health in {"Degraded", "Missing"} or (failed and not failure_superseded):
        return Observation(HealthStatus.DEGRADED, tags, message)
    if health in ("Progressing", "Healthy") or sync == "OutOfSync" or not operation_done:
        return Observation(HealthStatus.PROGRESSING, tags, message)
    return Observation(HealthStatus.UNKNOWN, tags, message)


def _deployment_rolled_out(deployment: Object) -> tuple[bool, str]:
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta.get("name", "?")
    wanted = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, f"deployment {name}: rollout not observed yet"
    if status.get("updatedReplicas", 0) < wanted:
        return False, f"deployment {name}: {status.get('updatedReplicas', 0)}/{wanted} updated"
    if status.get("replicas", 0) > status.get("updatedReplicas", 0):
        return False, f"deployment {name}: old replicas are pending termination"
    available = status.get("availableReplicas", 0)
    needed = max(wanted, status.get("updatedReplicas", 0))
    if available < needed:
        return False, f"deployment {name}: {available}/{needed} available"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Available" and condition.get("status") != "True":
            return False, f"deployment {name}: not Available"
    return True, ""


def observe_deployments(deployments: Sequence[Object], images: Sequence[str]) -> Observation:
    """Healthy when every Deployment using one of the images is rolled out and Available."""
    references: list[str] = []
    problems: list[str] = []
    for deployment in deployments:
        containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers"
        ) or []
        used = [c.get("image", "") for c in containers]
        if not any(split_reference(ref)[0] in images for ref in used):
            continue
        references.extend(used)
        ok, problem = _deployment_rolled_out(deployment)
        if not ok:
            problems.append(problem)
    tags = tags_of(references, images)
    missing = [image for image, tag in tags.items() if tag is None]
    if missing:
        problems.append("no Deployment runs " + ", ".join(missing))
    if problems:
        return Observation(HealthStatus.PROGRESSING, tags, "; ".join(problems))
    return Observation(HealthStatus.HEALTHY, tags, "")


def _field(document: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(document, Mapping) or part not in document:
            return None
        document = document[part]
    return document


def observe_http(spec: HTTPHealth, images: Sequence[str], *, timeout: float = 5.0) -> Observation:
    """GET the URL: healthy on the expected status; the version field (if any) gives the tag.

    The URL is a tenant's, so the request is bounded: `timeout` seconds for the whole call
    (connect, headers, body), at most MAX_HEALTH_BODY bytes of body, and no redirect is
    followed (a 3xx other than the expected status is Unknown, saying so). A `user:pass@`
    in the URL is sent as Basic auth to that URL only and never shown. Never raises.
    """
    url, headers = _split_userinfo(spec.url)
    where = f"GET {url}"
    try:
        reply = fetch("GET", url, headers=headers, deadline=timeout, max_body=MAX_HEALTH_BODY)
    except BodyTooLargeError:
        return Observation(
            HealthStatus.UNKNOWN,
            message=f"{where}: the body is larger than {MAX_HEALTH_BODY} bytes; "
            "point health.http.url at a small status endpoint",
        )
    except FetchError as error:
        return Observation(HealthStatus.UNKNOWN, message=f"{where}: {error.problem}")
    if reply.status != spec.expected_status and reply.is_redirect:
        return Observation(
            HealthStatus.UNKNOWN,
            message=f"{where}: answered {reply.status}, a redirect; redirects are not "
            "followed: set health.http.url to the final address",
        )
    if reply.status != spec.expected_status:
        return Observation(
            HealthStatus.DEGRADED,
            message=f"{where}: status {reply.status}, expected {spec.expected_status}",
        )
    if spec.version_field is None:
        return Observation(HealthStatus.HEALTHY)
    try:
        version = _field(json.loads(reply.body), spec.version_field)
    except (ValueError, RecursionError):  # not JSON (or nested past the parser's stack)
        version = None
    if not isinstance(version, str):
        return Observation(
            HealthStatus.UNKNOWN,
            message=f"{where}: no string field {spec.version_field} in the body",
        )
    return Observation(HealthStatus.HEALTHY, dict.fromkeys(images, version))


def _split_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """The URL without `user:pass@`, and the Authorization header it stood for."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return bare, {"Authorization": "Basic " + base64.b64encode(user_pass.encode()).decode()}
