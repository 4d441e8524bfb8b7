"""Profiles: the merged view of one customer, kept by the stage keyed by customer id.

Pure (state behind pipeline.engine.state.Store, key ``p|<customer_id>``). Four messages reach it:
an event routed to a customer (update the profile, place the event in the journey, once per
event id); a fold (the linking stage merged this customer away: hand its state to the winner
and leave a forward pointer); an absorb (take over a merged-away customer's state); a possible
match (probabilistic matching found another customer similar, without merging).

Survivorship of traits: the value from the source of highest precedence wins; among equals, the
most recent non-empty value (by event time) wins.

State is bounded (see ProfileBounds and docs/architecture.md, "Worst-case state sizes"): the
identifiers follow the namespace rules; seen event ids, journey touches, merged ids and possible
matches keep the latest entries only, counting what left; currencies and consent purposes have
a fixed maximum.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pipeline.contract.models import (
    Channel,
    ChannelEvent,
    ConsentStatement,
    CustomerProfile,
    JourneyEvent,
    TraitOrigin,
    Traits,
    to_millis,
)
from pipeline.engine import traits
from pipeline.engine.composition import keep_latest
from pipeline.engine.graph import to_ms
from pipeline.engine.identifiers import Node
from pipeline.engine.journey import (
    JOURNEY_PROPERTIES,
    Journal,
    JourneyContext,
    context_of,
    journey_event,
    merge_touches,
    place,
)
from pipeline.engine.messages import possible_message, route_message
from pipeline.engine.namespaces import NamespaceRules
from pipeline.engine.state import Store

TRAIT_NAMES = tuple(Traits.model_fields)
# Operation ids of the latest splits a profile was reset by (a repeated reset is skipped).
MAX_RESETS = 20


@dataclass(frozen=True)
class ProfileBounds:
    """How much of a customer's history the profile state keeps (each a bound on bytes: the
    entries themselves are bounded by pipeline.contract.limits)."""

    # Event ids seen (idempotency): the latest this many; an older repeat is recognised by
    # the linker's ``duplicate`` flag once the set has rolled.
    max_seen: int = 1000
    # Journey touches (time, channel): the latest this many; sequence numbers keep counting.
    max_touches: int = 1000
    max_merged: int = 200
    max_possible: int = 50
    max_currencies: int = 10
    max_consent_purposes: int = 32


def seen_key(event_id: str) -> str:
    """Event ids of up to 64 characters as they are, longer ones by a digest (bounded size)."""
    if len(event_id) <= 64:
        return event_id
    return "#" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]


@dataclass(frozen=True)
class Survivorship:
    """Source prefixes in order of precedence (earlier wins); unlisted sources rank last."""

    source_precedence: tuple[str, ...] = ()

    def rank(self, source: str) -> int:
        for index, prefix in enumerate(self.source_precedence):
            if source.startswith(prefix):
                return index
        return len(self.source_precedence)


def _better(candidate: list[Any], current: list[Any] | None) -> bool:
    """[value, at_ms, rank, source]: lower rank wins, then the later time."""
    if current is None:
        return True
    return (candidate[2], -candidate[1]) <= (current[2], -current[1])


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass
class ProfileOutput:
    """What the stage emits for one message."""

    profiles: list[CustomerProfile] = field(default_factory=list)
    # Coalescing books (``coalesce=True``): customers whose profile changed, built later once.
    touched: list[str] = field(default_factory=list)
    tombstones: list[str] = field(default_factory=list)
    journeys: list[JourneyEvent] = field(default_factory=list)
    # (customer id, message) to send on, keyed by that customer id.
    forwards: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _empty_state() -> dict[str, Any]:
    return {
        "ids": {},
        "traits": {},
        "channels": {},
        "first": None,
        "last": None,
        "events": 0,
        "orders": 0,
        "totals": {},
        "consent": {},
        "merged": [],
        "possible": [],
        "version": 0,
        "seen": {},
        "touches": [],
    }


class ProfileBook:
    def __init__(
        self,
        store: Store,
        survivorship: Survivorship | None = None,
        emit_outputs: bool = True,
        journal: Journal | None = None,
        rules: NamespaceRules | None = None,
        bounds: ProfileBounds | None = None,
        coalesce: bool = False,
        journey_properties: frozenset[str] = JOURNEY_PROPERTIES,
    ) -> None:
        """``emit_outputs=False`` keeps the state exactly the same but builds no profile and
        journey records (a replay that only needs customer ids). ``journal``: see Journal;
        without one (replay) a seen event id is simply a duplicate. ``coalesce``: name the
        customers whose profile changed in ``ProfileOutput.touched`` instead of building a
        profile per message (the worker builds one per customer and batch, ``snapshot``)."""
        self.coalesce = coalesce
        self.shown = journey_properties  # the event properties a journey event carries
        self.store = store
        self.survivorship = survivorship or Survivorship()
        self.emit_outputs = emit_outputs
        self.journal = journal
        self.rules = rules or NamespaceRules()
        self.bounds = bounds or ProfileBounds()

    # -- messages ----------------------------------------------------------------------------
    def handle(self, customer_id: str, message: dict[str, Any], now: datetime) -> ProfileOutput:
        """Dispatch one message of the customer-ops topic (see route_message etc.)."""
        kind = message["kind"]
        if kind == "route":
            return self.add_event(
                customer_id,
                ChannelEvent.trusted(message["event"]),  # validated by intake
                [Node(ns, value) for ns, value in message["nodes"]],
                now,
                repeat=bool(message.get("repeat")),
                rebuild=bool(message.get("rebuild")),
                corrects=message.get("corrects"),
            )
        if kind == "reset":
            return self.reset(customer_id, message["merged"], message.get("operation") or "")
        if kind == "erase":
            return self.erase(customer_id)
        if kind == "fold":
            return self.fold(customer_id, message["winner"])
        if kind == "absorb":
            return self.absorb(customer_id, message["loser"], message["state"], now)
        if kind == "possible":
            return self.possible(customer_id, message["other"], now)
        raise ValueError(f"unknown customer-ops message kind {kind!r}")

    def add_event(
        self,
        customer_id: str,
        event: ChannelEvent,
        nodes: Sequence[Node],
        now: datetime,
        repeat: bool = False,
        rebuild: bool = False,
        corrects: str | None = None,
    ) -> ProfileOutput:
        """``repeat``: the linker saw this event id before (a redelivery). ``rebuild``: a
        split replays the part's events after ``reset``; a journey event only for an event
        that moved, naming the customer it was under (``corrects``)."""
        state = self.store.get("p|" + customer_id)
        if state is not None and "fwd" in state:
            message = route_message(event, nodes, repeat)
            if rebuild:
                message |= {"rebuild": True, "corrects": corrects}
            return ProfileOutput(forwards=[(state["fwd"], message)])
        state = state or _empty_state()
        now_ms = to_ms(now)
        at = to_ms(event.occurred_at)
        key = seen_key(event.event_id)
        marked = state["seen"].get(key)
        if marked is None and repeat and state.get("seen_dropped"):
            # Older than the seen ids kept: applied long ago (the linker knew the id).
            return ProfileOutput()
        if marked is not None:
            if self.journal is None or not self.emit_outputs:
                return ProfileOutput()
            # A repeat of recent work may follow a crash between the state's commit and the
            # outputs' delivery: the profile once more (idempotent), the journey event only if
            # the journeys topic does not hold it.
            out = self._changed(customer_id, state, now)
            if marked < self.journal.since_ms:
                return ProfileOutput()
            if self.journal.lost(event.event_id, marked):
                self.journal.note(event.event_id, now_ms)
                again = context_of(state["touches"], at)
                out.journeys.append(
                    journey_event(
                        customer_id, event, nodes, self._seq(again, state), None, self.shown
                    )
                )
            return out
        context = self._seq(place(state["touches"], at, event.channel), state)
        state["touches_dropped"] = state.get("touches_dropped", 0) + keep_latest(
            state["touches"], self.bounds.max_touches
        )
        self._see(state, key, now_ms)
        for node in nodes:
            values = state["ids"].setdefault(node.namespace, [])
            if node.value not in values:
                values.append(node.value)
                keep_latest(values, self.rules.rule(node.namespace).limit)
        rank = self.survivorship.rank(event.source)
        for name in TRAIT_NAMES:
            value = getattr(event.traits, name)
            if value is not None and value.strip():
                candidate = [value.strip(), at, rank, event.source]
                if _better(candidate, state["traits"].get(name)):
                    state["traits"][name] = candidate
        channels = state["channels"]
        if event.channel.value not in channels or at < channels[event.channel.value]:
            channels[event.channel.value] = at
        state["first"] = at if state["first"] is None else min(state["first"], at)
        state["last"] = at if state["last"] is None else max(state["last"], at)
        state["events"] += 1
        traits.tally_order(state, event, self.bounds.max_currencies)
        activity = traits.load(state.get("act"))
        traits.note(activity, event)
        state["act"] = traits.dump(activity)
        for purpose, granted in (event.consent or {}).items():
            current = state["consent"].get(purpose)
            if current is None and len(state["consent"]) >= self.bounds.max_consent_purposes:
                continue
            if current is None or at >= current[1]:
                state["consent"][purpose] = [granted, at, event.source]
        state["version"] += 1
        self.store.set("p|" + customer_id, state)
        if not self.emit_outputs:
            return ProfileOutput()
        out = self._changed(customer_id, state, now)
        if rebuild:
            if corrects is not None:
                out.journeys.append(
                    journey_event(customer_id, event, nodes, context, corrects, self.shown)
                )
            return out
        if self.journal is not None:
            if event.event_id in self.journal.emitted:
                return out  # its journey event reached Kafka before a crash
            self.journal.note(event.event_id, now_ms)
        out.journeys.append(journey_event(customer_id, event, nodes, context, None, self.shown))
        return out

    def erase(self, customer_id: str) -> ProfileOutput:
        """An erase (pipeline.engine.erasure): the customer's state goes; a live profile's
        tombstone follows (its changelog gets one too)."""
        state = self.store.get("p|" + customer_id)
        if state is None:
            return ProfileOutput()
        self.store.delete("p|" + customer_id)
        live = "fwd" not in state and state["first"] is not None and self.emit_outputs
        return ProfileOutput(tombstones=[customer_id] if live else [])

    def reset(self, customer_id: str, merged: list[str], operation_id: str) -> ProfileOutput:
        """A split: the part starts again (its events follow, ``rebuild``); ``merged``: the
        atoms it still holds. The version keeps increasing. Once per operation: a repeated
        reset changes nothing, and the events that follow it are then seen ones."""
        old = self.store.get("p|" + customer_id)
        done = [] if old is None or "fwd" in old else list(old.get("resets", []))
        if operation_id and operation_id in done:
            return ProfileOutput()
        state = _empty_state()
        state["resets"] = [*done, operation_id][-MAX_RESETS:]
        state["merged"] = list(merged)
        keep_latest(state["merged"], self.bounds.max_merged)
        state["version"] = old["version"] + 1 if old is not None and "fwd" not in old else 0
        self.store.set("p|" + customer_id, state)
        return ProfileOutput()

    def possible(self, customer_id: str, other: str, now: datetime) -> ProfileOutput:
        """Record a possible match (probabilistic, not merged) on this customer's profile."""
        state = self.store.get("p|" + customer_id)
        if state is not None and "fwd" in state:
            return ProfileOutput(forwards=[(state["fwd"], possible_message(other))])
        state = state or _empty_state()
        possible = state.setdefault("possible", [])
        if other in possible:
            return ProfileOutput()
        possible.append(other)
        keep_latest(possible, self.bounds.max_possible)
        state["version"] += 1
        self.store.set("p|" + customer_id, state)
        if state["first"] is None or not self.emit_outputs:
            return ProfileOutput()
        return self._changed(customer_id, state, now)

    def fold(self, loser: str, winner: str) -> ProfileOutput:
        """The loser's state goes to the winner; its tombstone follows the winner's merged
        profile (``absorb``), so consumers never see a customer vanish before its survivor
        holds its data."""
        state = self.store.get("p|" + loser)
        if state is not None and "fwd" in state:
            return ProfileOutput()  # folded before: a repeated message changes nothing
        self.store.set("p|" + loser, {"fwd": winner})
        message = {"kind": "absorb", "loser": loser, "state": state or _empty_state()}
        return ProfileOutput(forwards=[(winner, message)])

    def absorb(
        self, winner: str, loser: str, other: dict[str, Any], now: datetime
    ) -> ProfileOutput:
        state = self.store.get("p|" + winner)
        if state is not None and "fwd" in state:
            return ProfileOutput(
                forwards=[(state["fwd"], {"kind": "absorb", "loser": loser, "state": other})]
            )
        state = state or _empty_state()
        if loser in state["merged"]:
            # Absorbed before: the outputs again (they may not have reached Kafka), no change.
            if state["first"] is None or not self.emit_outputs:
                return ProfileOutput(tombstones=[loser])
            out = self._changed(winner, state, now)
            out.tombstones.append(loser)
            return out
        for namespace, values in other["ids"].items():
            mine = state["ids"].setdefault(namespace, [])
            mine.extend(v for v in values if v not in mine)
        for name, candidate in other["traits"].items():
            if _better(candidate, state["traits"].get(name)):
                state["traits"][name] = candidate
        for channel, at in other["channels"].items():
            if channel not in state["channels"] or at < state["channels"][channel]:
                state["channels"][channel] = at
        for bound, pick in (("first", min), ("last", max)):
            values = [v for v in (state[bound], other[bound]) if v is not None]
            state[bound] = pick(values) if values else None
        both = 0
        for event_id in other["seen"]:
            # Marked 0 ("long ago"): only the partition that made a mark may conclude that its
            # journey event was lost; here it was emitted under the merged-away customer,
            # possibly by another worker whose journal this one does not have.
            if event_id in state["seen"]:
                both += 1
            else:
                self._see(state, event_id, 0)
        state["events"] += other["events"] - both
        state["orders"] += other["orders"]
        for currency, amount in other["totals"].items():
            state["totals"][currency] = str(
                Decimal(state["totals"].get(currency, "0")) + Decimal(amount)
            )
        mine, theirs = traits.load(state.get("act")), traits.load(other.get("act"))
        state["act"] = traits.dump(traits.merge(mine, theirs))
        for purpose, entry in other["consent"].items():
            current = state["consent"].get(purpose)
            if current is None and len(state["consent"]) >= self.bounds.max_consent_purposes:
                continue
            if current is None or entry[1] > current[1]:
                state["consent"][purpose] = entry
        state["merged"].extend([loser, *other["merged"]])
        keep_latest(state["merged"], self.bounds.max_merged)
        mine = state.setdefault("possible", [])
        mine.extend(p for p in other.get("possible", []) if p not in mine)
        keep_latest(mine, self.bounds.max_possible)
        for namespace, values in state["ids"].items():
            keep_latest(values, self.rules.rule(namespace).limit)
        state["touches"] = merge_touches(state["touches"], other["touches"])
        state["touches_dropped"] = (
            state.get("touches_dropped", 0)
            + other.get("touches_dropped", 0)
            + keep_latest(state["touches"], self.bounds.max_touches)
        )
        state["version"] += 1
        self.store.set("p|" + winner, state)
        if state["first"] is None or not self.emit_outputs:
            return ProfileOutput(tombstones=[loser])
        out = self._changed(winner, state, now)
        out.tombstones.append(loser)
        return out

    @staticmethod
    def _seq(context: JourneyContext, state: dict[str, Any]) -> JourneyContext:
        """Sequence numbers count the touches that left the kept window too."""
        dropped = state.get("touches_dropped", 0)
        return (
            replace(context, sequence_number=context.sequence_number + dropped)
            if dropped
            else context
        )

    def _see(self, state: dict[str, Any], key: str, mark: int) -> None:
        """Remember a seen event id; beyond ``max_seen`` the oldest is forgotten (counted)."""
        seen = state["seen"]
        seen[key] = mark
        while len(seen) > self.bounds.max_seen:
            del seen[next(iter(seen))]
            state["seen_dropped"] = state.get("seen_dropped", 0) + 1

    # -- output ------------------------------------------------------------------------------
    def _changed(self, customer_id: str, state: dict[str, Any], now: datetime) -> ProfileOutput:
        if self.coalesce:
            return ProfileOutput(touched=[customer_id])
        return ProfileOutput(profiles=[self._profile(customer_id, state, now)])

    def snapshot(self, customer_id: str, now: datetime) -> CustomerProfile | None:
        """The customer's profile as its state holds it now; None for a merged-away id or a
        customer without events."""
        state = self.store.get("p|" + customer_id)
        if state is None or "fwd" in state or state["first"] is None:
            return None
        return self._profile(customer_id, state, now)

    @staticmethod
    def _profile(customer_id: str, state: dict[str, Any], now: datetime) -> CustomerProfile:
        values = dict.fromkeys(TRAIT_NAMES)
        values.update((name, entry[0]) for name, entry in state["traits"].items())
        return CustomerProfile.from_valid(  # every value valid by construction (the state's)
            {
                "customer_id": customer_id,
                "identifiers": {ns: list(values) for ns, values in state["ids"].items()},
                "traits": Traits.from_valid(values),
                "channels": [
                    Channel(c) for c, _ in sorted(state["channels"].items(), key=lambda kv: kv[1])
                ],
                "first_seen": to_millis(_from_ms(state["first"])),
                "last_seen": to_millis(_from_ms(state["last"])),
                "event_count": state["events"],
                "order_count": state["orders"],
                "order_totals": dict(state["totals"]),
                "consent": {purpose: entry[0] for purpose, entry in state["consent"].items()},
                "consent_statements": {
                    purpose: ConsentStatement.from_valid(
                        {
                            "granted": entry[0],
                            "source": entry[2] if len(entry) > 2 else "",
                            "stated_at": to_millis(_from_ms(entry[1])),
                        }
                    )
                    for purpose, entry in state["consent"].items()
                },
                "trait_origins": {
                    name: TraitOrigin.from_valid(
                        {
                            "source": entry[3] if len(entry) > 3 else "",
                            "observed_at": to_millis(_from_ms(entry[1])),
                        }
                    )
                    for name, entry in state["traits"].items()
                },
                "computed": traits.computed(traits.load(state.get("act")), now),
                "merged_ids": list(state["merged"]),
                "possible_matches": [
                    p for p in state.get("possible", []) if p not in state["merged"]
                ],
                "version": state["version"],
                "updated_at": to_millis(now),
                "sealed": None,
                "sealed_key": None,
            }
        )
