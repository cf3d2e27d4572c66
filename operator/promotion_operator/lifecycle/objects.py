"""Our two kinds as the lifecycle sees them: parsed, with their raw object kept."""

from __future__ import annotations

from dataclasses import dataclass

from promotion_operator import REQUESTED_BY_ANNOTATION
from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.models import (
    EnvironmentSpec,
    EnvironmentStatus,
    PromotionSpec,
    PromotionStatus,
)
from promotion_operator.k8s import ClusterAPI, NotFoundError, Object


@dataclass(frozen=True)
class Environment:
    """An Environment object, parsed."""

    namespace: str
    name: str
    generation: int
    spec: EnvironmentSpec
    status: EnvironmentStatus
    raw: Object

    @classmethod
    def parse(cls, obj: Object) -> Environment:
        """Parse an Environment object as stored by the API server."""
        meta = obj["metadata"]
        try:
            spec = EnvironmentSpec.model_validate(obj.get("spec") or {})
        except ValueError as error:
            raise PermanentError(
                Reason.INVALID_SPEC, f"Environment {meta['name']}: invalid spec: {error}"
            ) from error
        status = EnvironmentStatus.model_validate(obj.get("status") or {})
        return cls(meta["namespace"], meta["name"], meta.get("generation", 1), spec, status, obj)

    @property
    def uid(self) -> str:
        """The UID the API server gave the object (empty in objects not yet stored)."""
        return str(self.raw["metadata"].get("uid") or "")

    @property
    def overlay_file(self) -> str:
        """The repository-relative path of the overlay's kustomization.yaml."""
        return self.spec.overlay.path.rstrip("/") + "/kustomization.yaml"


def load_environment(cluster: ClusterAPI, namespace: str, name: str) -> Environment:
    """Read an Environment of the same namespace; a missing one is a permanent error."""
    try:
        return Environment.parse(cluster.get_environment(namespace, name))
    except NotFoundError:
        raise PermanentError(
            Reason.ENVIRONMENT_NOT_FOUND,
            f"Environment {name!r} not found in namespace {namespace!r} "
            "(a Promotion can only name an Environment of its own namespace)",
        ) from None


@dataclass(frozen=True)
class Promotion:
    """A Promotion object, parsed."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: PromotionSpec
    status: PromotionStatus
    raw: Object

    @classmethod
    def parse(cls, obj: Object) -> Promotion:
        """Parse a Promotion as stored by the API server (already schema-validated)."""
        meta = obj["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=meta.get("generation", 1),
            spec=PromotionSpec.model_validate(obj.get("spec") or {}),
            status=PromotionStatus.model_validate(obj.get("status") or {}),
            raw=obj,
        )

    @property
    def current(self) -> bool:
        """Whether status already describes this generation."""
        return self.status.observed_generation == self.generation

    @property
    def created_at(self) -> str:
        """When the API server created the object (set by the server; cannot be forged)."""
        return str(self.raw["metadata"].get("creationTimestamp") or "")

    def requested_by(self) -> str:
        """Who asked: the annotation if set, else the field manager that set spec.version."""
        meta = self.raw["metadata"]
        annotated = (meta.get("annotations") or {}).get(REQUESTED_BY_ANNOTATION)
        if annotated:
            return str(annotated)
        for entry in reversed(meta.get("managedFields") or []):
            fields = entry.get("fieldsV1") or {}
            if "f:version" in (fields.get("f:spec") or {}):
                return str(entry.get("manager", "unknown"))
        return "unknown"
