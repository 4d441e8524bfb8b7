"""Split and unlink (pipeline.engine.splitting through operations): a wrong merge undone into
parts, profiles rebuilt from each part's own events, moved journeys re-issued with ``corrects``,
the removed evidence never re-created automatically, over both stores."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract.models import ChangeType, ChannelEvent, Identifier, Traits
from pipeline.engine.explanation import explain
from pipeline.engine.identifiers import Node
from pipeline.engine.matching import MatchConfig
from pipeline.engine.operations import Operation
from pipeline.engine.state import MemoryStore, Store
from pipeline.engine.stitcher import Outputs, StitchConfig, Stitcher
from tests.factories import NOW, make_event


def _stitcher(store_factory: Callable[[], Store], matching: bool = False) -> Stitcher:
    config = StitchConfig(matching=MatchConfig.default() if matching else None)
    return Stitcher(store_factory(), store_factory(), config, lambda: NOW, keep_events=True)


def _event(event_id: str, minutes: int, *ids: tuple[str, str], **traits: str) -> ChannelEvent:
    return make_event(
        event_id=event_id,
        occurred_at=NOW - timedelta(minutes=minutes),
        identifiers=[Identifier(namespace=ns, value=v) for ns, v in ids],
        traits=Traits(**traits),
    )


def _op(kind: str, left: str, right: str, n: int = 1) -> Operation:
    return Operation.from_json(
        {
            "operation_id": f"op-{kind}-{n}",
            "kind": kind,
            "left": left,
            "right": right,
            "operator": "agent-17",
            "reason": "two people on one tablet",
            "requested_at": "2026-11-24T11:00:00Z",
        }
    )


ANN, BEN = ("email", "ann@example.com"), ("email", "ben@example.com")
TABLET = ("anonymous_id", "tablet-1")
FAMILY = [
    _event("ann-1", 50, ANN, first_name="Ann"),
    _event("ann-2", 40, ANN, TABLET),
    _event("ben-1", 30, BEN, first_name="Ben"),
    _event("ben-2", 20, BEN, TABLET),  # the shared tablet merges Ann and Ben
]


def _customer(stitcher: Stitcher, ref: tuple[str, str]) -> str | None:
    return stitcher.graph.customer_of_node(Node(*ref))


def _run(stitcher: Stitcher, events: list[ChannelEvent]) -> list[Outputs]:
    return [stitcher.process(e) for e in events]


@pytest.fixture(params=["memory", "rocksdb"])
def split_family(
    store_factory: Callable[[], Store],
) -> tuple[Stitcher, str, Any, Outputs]:
    stitcher = _stitcher(store_factory)
    _run(stitcher, FAMILY)
    merged = _customer(stitcher, ANN)
    assert merged is not None and merged == _customer(stitcher, BEN)
    outcome, out = stitcher.operate(_op("split", f"email:{ANN[1]}", "event:ben-2"))
    return stitcher, merged, outcome, out


def test_split_by_event_gives_two_customers_with_their_own_events(
    split_family: tuple[Stitcher, str, Any, Outputs],
) -> None:
    stitcher, merged, outcome, out = split_family
    assert (outcome.status, outcome.detail) == ("done", "2 parts")
    ann, ben = _customer(stitcher, ANN), _customer(stitcher, BEN)
    assert ann == merged, "the part with the customer's own (oldest) evidence keeps the id"
    assert ben is not None and ben != ann
    assert _customer(stitcher, TABLET) == ann, "the tablet came with Ann's event"
    (split,) = out.changes
    assert split.change_type is ChangeType.split
    assert (split.customer_id, split.old_customer_ids) == (ann, [ben])
    assert split.evidence[0].rule == "operator" and "ben-2" in split.evidence[0].details["removed"]
    profiles = {p.customer_id: p for p in out.profiles}
    assert profiles[ann].event_count == 2 and profiles[ben].event_count == 2
    assert profiles[ann].identifiers["email"] == [ANN[1]]
    assert profiles[ben].identifiers["email"] == [BEN[1]]
    assert profiles[ann].traits.first_name == "Ann" and profiles[ben].traits.first_name == "Ben"
    # Only the moved events' journeys are issued again, under Ben, naming the old customer.
    assert sorted((j.event.event_id, j.customer_id, j.corrects) for j in out.journeys) == [
        ("ben-1", ben, ann),
        ("ben-2", ben, ann),
    ]
    assert [stitcher.customer_of_event(e) for e in ("ann-1", "ben-1")] == [ann, ben]


def test_the_removed_link_is_never_made_again_automatically(
    split_family: tuple[Stitcher, str, Any, Outputs],
) -> None:
    stitcher, _merged, _outcome, _out = split_family
    ann, ben = _customer(stitcher, ANN), _customer(stitcher, BEN)
    again = stitcher.process(_event("ben-3", 10, BEN, TABLET))
    assert {_customer(stitcher, ANN), _customer(stitcher, BEN)} == {ann, ben}
    assert [c.change_type for c in again.changes] == [ChangeType.conflict]
    assert "operator" in again.changes[0].reason
    # Explaining the two e-mails: no path joins them any more.
    assert not explain(stitcher.graph.store, Node(*ANN), Node(*BEN)).joined
    # An operator can join them again.
    outcome, _ = stitcher.operate(_op("link", f"email:{ANN[1]}", f"email:{BEN[1]}"))
    assert outcome.status == "done" and _customer(stitcher, ANN) == _customer(stitcher, BEN)


def test_a_split_is_idempotent_by_operation_id(
    split_family: tuple[Stitcher, str, Any, Outputs],
) -> None:
    stitcher, _merged, outcome, _out = split_family
    store = stitcher.graph.store
    before = {k: store.get(k) for k in ("c|" + outcome.customer_id,)}
    again, out = stitcher.operate(_op("split", f"email:{ANN[1]}", "event:ben-2"))
    assert again.status == "repeat" and out.changes == [] and out.journeys == []
    assert {k: store.get(k) for k in before} == before


def test_a_split_is_refused_while_other_evidence_joins_the_parts(
    store_factory: Callable[[], Store],
) -> None:
    stitcher = _stitcher(store_factory)
    _run(stitcher, [*FAMILY, _event("ben-3", 10, BEN, ("device_id", "d-1"), TABLET)])
    _run(stitcher, [_event("ann-3", 5, ANN, ("phone", "+4915112345678"))])
    _run(stitcher, [_event("ben-4", 4, BEN, ("phone", "+4915112345678"))])  # support edge
    before = _customer(stitcher, ANN)
    outcome, out = stitcher.operate(_op("split", f"email:{ANN[1]}", "event:ben-2"))
    assert outcome.status == "refused" and "ben-4" in outcome.detail
    assert out.changes == [] and _customer(stitcher, BEN) == before
    # Removing the other evidence too (its source) splits.
    stitcher.operate(_op("split", f"email:{ANN[1]}", "source:web-collector", 2))
    assert _customer(stitcher, ANN) != _customer(stitcher, BEN)


def test_unlink_removes_the_edge_between_two_identifiers_atoms(
    store_factory: Callable[[], Store],
) -> None:
    stitcher = _stitcher(store_factory)
    _run(stitcher, FAMILY)
    outcome, _out = stitcher.operate(_op("unlink", f"email:{ANN[1]}", f"email:{BEN[1]}"))
    assert outcome.status == "done"
    assert _customer(stitcher, ANN) != _customer(stitcher, BEN)
    outcome, _out = stitcher.operate(_op("unlink", f"email:{ANN[1]}", f"email:{BEN[1]}", 2))
    assert (outcome.status, outcome.detail) == ("refused", "not one customer: nothing to unlink")


def test_unlink_of_a_probabilistic_merge_keeps_matching_from_redoing_it(
    store_factory: Callable[[], Store],
) -> None:
    stitcher = _stitcher(store_factory, matching=True)
    person = {"first_name": "Katharina", "last_name": "Schmidt", "birth_date": "1980-02-03"}
    _run(
        stitcher,
        [
            _event("crm-1", 30, ("customer_id", "CRM-1"), **person, city="Köln"),
            _event("pos-1", 20, ("loyalty_id", "LC-9"), **person, city="Köln"),
        ],
    )
    crm, card = ("customer_id", "CRM-1"), ("loyalty_id", "LC-9")
    assert _customer(stitcher, crm) == _customer(stitcher, card), "matched probabilistically"
    outcome, _out = stitcher.operate(_op("unlink", "customer_id:CRM-1", "loyalty_id:LC-9"))
    assert outcome.status == "done"
    _run(stitcher, [_event("pos-2", 10, card, **person, city="Köln")])
    assert _customer(stitcher, crm) != _customer(stitcher, card)


def test_split_refused_without_kept_events_and_for_unknown_selectors() -> None:
    stitcher = Stitcher(MemoryStore(), MemoryStore(), clock=lambda: NOW)  # keeps no events
    _run(stitcher, FAMILY)
    outcome, _ = stitcher.operate(_op("split", f"email:{ANN[1]}", "event:ben-2"))
    assert outcome.status == "refused" and "keeps no events" in outcome.detail
    keeping = Stitcher(MemoryStore(), MemoryStore(), clock=lambda: NOW, keep_events=True)
    _run(keeping, FAMILY)
    outcome, _ = keeping.operate(_op("split", f"email:{ANN[1]}", "email:x@y.de"))
    assert outcome.status == "refused" and "event:<id> or source:<name>" in outcome.detail
    outcome, _ = keeping.operate(_op("split", f"email:{ANN[1]}", "event:nothing", 2))
    assert (outcome.status, outcome.detail) == ("refused", "no such evidence in this customer")


def _parts(stitcher: Stitcher, refs: list[tuple[str, str]]) -> list[str | None]:
    return [_customer(stitcher, ref) for ref in refs]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000))
def test_split_parts_never_rejoin_and_the_same_input_splits_the_same(seed: int) -> None:
    rng = random.Random(seed)
    emails = [("email", f"p{n}@example.com") for n in range(5)]
    tablets = [("anonymous_id", f"tab-{n}") for n in range(3)]
    refs = emails + tablets
    events = [_event(f"e{n}", 500 - n, rng.choice(emails), rng.choice(tablets)) for n in range(12)]
    later = [_event(f"l{n}", 100 - n, rng.choice(emails), rng.choice(tablets)) for n in range(12)]
    cut = rng.choice(events).event_id

    def run() -> tuple[Stitcher, Any]:
        stitcher = Stitcher(MemoryStore(), MemoryStore(), clock=lambda: NOW, keep_events=True)
        _run(stitcher, events)
        ref = next(i for i in events if i.event_id == cut).identifiers[0]
        outcome, _ = stitcher.operate(_op("split", f"{ref.namespace}:{ref.value}", f"event:{cut}"))
        return stitcher, outcome

    stitcher, outcome = run()
    parts = _parts(stitcher, refs)
    again, outcome_again = run()
    assert (outcome_again.status, _parts(again, refs)) == (outcome.status, parts)
    if outcome.status != "done":
        return
    known = [(ref, part) for ref, part in zip(refs, parts, strict=True) if part is not None]
    apart = {(a, b) for a, pa in known for b, pb in known if pa != pb}
    _run(stitcher, later)
    now = dict(zip(refs, _parts(stitcher, refs), strict=True))
    rejoined = [(a, b) for a, b in apart if now[a] == now[b]]
    assert not rejoined, f"split parts joined again automatically: {rejoined[:3]}"


def test_a_kept_event_larger_than_a_chunk_comes_back_whole() -> None:
    from pipeline.engine import composition

    store = MemoryStore()
    body = "x" * (composition.BODY_CHUNK_CHARS * 2 + 5)
    chunks = composition.keep_body(store, "e1", body)
    assert chunks == 3
    assert all(len(v) <= composition.BODY_CHUNK_CHARS for v in store.data.values())
    assert composition.body_of(store, "e1", chunks) == body
    store.delete("v|e1|1")
    assert composition.body_of(store, "e1", chunks) is None


def test_junk_after_the_fact_quarantines_the_value_and_splits_what_it_held(
    store_factory: Callable[[], Store],
) -> None:
    stitcher = _stitcher(store_factory)
    _run(stitcher, FAMILY)
    merged = _customer(stitcher, ANN)
    outcome, out = stitcher.operate(_op("junk", f"{TABLET[0]}:{TABLET[1]}", ""))
    assert (outcome.status, outcome.detail) == ("done", "2 part(s)")
    ann, ben = _customer(stitcher, ANN), _customer(stitcher, BEN)
    assert ann != ben and merged in (ann, ben)
    (change,) = out.changes
    assert change.change_type is ChangeType.quarantined and change.customer_id == merged
    profiles = {p.customer_id: p for p in out.profiles}
    assert all("anonymous_id" not in p.identifiers for p in profiles.values())
    # The tablet no longer links anything: a later session on it joins nobody.
    later = stitcher.process(_event("late", 1, TABLET))
    assert later.customer_id not in (ann, ben)
    again, _ = stitcher.operate(_op("junk", f"{TABLET[0]}:{TABLET[1]}", "", 2))
    assert (again.status, again.detail) == ("refused", "already quarantined")


def test_removing_an_identifier_makes_it_a_customer_of_its_own(
    store_factory: Callable[[], Store],
) -> None:
    stitcher = _stitcher(store_factory)
    phone = ("phone", "+4915112345678")
    _run(stitcher, [_event("a1", 30, ANN, first_name="Ann"), _event("a2", 20, ANN, phone)])
    ann = _customer(stitcher, ANN)
    outcome, out = stitcher.operate(_op("remove", f"{phone[0]}:{phone[1]}", ""))
    assert (outcome.status, outcome.detail) == ("done", "1 part(s)")
    assert _customer(stitcher, ANN) == ann
    own = _customer(stitcher, phone)
    assert own is not None and own != ann
    (profile,) = {p.customer_id: p for p in out.profiles}.values()  # the latest
    assert profile.customer_id == ann and "phone" not in profile.identifiers
    assert profile.event_count == 2, "the events stay: only the identifier left"
    # A later event with both does not put the phone back.
    _run(stitcher, [_event("a3", 10, ANN, phone)])
    assert _customer(stitcher, phone) == own != _customer(stitcher, ANN)


def test_a_part_can_be_split_again(store_factory: Callable[[], Store]) -> None:
    stitcher = _stitcher(store_factory)
    cara = ("email", "cara@example.com")
    _run(stitcher, [*FAMILY, _event("cara-1", 3, cara), _event("cara-2", 2, cara, BEN)])
    first, _ = stitcher.operate(_op("split", f"email:{ANN[1]}", "event:ben-2"))
    assert first.status == "done"
    assert _customer(stitcher, BEN) == _customer(stitcher, cara) != _customer(stitcher, ANN)
    second, _ = stitcher.operate(_op("split", f"email:{BEN[1]}", "event:cara-2", 2))
    assert (second.status, second.detail) == ("done", "2 parts")
    assert len({_customer(stitcher, ref) for ref in (ANN, BEN, cara)}) == 3


def test_explain_within_a_part_names_the_event_that_still_joins_it(
    store_factory: Callable[[], Store],
) -> None:
    stitcher = _stitcher(store_factory)
    cara = ("email", "cara@example.com")
    _run(stitcher, [*FAMILY, _event("cara-1", 3, cara), _event("cara-2", 2, cara, BEN)])
    stitcher.operate(_op("split", f"email:{ANN[1]}", "event:ben-2"))
    found = explain(stitcher.graph.store, Node(*BEN), Node(*cara))
    assert found.joined and found.customer == _customer(stitcher, BEN)
    events = {step.event_id for step in found.left_path + found.right_path}
    assert "cara-2" in events and "ben-2" not in events
    assert not explain(stitcher.graph.store, Node(*ANN), Node(*BEN)).joined


def test_history_keeps_every_event_and_rolled_identifier_of_an_atom() -> None:
    from pipeline.engine import composition

    stitcher = Stitcher(MemoryStore(), MemoryStore(), clock=lambda: NOW, keep_events=True)
    many = 3 * composition.CHUNK + 10
    cookies = [("anonymous_id", f"c-{n}") for n in range(many)]
    _run(stitcher, [_event(f"x{n}", 1000 - n, ANN, cookies[n]) for n in range(many)])
    ann = _customer(stitcher, ANN)
    assert ann is not None
    record = stitcher.graph.store.get("c|" + ann)
    events, nodes = composition.history(stitcher.graph.store, ann)
    assert [e for e, _at in events] == [f"x{n}" for n in range(many)]
    on_record = set(record["ids"]["anonymous_id"])
    assert {f"anonymous_id|{v}" for _ns, v in cookies} == set(nodes) | {
        f"anonymous_id|{v}" for v in on_record
    }
    # A split after that rebuilds from all of them.
    _run(stitcher, [_event("ben-0", 1, BEN), _event("ben", 1, BEN, cookies[-1])])
    outcome, out = stitcher.operate(_op("split", f"email:{ANN[1]}", "event:ben"))
    assert outcome.status == "done"
    profiles = {p.customer_id: p for p in out.profiles}
    assert profiles[ann].event_count == many


def test_explain_says_what_keeps_two_customers_apart(store_factory: Callable[[], Store]) -> None:
    from pipeline.engine.namespaces import NamespaceRules

    stitcher = _stitcher(store_factory)
    crm1, crm2 = ("customer_id", "CRM-1"), ("customer_id", "CRM-2")
    _run(stitcher, [*FAMILY, _event("c1", 9, crm1, ANN), _event("c2", 8, crm2)])
    stitcher.operate(_op("split", f"email:{ANN[1]}", "event:ben-2"))
    rules = NamespaceRules()
    apart = explain(stitcher.graph.store, Node(*ANN), Node(*BEN), rules)
    assert not apart.joined and any("do not link" in note for note in apart.notes)
    unique = explain(stitcher.graph.store, Node(*crm1), Node(*crm2), rules)
    assert any("different customer_id values" in note for note in unique.notes)
    assert "do not link" in apart.render()


def test_at_the_composition_bounds_a_split_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.engine import composition

    monkeypatch.setattr(composition, "MAX_ATOMS", 2)
    stitcher = Stitcher(MemoryStore(), MemoryStore(), clock=lambda: NOW, keep_events=True)
    people = [("email", f"p{n}@example.com") for n in range(4)]
    events = [_event(f"own-{n}", 100 - n, person) for n, person in enumerate(people)]
    events += [_event(f"tab-{n}", 50 - n, person, TABLET) for n, person in enumerate(people)]
    _run(stitcher, events)
    customer = _customer(stitcher, people[0])
    record = stitcher.graph.store.get(f"c|{customer}")
    assert len(record["atoms"]) == 2 and record["atoms_dropped"] == 1
    outcome, _ = stitcher.operate(_op("split", f"email:{people[0][1]}", "event:tab-1"))
    assert (outcome.status, outcome.detail) == (
        "refused",
        "more evidence than a split can follow (pipeline.engine.composition)",
    )


def test_support_edges_beyond_their_bound_are_counted_and_a_split_then_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.engine import composition

    monkeypatch.setattr(composition, "MAX_SUPPORT", 1)
    stitcher = Stitcher(MemoryStore(), MemoryStore(), clock=lambda: NOW, keep_events=True)
    _run(stitcher, [*FAMILY, _event("ben-3", 10, BEN, TABLET)])
    record = stitcher.graph.store.get(f"c|{_customer(stitcher, ANN)}")
    assert len(record["sup"]) == 1 and record["sup_dropped"] == 1
    outcome, _ = stitcher.operate(_op("split", f"email:{ANN[1]}", "event:ben-2"))
    assert outcome.status == "refused" and "more evidence" in outcome.detail


def test_a_profile_remembers_the_latest_resets_only() -> None:
    from pipeline.engine.profile import MAX_RESETS, ProfileBook

    book = ProfileBook(MemoryStore())
    for n in range(MAX_RESETS + 5):
        book.reset("c1", [], f"op-{n}")
    state = book.store.get("p|c1")
    assert state["resets"] == [f"op-{n}" for n in range(5, MAX_RESETS + 5)]
    assert state["version"] == MAX_RESETS + 4
