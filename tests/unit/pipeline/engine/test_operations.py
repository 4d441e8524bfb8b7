"""Operator decisions on the graph: link, accept, reject (do not link), over both stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract.models import ChangeType, Identifier, Traits
from pipeline.engine.explanation import Explanation, explain
from pipeline.engine.identifiers import Node
from pipeline.engine.matching import MatchConfig
from pipeline.engine.operations import Operation
from pipeline.engine.state import MemoryStore, Store
from pipeline.engine.stitcher import StitchConfig, Stitcher
from pipeline.exceptions import ConfigurationError
from tests.factories import NOW, make_event

NAMES = {"first_name": "Katharina", "last_name": "Schmidt", "city": "Köln"}


@pytest.fixture
def stitcher(store_factory: Callable[[], Store]) -> Stitcher:
    config = StitchConfig(matching=MatchConfig.default())
    return Stitcher(store_factory(), store_factory(), config, clock=lambda: NOW)


def see(stitcher: Stitcher, ids: list[tuple[str, str]], **traits: str) -> str:
    event = make_event(
        identifiers=[Identifier(namespace=ns, value=v) for ns, v in ids], traits=Traits(**traits)
    )
    return stitcher.process(event).customer_id


def op(kind: str, left: str, right: str, n: int = 1, **extra: Any) -> Operation:
    return Operation.from_json(
        {
            "operation_id": f"op-{kind}-{n}",
            "kind": kind,
            "left": left,
            "right": right,
            "operator": "agent-17",
            "reason": "checked with the customer",
            "requested_at": "2026-11-24T11:00:00Z",
            **extra,
        }
    )


def test_link_merges_with_operator_evidence_and_is_idempotent(stitcher: Stitcher) -> None:
    a = see(stitcher, [("email", "kathi@example.de")])
    b = see(stitcher, [("phone", "+491701234567")])
    outcome, out = stitcher.operate(op("link", "email:KATHI@example.de", "phone:0170 1234567"))
    assert outcome.status == "done" and outcome.customer_id in (a, b)
    (merged,) = [c for c in out.changes if c.change_type is ChangeType.merged]
    loser = b if outcome.customer_id == a else a
    assert merged.customer_id == outcome.customer_id and merged.old_customer_ids == [loser]
    evidence = merged.evidence[0]
    assert (evidence.rule, evidence.source, evidence.event_id) == (
        "operator",
        "operator:agent-17",
        "op-link-1",
    )
    assert evidence.details == {"operation": "link", "reason": "checked with the customer"}
    assert out.tombstones == [loser]  # the profile stage folded the loser into the survivor
    found = explain(
        stitcher.graph.store, Node("email", "kathi@example.de"), Node("phone", "+491701234567")
    )
    steps = found.left_path + found.right_path
    assert found.joined and [s.rule for s in steps if s.kind == "merged"] == ["operator"]
    again, repeat = stitcher.operate(op("link", "email:kathi@example.de", "phone:+491701234567"))
    assert again.status == "repeat" and repeat.changes == []


def test_reject_keeps_a_possible_match_apart_for_good(stitcher: Stitcher) -> None:
    first = see(stitcher, [("customer_id", "CRM-1")], **NAMES)
    second = see(stitcher, [("anonymous_id", "a-1")], **{**NAMES, "first_name": "Kathi"})
    outcome, out = stitcher.operate(op("reject", first, second))
    assert outcome.status == "done"
    assert [c.change_type for c in out.changes] == [ChangeType.other]
    # The same look-alike again: not even reported as a possible match any more.
    third = stitcher.process(
        make_event(
            identifiers=[Identifier(namespace="anonymous_id", value="a-1")],
            traits=Traits(**{**NAMES, "birth_date": "1980-02-03"}),
        )
    )
    assert not [c for c in third.changes if c.change_type is ChangeType.possible_match]
    # A shared identifier would merge them: refused, with the operator's decision as reason.
    shared = stitcher.process(
        make_event(
            identifiers=[
                Identifier(namespace="customer_id", value="CRM-1"),
                Identifier(namespace="anonymous_id", value="a-1"),
            ]
        )
    )
    (conflict,) = [c for c in shared.changes if c.change_type is ChangeType.conflict]
    assert "operator decided" in conflict.reason
    graph = stitcher.graph
    assert graph.customer_of_node(Node("anonymous_id", "a-1")) != graph.customer_of_node(
        Node("customer_id", "CRM-1")
    )


def test_accept_merges_a_possible_match_and_lifts_a_reject(stitcher: Stitcher) -> None:
    first = see(stitcher, [("customer_id", "CRM-1")], **NAMES)
    second = see(stitcher, [("anonymous_id", "a-1")], **{**NAMES, "first_name": "Kathi"})
    stitcher.operate(op("reject", first, second))
    outcome, out = stitcher.operate(op("accept", second, first, n=2))
    assert outcome.status == "done" and outcome.customer_id in (first, second)
    assert [c.change_type for c in out.changes] == [ChangeType.merged]
    assert stitcher.graph.resolve(first) == stitcher.graph.resolve(second)


def test_unique_namespaces_hold_against_an_operator(stitcher: Stitcher) -> None:
    see(stitcher, [("customer_id", "CRM-1")])
    see(stitcher, [("customer_id", "CRM-2")])
    outcome, out = stitcher.operate(op("link", "customer_id:CRM-1", "customer_id:CRM-2"))
    assert outcome.status == "refused" and "customer_id" in outcome.detail
    assert [c.change_type for c in out.changes] == [ChangeType.conflict]


def test_unknown_targets_and_rejecting_one_customer(stitcher: Stitcher) -> None:
    a = see(stitcher, [("email", "kathi@example.de"), ("phone", "+491701234567")])
    unknown, _ = stitcher.operate(op("link", "email:nobody@example.de", a))
    assert unknown.status == "unknown" and "nobody" not in unknown.detail
    for reference in (":no-namespace", "no separator", "email:not an address"):
        refused, _ = stitcher.operate(op("link", reference, a, n=len(reference)))
        assert refused.status == "unknown"
    same, _ = stitcher.operate(op("reject", "email:kathi@example.de", "phone:+491701234567", n=2))
    assert same.status == "refused" and "splitting" in same.detail


@pytest.mark.parametrize(
    "broken",
    [
        {"kind": "link"},
        {"kind": "merge-everything"},
        {"kind": "link", "operator": ""},
        {"kind": "link", "requested_at": "yesterday"},
        {"kind": "link", "reason": "x" * 300},
        {"kind": "link", "right": "email:" + "x" * 400},
    ],
)
def test_a_broken_operation_is_refused_with_a_clear_error(broken: dict[str, str]) -> None:
    base = {
        "operation_id": "op-1",
        "left": "email:a@b.de",
        "right": "email:c@d.de",
        "operator": "agent-17",
        "requested_at": "2026-11-24T11:00:00Z",
    }
    if broken == {"kind": "link"}:
        base.pop("left")
    with pytest.raises(ConfigurationError):
        Operation.from_json({**base, **broken})


POOL = [("email", f"p{n}@example.de") for n in range(4)] + [
    ("anonymous_id", f"a-{n}") for n in range(4)
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(
        st.tuples(
            st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True),
            st.booleans(),
        ),
        max_size=20,
    )
)
def test_after_a_reject_no_sequence_of_events_joins_the_two(
    events: list[tuple[list[tuple[str, str]], bool]],
) -> None:
    stitcher = Stitcher(
        MemoryStore(), MemoryStore(), StitchConfig(matching=MatchConfig.default()), lambda: NOW
    )
    see(stitcher, [("customer_id", "CRM-1"), ("email", "p0@example.de")], **NAMES)
    see(stitcher, [("anonymous_id", "a-0")], **NAMES)
    outcome, _ = stitcher.operate(op("reject", "email:p0@example.de", "anonymous_id:a-0"))
    assert outcome.status == "done"
    for ids, with_names in events:
        see(stitcher, ids, **(NAMES if with_names else {}))
    graph = stitcher.graph
    assert graph.customer_of_node(Node("email", "p0@example.de")) != graph.customer_of_node(
        Node("anonymous_id", "a-0")
    )


def test_explain_as_an_operation_answers_from_the_current_graph_and_records_nothing(
    stitcher: Stitcher,
) -> None:
    import json

    a = see(stitcher, [("email", "kathi@example.de"), ("phone", "+491701234567")])
    see(stitcher, [("email", "other@example.de")])
    asked = op("explain", "email:KATHI@example.de", "phone:0170 1234567")
    outcome, out = stitcher.operate(asked)
    found = json.loads(outcome.detail)
    assert (outcome.status, found["joined"], found["customer"]) == ("done", True, a)
    assert not out.changes and not out.profiles
    direct = explain(
        stitcher.graph.store, Node("email", "kathi@example.de"), Node("phone", "+491701234567")
    )
    assert found == direct.to_json()
    assert Explanation.from_json(found) == direct  # what the CLI renders from the result

    apart, _ = stitcher.operate(
        op("explain", "email:kathi@example.de", "email:other@example.de", 2)
    )
    assert json.loads(apart.detail)["joined"] is False
    mine, _ = stitcher.operate(op("explain", a, "email:kathi@example.de", 3))
    path = json.loads(mine.detail)
    assert path["joined"] and path["left_path"][-1]["customer"] == a
    again, _ = stitcher.operate(asked)  # not recorded: a fresh answer, not a "repeat"
    assert again.status == "done" and again.detail == outcome.detail
    refused, _ = stitcher.operate(op("explain", a, a, 4))
    assert refused.status == "refused"
