"""Property tests of the whole in-process engine, over the memory and the RocksDB store.

For random event streams without unique-namespace conflicts, the final clustering equals the
connected components of the normalised identifiers, whatever the order and with duplicates;
every event id appears exactly once in the journeys; profiles count each event once.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.models import Channel, ChannelEvent, Identifier
from pipeline.engine.identifiers import Node, Normaliser
from pipeline.engine.state import MemoryStore, Store
from pipeline.engine.stitcher import Stitcher
from pipeline.replay.runner import open_stores
from tests.factories import NOW, make_event

NORMALISER = Normaliser()
NAMESPACES = ("anonymous_id", "device_id", "email", "order_id")


@contextmanager
def stores(kind: str) -> Iterator[tuple[Store, Store]]:
    """The replay's own stores (memory, or RocksDB in a fresh folder)."""
    folder = Path(tempfile.mkdtemp(prefix="stitch-"))
    try:
        with open_stores(kind, folder) as pair:
            yield pair
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _value(namespace: str, person: int, index: int) -> str:
    if namespace == "email":
        return f"P{person}.n{index}@Example.de "  # normalisation must fold case and space
    return f"{namespace[:3]}-{person}-{index}"


@st.composite
def event_streams(draw: st.DrawFn) -> list[ChannelEvent]:
    """Events of a few persons; each person may have one customer_id; no event mixes persons,
    so no unique-namespace conflict can arise. Some events are delivered twice."""
    persons = draw(st.integers(1, 5))
    events = []
    for n in range(draw(st.integers(1, 30))):
        person = draw(st.integers(0, persons - 1))
        pairs = draw(
            st.lists(
                st.tuples(st.sampled_from(NAMESPACES), st.integers(0, 3)), min_size=0, max_size=3
            )
        )
        identifiers = [Identifier(namespace=ns, value=_value(ns, person, i)) for ns, i in pairs]
        if draw(st.booleans()) and person % 2 == 0:
            identifiers.append(Identifier(namespace="customer_id", value=f"CRM-{person}"))
        events.append(
            make_event(
                event_id=f"e{n}",
                identifiers=identifiers,
                occurred_at=NOW - timedelta(minutes=draw(st.integers(0, 10_000))),
                channel=draw(st.sampled_from(list(Channel))),
            )
        )
    duplicates = draw(st.lists(st.sampled_from(events), max_size=5)) if events else []
    return draw(st.permutations(events + duplicates))


def connected_components(events: list[ChannelEvent]) -> set[frozenset[Node]]:
    parent: dict[Node, Node] = {}

    def find(node: Node) -> Node:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for event in events:
        nodes, _ = NORMALISER.nodes(event.identifiers, event.traits)
        for node in nodes:
            parent.setdefault(node, node)
        for node in nodes[1:]:
            parent[find(node)] = find(nodes[0])
    groups: dict[Node, set[Node]] = defaultdict(set)
    for node in parent:
        groups[find(node)].add(node)
    return {frozenset(group) for group in groups.values()}


def clustering(stitcher: Stitcher, events: list[ChannelEvent]) -> set[frozenset[Node]]:
    groups: dict[str, set[Node]] = defaultdict(set)
    for event in events:
        nodes, _ = NORMALISER.nodes(event.identifiers, event.traits)
        for node in nodes:
            customer = stitcher.graph.customer_of_node(node)
            assert customer is not None
            groups[customer].add(node)
    return {frozenset(group) for group in groups.values()}


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
@settings(max_examples=60, deadline=None)
@given(events=event_streams())
def test_clustering_equals_connected_components_in_any_order(
    kind: str, events: list[ChannelEvent]
) -> None:
    with stores(kind) as (graph_store, profile_store):
        stitcher = Stitcher(graph_store, profile_store, clock=lambda: NOW)
        journeys: list[str] = []
        for event in events:
            journeys.extend(j.event.event_id for j in stitcher.process(event).journeys)
        assert clustering(stitcher, events) == connected_components(events)

        distinct = {e.event_id: e for e in events}
        assert sorted(journeys) == sorted(distinct), "every event exactly once in the journeys"
        # Events of one component end on one customer; their profile counts each once.
        per_customer: dict[str, int] = defaultdict(int)
        for event_id in distinct:
            customer = stitcher.customer_of_event(event_id)
            assert customer is not None
            per_customer[customer] += 1
        for customer, count in per_customer.items():
            state = profile_store.get("p|" + customer)
            assert state is not None and "fwd" not in state
            assert state["events"] == count


@settings(max_examples=30, deadline=None)
@given(events=event_streams(), seed=st.randoms())
def test_two_orders_give_the_same_clustering(events: list[ChannelEvent], seed: object) -> None:
    shuffled = list(events)
    seed.shuffle(shuffled)  # type: ignore[attr-defined]
    results = []
    for order in (events, shuffled):
        stitcher = Stitcher(MemoryStore(), MemoryStore(), clock=lambda: NOW)
        for event in order:
            stitcher.process(event)
        results.append(clustering(stitcher, events))
    assert results[0] == results[1]
