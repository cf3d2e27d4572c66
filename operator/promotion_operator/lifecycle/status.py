"""Writing a Promotion's status: conditions, the patch, one Event per transition."""

from __future__ import annotations

import datetime as dt
import logging

from promotion_operator.domain.conditions import set_condition
from promotion_operator.domain.errors import ConditionType
from promotion_operator.domain.models import Phase, dump, status_patch
from promotion_operator.domain.times import parse_time, precise_timestamp, timestamp
from promotion_operator.k8s import ClusterAPI
from promotion_operator.lifecycle.objects import Promotion
from promotion_operator.metrics import STAGE_SECONDS, TRANSITIONS

log = logging.getLogger(__name__)


class StatusWriter:
    """Holds the status being built and writes it, with an Event per phase transition."""

    def __init__(self, cluster: ClusterAPI, promotion: Promotion, moment: dt.datetime) -> None:
        self.cluster = cluster
        self.promotion = promotion
        self.before = promotion.status
        self.status = promotion.status.model_copy(deep=True)
        self.moment = moment
        self.stamp = timestamp(moment)

    @property
    def phase(self) -> Phase | None:
        """The phase being built."""
        return self.status.phase

    def condition(
        self, type_: ConditionType, *, status: bool | None, reason: str, message: str = ""
    ) -> None:
        """Upsert one condition for the current generation."""
        self.status.conditions = set_condition(
            self.status.conditions,
            type_=type_,
            status=status,
            reason=reason,
            message=message,
            now=self.stamp,
            generation=self.promotion.generation,
        )

    def write(self, *, event_reason: str | None = None, warning: bool = False) -> None:
        """Patch status when it changed (fields that went away are removed) and post an
        Event if asked: on a phase transition, or a warning."""
        if dump(self.status) != dump(self.before):
            self.cluster.patch_status(
                "promotions",
                self.promotion.namespace,
                self.promotion.name,
                status_patch(self.before, self.status),
            )
        phase_changed = self.before.phase != self.status.phase
        if phase_changed and self.status.phase is not None:
            reason = self._ready_reason()
            TRANSITIONS.labels(self.status.phase.value, reason).inc()
            log.info(
                "%s -> %s (%s): %s",
                self.before.phase or "new",
                self.status.phase,
                reason,
                self.status.message or "",
            )
        if event_reason and (phase_changed or warning):
            self.event(event_reason, self.status.message or str(self.status.phase), warning=warning)
        self.before = self.status.model_copy(deep=True)

    def _ready_reason(self) -> str:
        ready = next(
            (c for c in self.status.conditions or () if c.type == ConditionType.READY), None
        )
        return ready.reason if ready is not None else ""

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        """Post an Event on the Promotion."""
        self.cluster.post_event(self.promotion.raw, reason=reason, message=message, warning=warning)

    def finish(self, phase: Phase, reason: str, message: str, *, warning: bool = False) -> None:
        """End this generation in `phase`: Ready says how, and the Event tells the story."""
        self.status.phase = phase
        self.status.message = message
        self.status.finished_at = precise_timestamp(self.moment)
        self.condition(
            ConditionType.READY, status=phase == Phase.SUCCEEDED, reason=reason, message=message
        )
        if self.before.phase != phase and self.status.started_at:
            taken = (self.moment - parse_time(self.status.started_at)).total_seconds()
            STAGE_SECONDS.labels("total").observe(max(0.0, taken))
        self.write(event_reason=reason, warning=warning)
