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
from pipeline.contract.intake import IntakePolicy
from pipeline.contract.models import (
    ChangeType,
    ChannelEvent,
    CustomerProfile,
    IdentityChange,
    JourneyEvent,
)
from pipeline.engine.graph import Graph
from pipeline.engine.identifiers import DropReason, Normaliser
from pipeline.engine.matching import MatchConfig
from pipeline.engine.namespaces import NamespaceRules
from pipeline.engine.operations import Operation, Operations, Outcome
from pipeline.engine.profile import (
    ProfileBook,
    ProfileOutput,
    Survivorship,
    fold_message,
    possible_message,
)
from pipeline.engine.state import Store


@dataclass(frozen=True)
class StitchConfig:
    normaliser: Normaliser = field(default_factory=Normaliser)
    rules: NamespaceRules = field(default_factory=NamespaceRules)
    survivorship: Survivorship = field(default_factory=Survivorship)
    intake: IntakePolicy = field(default_factory=IntakePolicy)
    # Probabilistic matching; None: deterministic only.
    matching: MatchConfig | None = None


@dataclass
class Outputs:
    """Everything one event produced, in the order the worker would produce it."""

    customer_id: str
    duplicate: bool
    changes: list[IdentityChange] = field(default_factory=list)
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
    ) -> None:
        self.config = config or StitchConfig()
        self.graph = Graph(graph_store, self.config.rules, self.config.matching)
        self.book = ProfileBook(
            profile_store, self.config.survivorship, emit_outputs, rules=self.config.rules
        )
        self.clock = clock
        self.counts = Counts()
        self.operations = Operations(self.graph, self.config.normaliser)

    def process(self, event: ChannelEvent) -> Outputs:
        now: datetime = self.clock()
        nodes, dropped = self.config.normaliser.nodes(event.identifiers, event.traits)
        linked = self.graph.link(event, nodes, now)
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
        out = Outputs(
            outcome.customer_id or "",
            outcome.status == "repeat",
            changes=list(outcome.linked.changes),
        )
        self.counts.changes.update(change.change_type for change in out.changes)
        pending: deque[tuple[str, dict[str, Any]]] = deque(
            (fold.loser, fold_message(fold.winner)) for fold in outcome.linked.folds
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
