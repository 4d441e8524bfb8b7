"""Explain: the path of evidence between two identifiers, over both store backends."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.engine.explanation import explain, path_of
from pipeline.engine.identifiers import Node
from pipeline.engine.state import MemoryStore, Store
from tests.factories import Linking


@pytest.fixture
def linking(store_factory: Callable[[], Store]) -> Linking:
    return Linking(store_factory())


def test_two_identifiers_of_one_event_are_explained_by_it(linking: Linking) -> None:
    first = linking.link([("customer_id", "CRM-1"), ("email", "zoe@example.de")])
    second = linking.link([("customer_id", "CRM-1"), ("phone", "+491701234567")])
    found = explain(
        linking.graph.store, Node("email", "zoe@example.de"), Node("phone", "+491701234567")
    )
    assert found.joined and found.customer == first.customer_id == second.customer_id
    (email,) = found.left_path
    (phone,) = found.right_path
    for step in (email, phone):
        assert step.kind == "attached" and step.rule == "shared_identifier"
        assert step.via == ["customer_id|CRM-1"] and step.customer == first.customer_id
    assert email.event_id is not None and phone.event_id is not None
    assert email.event_id != phone.event_id  # each identifier by the event that brought it
    text = found.render()
    assert "are one customer" in text and "via customer_id|CRM-1" in text


def test_a_merge_by_a_shared_identifier_is_a_step_with_its_evidence(linking: Linking) -> None:
    linking.link([("anonymous_id", "a-1"), ("email", "zoe@example.de")])
    linking.link([("anonymous_id", "a-2"), ("phone", "+491701234567")])
    joined = linking.link([("email", "zoe@example.de"), ("phone", "+491701234567")])
    merge = next(c for c in joined.changes if c.change_type.value == "merged")
    found = explain(linking.graph.store, Node("anonymous_id", "a-1"), Node("anonymous_id", "a-2"))
    assert found.joined and found.customer == merge.customer_id
    merged = [s for s in found.left_path + found.right_path if s.kind == "merged"]
    assert len(merged) == 1
    step = merged[0]
    assert step.subject == merge.old_customer_ids[0] and step.customer == merge.customer_id
    assert step.rule == "shared_identifier" and step.event_id == merge.evidence[0].event_id
    assert step.via == [f"{i.namespace}|{i.value}" for i in merge.evidence[0].identifiers]
    assert found.to_json()["joined"] is True


def test_a_probabilistic_merge_carries_its_score_and_levels(linking: Linking) -> None:
    person = {"first_name": "Jürgen", "last_name": "Müller", "birth_date": "1980-02-03"}
    linking.link([("customer_id", "CRM-1")], **person)
    linking.link([("loyalty_id", "LC-9")], **person)
    found = explain(linking.graph.store, Node("customer_id", "CRM-1"), Node("loyalty_id", "LC-9"))
    (merged,) = [s for s in found.left_path + found.right_path if s.kind == "merged"]
    assert merged.rule == "probabilistic" and merged.score is not None and merged.score >= 0.95
    assert merged.details["birth_date"].startswith("exact (+")
    assert "match probability" in found.render()


def test_identifiers_of_two_customers_are_not_joined(linking: Linking) -> None:
    linking.link([("customer_id", "CRM-1")])
    linking.link([("customer_id", "CRM-2")])
    found = explain(linking.graph.store, Node("customer_id", "CRM-1"), Node("email", "x@y.de"))
    assert not found.joined and found.customer is None
    assert found.left_customer is not None and found.right_customer is None
    assert "x@y.de is not known" in found.notes[0].replace("email|", "")
    assert "not linked" in found.render()


@st.composite
def histories(draw: st.DrawFn) -> list[list[tuple[str, str]]]:
    """Events carrying one to three identifiers out of a small pool: many merges, chains."""
    pool = [("email", f"p{n}@example.de") for n in range(6)] + [
        ("anonymous_id", f"a-{n}") for n in range(6)
    ]
    return [
        draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
        for _ in range(draw(st.integers(1, 25)))
    ]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=histories())
def test_explain_paths_are_valid_paths_in_the_graph(events: list[list[tuple[str, str]]]) -> None:
    linking = Linking(MemoryStore())
    for identifiers in events:
        linking.link(identifiers)
    store, graph = linking.graph.store, linking.graph
    seen = sorted({i for event in events for i in event})
    for ns, value in seen:
        path = path_of(store, Node(ns, value))
        assert path[0].kind == "attached" and path[0].subject == f"{ns}|{value}"
        for before, after in itertools.pairwise(path):
            assert after.kind == "merged" and after.subject == before.customer
        assert path[-1].customer == graph.customer_of_node(Node(ns, value))
    for (ns1, v1), (ns2, v2) in itertools.pairwise(seen):
        found = explain(store, Node(ns1, v1), Node(ns2, v2))
        same = graph.customer_of_node(Node(ns1, v1)) == graph.customer_of_node(Node(ns2, v2))
        assert found.joined == same
        if same:
            assert found.left_path[-1].customer == found.right_path[-1].customer == found.customer
