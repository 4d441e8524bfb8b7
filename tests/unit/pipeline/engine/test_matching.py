"""Probabilistic matching in the linking stage, over both store backends."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.synthetic.generator import generate, map_touches
from pipeline.contract.models import ChangeType, ChannelEvent, Identifier, Traits
from pipeline.engine.matching import PROBABILISTIC, MatchConfig, blocking_keys
from pipeline.engine.state import MemoryStore, Store
from pipeline.engine.stitcher import StitchConfig, Stitcher
from pipeline.quality.evaluation import pairwise
from tests.factories import NOW, Linking, make_event


@pytest.fixture
def linking(store_factory: Callable[[], Store]) -> Linking:
    return Linking(store_factory())


PERSON = {
    "first_name": "Jürgen",
    "last_name": "Müller",
    "birth_date": "1980-02-03",
    "postal_code": "10115",
    "city": "Berlin",
}


def test_a_strong_match_links_with_its_score_and_weights_as_evidence(linking: Linking) -> None:
    crm = linking.link([("customer_id", "CRM-1")], **PERSON)
    signup = linking.link(
        [("loyalty_id", "LC-9")], **{**PERSON, "first_name": "Juergen", "last_name": "MUELLER"}
    )
    merge = next(c for c in signup.changes if c.change_type is ChangeType.merged)
    assert merge.customer_id == crm.customer_id
    evidence = merge.evidence[0]
    assert evidence.rule == PROBABILISTIC
    assert evidence.score is not None and evidence.score >= 0.95
    assert evidence.details["birth_date"].startswith("exact (+")
    assert evidence.details["first_name"].startswith("exact (+")
    assert float(evidence.details["match_weight"]) > 0
    assert linking.customer("loyalty_id", "LC-9") == linking.customer("customer_id", "CRM-1")
    assert signup.customer_id == crm.customer_id
    assert [(f.loser, f.winner) for f in signup.folds] == [
        (merge.old_customer_ids[0], crm.customer_id)
    ]


def test_a_possible_match_is_recorded_once_without_merging(linking: Linking) -> None:
    names = {"first_name": "Katharina", "last_name": "Schmidt", "city": "Köln"}
    first = linking.link([("customer_id", "CRM-1")], **names)
    second = linking.link([("anonymous_id", "a-1")], **{**names, "first_name": "Kathi"})
    (possible,) = [c for c in second.changes if c.change_type is ChangeType.possible_match]
    assert possible.customer_id == second.customer_id != first.customer_id
    assert possible.old_customer_ids == [first.customer_id]
    assert possible.evidence[0].score is not None and 0.6 <= possible.evidence[0].score < 0.95
    third = linking.link([("anonymous_id", "a-1")], **names)
    assert not [c for c in third.changes if c.change_type is ChangeType.possible_match]
    assert linking.customer("anonymous_id", "a-1") != linking.customer("customer_id", "CRM-1")


def test_a_probabilistic_link_never_joins_different_unique_ids(linking: Linking) -> None:
    linking.link([("customer_id", "CRM-1")], **PERSON)
    other = linking.link([("customer_id", "CRM-2")], **PERSON)
    (refused,) = [c for c in other.changes if c.change_type is ChangeType.conflict]
    assert refused.evidence[0].rule == PROBABILISTIC
    assert "customer_id" in refused.reason
    assert linking.customer("customer_id", "CRM-1") != linking.customer("customer_id", "CRM-2")
    assert linking.stats["refused_unique"] == 1


def test_events_without_person_attributes_are_not_compared(linking: Linking) -> None:
    linking.link([("email", "a@b.de")], city="Berlin", postal_code="10115")
    linking.link([("email", "c@d.de")], city="Berlin", postal_code="10115")
    assert linking.stats.get("compared", 0) == 0


def test_an_oversized_block_is_skipped_and_counted(store_factory: Callable[[], Store]) -> None:
    linking = Linking(store_factory(), max_block_size=2)
    people = [("Anna", "Adler"), ("Berta", "Bauer"), ("Clara", "Conrad"), ("Dora", "Dietz")]
    for n, (first, last) in enumerate(people):
        linking.link(
            [("customer_id", f"CRM-{n}")], first_name=first, last_name=last, birth_date="1990-01-01"
        )
    assert linking.stats["blocks_oversized"] == 1
    assert linking.stats["oversized_blocks_skipped"] >= 1


def test_blocking_keys() -> None:
    keys = blocking_keys(
        {
            "first_name": ["Jürgen"],
            "last_name": ["Müller"],
            "birth_date": ["1980-02-03"],
            "address": ["hauptstrasse|12|10115|berlin|||"],
        }
    )
    assert keys == sorted(
        [
            "bd|1980-02-03",
            "ln|MLR|1980",
            "nm|JRJN|MLR",
            "pc|10115|j",
            "ph|10115|12",
            "sh|hauptstras|12",
        ]
    )


# -- properties --------------------------------------------------------------------------------

NAMES = st.sampled_from(["Jürgen", "Juergen", "Anna", "Kathi", "Katharina"])
LASTS = st.sampled_from(["Müller", "Mueller", "Schmidt"])
DATES = st.sampled_from(["1980-02-03", "1980-03-02", "1975-01-01"])
POSTAL = st.sampled_from(["10115", "10117"])


@st.composite
def crowd(draw: st.DrawFn) -> list[ChannelEvent]:
    """Look-alike people, each with its own CRM id, and anonymous events of look-alikes."""
    events = []
    for n in range(draw(st.integers(2, 25))):
        known = draw(st.booleans())
        events.append(
            make_event(
                event_id=f"p-{n}",
                identifiers=[
                    Identifier(namespace="customer_id", value=f"CRM-{draw(st.integers(0, 6))}")
                ]
                if known
                else [Identifier(namespace="anonymous_id", value=f"a-{n}")],
                traits=Traits(
                    first_name=draw(NAMES),
                    last_name=draw(LASTS),
                    birth_date=draw(st.none() | DATES),
                    postal_code=draw(POSTAL),
                ),
            )
        )
    return events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=crowd())
def test_no_customer_ever_holds_two_crm_ids(events: list[ChannelEvent]) -> None:
    stitcher = Stitcher(MemoryStore(), MemoryStore(), StitchConfig(matching=MatchConfig.default()))
    for event in events:
        stitcher.process(event)
    crm_ids: dict[str, set[str]] = defaultdict(set)
    for event in events:
        customer = stitcher.customer_of_event(event.event_id)
        assert customer is not None
        crm_ids[customer] |= {i.value for i in event.identifiers if i.namespace == "customer_id"}
    assert all(len(ids) <= 1 for ids in crm_ids.values()), crm_ids


def test_f1_of_shuffled_input_stays_in_a_narrow_band() -> None:
    events = map_touches(generate(300, seed=21, anchor=datetime(2026, 11, 24, tzinfo=UTC))).events
    truth = {e.event_id: e.properties["truth_person_id"] for e in events}
    scores = []
    for order in range(5):
        shuffled = list(events)
        random.Random(order).shuffle(shuffled)
        stitcher = Stitcher(
            MemoryStore(),
            MemoryStore(),
            StitchConfig(matching=MatchConfig.default()),
            clock=lambda: datetime(2026, 11, 24, tzinfo=UTC),
            emit_outputs=False,
        )
        for event in shuffled:
            stitcher.process(event)
        predicted = {e: c for e in truth if (c := stitcher.customer_of_event(e))}
        scores.append(pairwise(predicted, truth).f1)
    assert max(scores) - min(scores) <= 0.02, scores
    assert min(scores) > 0.8, scores


def test_both_profiles_record_a_possible_match(store_factory: Callable[[], Store]) -> None:
    stitcher = Stitcher(
        store_factory(),
        store_factory(),
        StitchConfig(matching=MatchConfig.default()),
        clock=lambda: NOW,
    )
    names = {"first_name": "Katharina", "last_name": "Schmidt", "city": "Köln"}
    first = stitcher.process(
        make_event(
            identifiers=[Identifier(namespace="customer_id", value="CRM-1")], traits=Traits(**names)
        )
    )
    second = stitcher.process(
        make_event(
            identifiers=[Identifier(namespace="anonymous_id", value="a-1")],
            traits=Traits(**{**names, "first_name": "Kathi"}),
        )
    )
    profiles = {p.customer_id: p for p in second.profiles}
    assert profiles[first.customer_id].possible_matches == [second.customer_id]
    assert profiles[second.customer_id].possible_matches == [first.customer_id]
    again = stitcher.process(
        make_event(
            identifiers=[Identifier(namespace="anonymous_id", value="a-1")], traits=Traits(**names)
        )
    )
    assert again.profiles[-1].possible_matches == [first.customer_id]
