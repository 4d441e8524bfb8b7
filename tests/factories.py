"""Factories of contract records for tests: valid by default, any field overridable."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.contract.models import (
    ChangeType,
    Channel,
    ChannelEvent,
    CustomerProfile,
    Evidence,
    Identifier,
    IdentityChange,
    JourneyEvent,
    Traits,
)
from pipeline.engine.comparisons import Model
from pipeline.engine.graph import Graph
from pipeline.engine.identifiers import Node, Normaliser
from pipeline.engine.links import Linked
from pipeline.engine.matching import MatchConfig
from pipeline.engine.namespaces import NamespaceRules
from pipeline.engine.state import Store
from pipeline.engine.weights import default_model

NORMALISER = Normaliser()
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
_ids = itertools.count(1)


def make_event(**overrides: Any) -> ChannelEvent:
    n = next(_ids)
    fields: dict[str, Any] = {
        "event_id": f"evt-{n:06d}",
        "event_type": "page_viewed",
        "channel": Channel.web,
        "source": "web-collector",
        "occurred_at": NOW - timedelta(minutes=n % 600),
        "received_at": NOW,
        "identifiers": [Identifier(namespace="anonymous_id", value=f"anon-{n}")],
        "traits": Traits(),
        "properties": {},
        "consent": None,
    }
    fields.update(overrides)
    return ChannelEvent(**fields)


def make_shared_tablet() -> list[ChannelEvent]:
    """Ann and Ben, each with an e-mail address and a first name, on one family tablet: the
    last event (b2, Ben's e-mail on the tablet Ann used in a2) merges them — the wrong merge a
    split undoes (event ids a1, a2, b1, b2, in this order)."""
    tablet = Identifier(namespace="anonymous_id", value="tablet-1")
    ann = Identifier(namespace="email", value="ann@example.com")
    ben = Identifier(namespace="email", value="ben@example.com")
    return [
        make_event(event_id="a1", identifiers=[ann], traits=Traits(first_name="Ann")),
        make_event(event_id="a2", identifiers=[ann, tablet]),
        make_event(event_id="b1", identifiers=[ben], traits=Traits(first_name="Ben")),
        make_event(event_id="b2", identifiers=[ben, tablet]),
    ]


def make_rich_event(**overrides: Any) -> ChannelEvent:
    """An event with every optional part filled, with names that test encodings."""
    fields: dict[str, Any] = {
        "event_type": "order_placed",
        "channel": Channel.ecommerce,
        "source": "shop-de",
        "identifiers": [
            Identifier(namespace="email", value="Jürgen.Müller@Example.de "),
            Identifier(namespace="phone", value="0170/1234567"),
            Identifier(namespace="loyalty_id", value="LC-0042"),
        ],
        "traits": Traits(
            first_name="Jürgen",
            last_name="Müller-Lüdenscheidt",
            birth_date="1984-02-29",
            street="Straße des 17. Juni",
            house_number="12a",
            address_line2="c/o Zoë O'Brien",
            postal_code="10623",
            city="Berlin",
            region="BE",
            country="DE",
            email="jürgen@example.de",
            phone="+49 170 1234567",
        ),
        "properties": {"order_id": "A-1", "amount": "129.90", "currency": "EUR", "emoji": "🛒"},
        "consent": {"email_marketing": True, "sms": False},
    }
    fields.update(overrides)
    return make_event(**fields)


def make_profile(**overrides: Any) -> CustomerProfile:
    fields: dict[str, Any] = {
        "customer_id": "cust-1",
        "identifiers": {"email": ["zoe@example.ie"], "anonymous_id": ["a1", "a2"]},
        "traits": Traits(first_name="Zoë", last_name="O'Brien"),
        "channels": [Channel.web, Channel.store],
        "first_seen": NOW - timedelta(days=30),
        "last_seen": NOW,
        "event_count": 7,
        "order_count": 2,
        "order_totals": {"EUR": "59.80"},
        "consent": {"email_marketing": True},
        "merged_ids": ["cust-9"],
        "version": 3,
        "updated_at": NOW,
    }
    fields.update(overrides)
    return CustomerProfile(**fields)


def make_change(**overrides: Any) -> IdentityChange:
    fields: dict[str, Any] = {
        "change_id": "chg-1",
        "change_type": ChangeType.merged,
        "customer_id": "cust-1",
        "old_customer_ids": ["cust-9"],
        "reason": "shared identifier email",
        "evidence": [
            Evidence(
                event_id="evt-1",
                source="web-collector",
                occurred_at=NOW,
                rule="shared_identifier",
                identifiers=[Identifier(namespace="email", value="zoe@example.ie")],
                score=None,
                details={},
            )
        ],
        "occurred_at": NOW,
    }
    fields.update(overrides)
    return IdentityChange(**fields)


def make_journey(**overrides: Any) -> JourneyEvent:
    fields: dict[str, Any] = {
        "customer_id": "cust-1",
        "event": make_rich_event(),
        "sequence_number": 2,
        "previous_channel": Channel.web,
        "channel_switch": True,
        "time_since_previous_ms": 3_600_000,
    }
    fields.update(overrides)
    return JourneyEvent(**fields)


def make_stream(
    persons: int, events: int, seed: int = 7, duplicates: int = 0, start: datetime | None = None
) -> list[ChannelEvent]:
    """A shuffled, conflict-free stream of events of ``persons`` people (see the generator)."""
    from connectors.synthetic.generator import synthetic_stream

    return synthetic_stream(persons, events, seed, duplicates, start or NOW - timedelta(days=3))


class MemorySerde:
    """The Serde contract without a registry: Confluent framing with a fixed id per schema
    name, fastavro for the body (the stages' unit tests)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def encode_record(self, topic: str, avro_name: str, record: dict[str, Any]) -> bytes:
        import io

        import fastavro

        from pipeline.contract import schemas

        schema_id = self.ids.setdefault(avro_name, len(self.ids) + 1)
        out = io.BytesIO()
        out.write(b"\x00" + schema_id.to_bytes(4, "big"))
        fastavro.schemaless_writer(out, schemas.parsed(avro_name), record)
        return out.getvalue()

    def decode_record(self, topic: str, data: bytes, avro_name: str) -> dict[str, Any]:
        from pipeline.contract import schemas
        from pipeline.contract.wire import decode_confluent

        names = {schema_id: name for name, schema_id in self.ids.items()}
        parsed = schemas.parsed(avro_name)
        return decode_confluent(data, lambda i: schemas.parsed(names[i]), parsed)

    def schema_id(self, topic: str, avro_name: str) -> int:
        return self.ids.setdefault(avro_name, len(self.ids) + 1)

    def decode_body(self, data: bytes, schema_id: int, avro_name: str) -> dict[str, Any]:
        return self.decode_record("", b"\x00" + schema_id.to_bytes(4, "big") + data, avro_name)

    def encode(self, topic: str, record: Any) -> bytes:
        return self.encode_record(topic, record.avro_name, record.to_avro())

    def decode(self, topic: str, data: bytes, model: Any) -> dict[str, Any]:
        return self.decode_record(topic, data, model.avro_name)


Clustering = set[frozenset[str]]


def replay_clustering(events: list[ChannelEvent]) -> Clustering:
    """The events grouped by the customer the in-process engine puts them in (replay)."""
    from collections import defaultdict

    from pipeline.engine.state import MemoryStore
    from pipeline.engine.stitcher import Stitcher

    stitcher = Stitcher(MemoryStore(), MemoryStore())
    for event in events:
        stitcher.process(event)
    groups: dict[str, set[str]] = defaultdict(set)
    for event in events:
        customer = stitcher.customer_of_event(event.event_id)
        assert customer is not None
        groups[customer].add(event.event_id)
    return {frozenset(g) for g in groups.values()}


def journey_clustering(journeys: list[JourneyEvent], changes: list[IdentityChange]) -> Clustering:
    """The events grouped as a consumer of the output topics sees them: each journey event's
    customer, followed through the merges of the identity changes."""
    from collections import defaultdict

    from pipeline.engine.graph import merge_forwarding

    final = merge_forwarding(changes)
    groups: dict[str, set[str]] = defaultdict(set)
    for journey in journeys:
        groups[final(journey.customer_id)].add(journey.event.event_id)
    return {frozenset(g) for g in groups.values()}


class Linking:
    """A customer graph with probabilistic matching, fed events made of identifiers and
    traits, one minute apart."""

    def __init__(self, store: Store, max_block_size: int = 50, model: Model | None = None) -> None:
        matching = MatchConfig(model or default_model(), max_block_size)
        self.graph = Graph(store, NamespaceRules(), matching)
        self.n = 0

    def link(self, identifiers: list[tuple[str, str]], **traits: str) -> Linked:
        self.n += 1
        event = make_event(
            identifiers=[Identifier(namespace=ns, value=v) for ns, v in identifiers],
            traits=Traits(**traits),
            occurred_at=NOW - timedelta(days=1) + timedelta(minutes=self.n),
        )
        nodes, _ = NORMALISER.nodes(event.identifiers, event.traits)
        return self.graph.link(event, nodes, NOW)

    def customer(self, namespace: str, value: str) -> str | None:
        return self.graph.customer_of_node(Node(namespace, value))

    @property
    def stats(self) -> dict[str, int]:
        assert self.graph.matcher is not None
        return dict(self.graph.matcher.stats)
