"""The identity graph built from the topics' records: labels, evidence per edge, refused links,
quarantined values, and its bound."""

from __future__ import annotations

from pipeline.contract.models import ChangeType, Evidence, Identifier
from pipeline.serving.identity_graph import MAX_EVIDENCE, MAX_NODES, identity_graph
from tests.factories import NOW, make_change, make_event, make_journey
from tests.unit.pipeline.serving.conftest import decoded


def _journeys(count: int) -> list[dict[str, object]]:
    shared = Identifier(namespace="email", value="kim@example.de")
    return [
        decoded(
            make_journey(
                customer_id="c1",
                event=make_event(
                    event_id=f"e{i}",
                    identifiers=[shared, Identifier(namespace="anonymous_id", value=f"a{i % 2}")],
                ),
            )
        )
        for i in range(count)
    ]


def test_identifiers_are_labelled_when_held_and_events_are_evidence() -> None:
    graph = identity_graph("c1", {"email": ["kim@example.de"]}, [], _journeys(15), [])
    labels = {n["label"]: n for n in graph["nodes"]}
    assert labels["email:kim@example.de"]["held"] is True
    hashed = [n for n in graph["nodes"] if n.get("namespace") == "anonymous_id"]
    assert len(hashed) == 2 and all(n["held"] is False for n in hashed)  # not in the profile
    events = [e for e in graph["edges"] if e["kind"] == "event"]
    assert sorted(e["count"] for e in events) == [7, 8]
    assert all(len(e["evidence"]) <= MAX_EVIDENCE for e in events)
    assert all(e["rule"] == "shared_identifier" for e in events)


def test_conflicts_do_not_link_and_quarantines_are_visible() -> None:
    junk = Identifier(namespace="phone", value="+4930123456")
    quarantine = make_change(
        change_id="chg-q",
        change_type=ChangeType.quarantined,
        customer_id="c1",
        old_customer_ids=[],
        evidence=[
            Evidence(
                event_id="e9", source="pos", occurred_at=NOW, rule="hairball", identifiers=[junk]
            )
        ],
    )
    conflict = make_change(
        change_id="chg-c",
        change_type=ChangeType.conflict,
        customer_id="c1",
        old_customer_ids=["c7"],
    )
    refusal = make_change(
        change_id="chg-o", change_type=ChangeType.other, customer_id="c1", old_customer_ids=["c8"]
    )
    graph = identity_graph(
        "c1",
        {"phone": ["+4930123456"]},
        [],
        [],
        [decoded(c) for c in (quarantine, conflict, refusal)],
    )
    phone = next(n for n in graph["nodes"] if n.get("namespace") == "phone")
    assert phone["quarantined"] is True and phone["label"] == "phone:+4930123456"
    refused = {(e["source"], e["target"]) for e in graph["edges"] if e["kind"] == "refused"}
    assert refused == {("customer|c1", "customer|c7"), ("customer|c1", "customer|c8")}


def test_the_graph_is_bounded() -> None:
    journeys = [
        decoded(
            make_journey(
                customer_id="c1",
                event=make_event(
                    event_id=f"b{i}", identifiers=[Identifier(namespace="device_id", value=f"d{i}")]
                ),
            )
        )
        for i in range(MAX_NODES + 50)
    ]
    graph = identity_graph("c1", {}, [], journeys, [])
    assert len(graph["nodes"]) == MAX_NODES
    ids = {n["id"] for n in graph["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in graph["edges"])
