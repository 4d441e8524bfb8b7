"""The stitching engine in one process: the same pure stages the worker runs, without Kafka.

``process(event)`` normalises the event's identifiers, links them in the graph, then hands the
profile stage every message the worker would put on the customer-ops topic, in order, until
none is left. Used by ``omnistitch replay`` and by the tests.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.clock import Clock, system_clock
from pipeline.contract.event_json import fast_event
from pipeline.contract.intake import IntakePolicy
from pipeline.contract.models import (
    ChangeType,
    ChannelEvent,
    CustomerProfile,
    IdentityChange,
    JourneyEvent,
)
from pipeline.engine.erasure import Suppression
from pipeline.engine.graph import Graph
from pipeline.engine.identifiers import DropReason, Normaliser
from pipeline.engine.journey import JOURNEY_PROPERTIES
from pipeline.engine.matching import MatchConfig
from pipeline.engine.messages import (
    erase_message,
    fold_message,
    possible_message,
    rebuild_message,
    reset_message,
)
from pipeline.engine.namespaces import NamespaceRules
from pipeline.engine.operations import Operation, Operations, Outcome
from pipeline.engine.profile import ProfileBook, ProfileOutput, Survivorship
from pipeline.engine.state import Store


def read_event(body: str) -> ChannelEvent:
    """An event kept as its JSON line (``Stitcher(keep_events=True)``) read back."""
    return fast_event(body) or ChannelEvent.model_validate_json(body)


@dataclass(frozen=True)
class StitchConfig:
    normaliser: Normaliser = field(default_factory=Normaliser)
    rules: NamespaceRules = field(default_factory=NamespaceRules)
    survivorship: Survivorship = field(default_factory=Survivorship)
    intake: IntakePolicy = field(default_factory=IntakePolicy)
    # Probabilistic matching; None: deterministic only.
    matching: MatchConfig | None = None
    # The keyed hash of erased identifiers; None: erase is refused.
    suppression: Suppression | None = None
    # The event properties journey events carry (pipeline.engine.journey).
    journey_properties: frozenset[str] = JOURNEY_PROPERTIES


@dataclass
class Outputs:
    """Everything one event produced, in the order the worker would produce it."""

    customer_id: str
    duplicate: bool
    changes: list[IdentityChange] = field(default_factory=list)
    # The event carried an erased person's identifier and was dropped.
    erased: bool = False
    profiles: list[CustomerProfile] = field(default_factory=list)
    tombstones: list[str] = field(default_factory=list)
    journeys: list[JourneyEvent] = field(default_factory=list)

    def collect(self, produced: ProfileOutput) -> None:
        self.profiles.extend(produced.profiles)
        self.tombstones.extend(produced.tombstones)
        self.journeys.extend(produced.journeys)


@dataclass
class Counts:
    events: int = 0
    duplicates: int = 0
    erased: int = 0  # dropped: they carried an erased person's identifier
    dropped_identifiers: Counter[DropReason] = field(default_factory=Counter)
    changes: Counter[ChangeType] = field(default_factory=Counter)

    @property
    def profiles(self) -> int:
        return self.changes[ChangeType.created] - self.changes[ChangeType.merged]


class Stitcher:
    def __init__(
        self,
        graph_store: Store,
        profile_store: Store,
        config: StitchConfig | None = None,
        clock: Clock = system_clock,
        emit_outputs: bool = True,
        keep_events: bool = False,
    ) -> None:
        """``keep_events``: keep every event with its linking decision (its JSON form, or the
        body ``process`` is given), so that ``unlink`` and ``split`` can rebuild the parts'
        profiles; without it they are refused."""
        self.config = config or StitchConfig()
        self.keep_events = keep_events
        self.graph = Graph(
            graph_store, self.config.rules, self.config.matching, self.config.suppression
        )
        self.book = ProfileBook(
            profile_store,
            self.config.survivorship,
            emit_outputs,
            rules=self.config.rules,
            journey_properties=self.config.journey_properties,
        )
        self.clock = clock
        self.counts = Counts()
        self.operations = Operations(
            self.graph, self.config.normaliser, read_event if keep_events else None
        )

    def process(self, event: ChannelEvent, body: str | None = None) -> Outputs:
        """``body``: the event's JSON line as read (kept with ``keep_events``; default: the
        event's JSON form)."""
        now: datetime = self.clock()
        nodes, dropped = self.config.normaliser.nodes(event.identifiers, event.traits)
        if self.keep_events and body is None:
            body = event.model_dump_json()
        linked = self.graph.link(event, nodes, now, body if self.keep_events else None)
        if linked.erased:
            self.counts.erased += 1
            return Outputs("", False, erased=True)
        self.counts.events += 1
        self.counts.duplicates += linked.duplicate
        if not linked.duplicate:
            self.counts.dropped_identifiers.update(dropped)
            self.counts.changes.update(change.change_type for change in linked.changes)
        out = Outputs(
            linked.customer_id, linked.duplicate, changes=[] if linked.duplicate else linked.changes
        )
        pending: deque[tuple[str, dict[str, Any]]] = deque(
            (fold.loser, fold_message(fold.winner)) for fold in linked.folds
        )
        for a, b in linked.possible:
            pending.extend([(a, possible_message(b)), (b, possible_message(a))])
        self._drain(pending, out, now)
        out.collect(
            produced := self.book.add_event(
                linked.customer_id, event, linked.nodes, now, repeat=linked.duplicate
            )
        )
        pending.extend(produced.forwards)
        self._drain(pending, out, now)
        return out

    def operate(self, operation: Operation) -> tuple[Outcome, Outputs]:
        """An operator's decision (pipeline.engine.operations), then what the profile stage
        makes of its merges — in order with the events, as the worker will."""
        now: datetime = self.clock()
        outcome = self.operations.apply(operation, now)
        if outcome.status == "repeat":
            # In one process nothing of the first application can have been lost (the worker,
            # where a crash may lose outputs, sends them again: pipeline.stream.stages).
            return outcome, Outputs(outcome.customer_id or "", True)
        out = Outputs(outcome.customer_id or "", False, changes=list(outcome.linked.changes))
        self.counts.changes.update(change.change_type for change in out.changes)
        pending: deque[tuple[str, dict[str, Any]]] = deque(
            (fold.loser, fold_message(fold.winner)) for fold in outcome.linked.folds
        )
        pending.extend((gone, erase_message()) for gone in outcome.erased)
        for rebuild in outcome.rebuilds:
            pending.append(
                (rebuild.customer_id, reset_message(rebuild.merged, outcome.operation_id))
            )
            pending.extend(
                (rebuild.customer_id, rebuild_message(event, nodes, corrects))
                for event, nodes, corrects in rebuild.events
            )
        self._drain(pending, out, now)
        return outcome, out

    def _drain(
        self, pending: deque[tuple[str, dict[str, Any]]], out: Outputs, now: datetime
    ) -> None:
        """Hand the profile stage every pending message, and what they forward, until none is
        left."""
        while pending:
            customer_id, message = pending.popleft()
            produced = self.book.handle(customer_id, message, now)
            out.collect(produced)
            pending.extend(produced.forwards)

    def customer_of_event(self, event_id: str) -> str | None:
        return self.graph.customer_of_event(event_id)
