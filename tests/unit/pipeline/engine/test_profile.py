"""The profile stage: survivorship, counts, consent, folds and absorbs, idempotency."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from pipeline.contract.models import Channel, Traits
from pipeline.engine.identifiers import Node
from pipeline.engine.journey import place
from pipeline.engine.messages import fold_message, route_message
from pipeline.engine.profile import ProfileBook, Survivorship
from pipeline.engine.state import MemoryStore, Store
from tests.factories import NOW, make_event

T0 = NOW - timedelta(days=2)


def at(minutes: int):  # type: ignore[no-untyped-def]
    return T0 + timedelta(minutes=minutes)


def test_most_recent_non_empty_trait_wins_by_event_time(store_factory: Callable[[], Store]) -> None:
    book = ProfileBook(store_factory())
    book.add_event("c1", make_event(occurred_at=at(10), traits=Traits(city="Köln")), [], NOW)
    book.add_event("c1", make_event(occurred_at=at(30), traits=Traits(city="  ")), [], NOW)
    out = book.add_event("c1", make_event(occurred_at=at(5), traits=Traits(city="Bonn")), [], NOW)
    assert out.profiles[0].traits.city == "Köln"  # Bonn is older, the blank is ignored


def test_source_precedence_beats_recency(store_factory: Callable[[], Store]) -> None:
    book = ProfileBook(store_factory(), Survivorship(source_precedence=("crm",)))
    book.add_event(
        "c1",
        make_event(occurred_at=at(1), source="crm-export", traits=Traits(last_name="Müller")),
        [],
        NOW,
    )
    out = book.add_event(
        "c1",
        make_event(occurred_at=at(9), source="web", traits=Traits(last_name="Mueller")),
        [],
        NOW,
    )
    assert out.profiles[0].traits.last_name == "Müller"


def test_counts_channels_orders_and_consent(store_factory: Callable[[], Store]) -> None:
    book = ProfileBook(store_factory())
    book.add_event(
        "c1",
        make_event(occurred_at=at(1), channel=Channel.web, consent={"email": True}),
        [Node("email", "z@x.ie")],
        NOW,
    )
    book.add_event(
        "c1",
        make_event(
            occurred_at=at(2),
            channel=Channel.ecommerce,
            event_type="order_placed",
            properties={"amount": "19.90", "currency": "EUR"},
        ),
        [],
        NOW,
    )
    out = book.add_event(
        "c1",
        make_event(
            occurred_at=at(3),
            channel=Channel.store,
            event_type="purchase",
            properties={"amount": "10.10", "currency": "eur"},
            consent={"email": False},
        ),
        [],
        NOW,
    )
    profile = out.profiles[0]
    assert profile.event_count == 3 and profile.order_count == 2
    assert profile.order_totals == {"EUR": "30.00"}
    assert profile.channels == [Channel.web, Channel.ecommerce, Channel.store]
    assert profile.consent == {"email": False}
    assert profile.identifiers == {"email": ["z@x.ie"]}
    assert profile.first_seen == at(1) and profile.last_seen == at(3)


def test_consent_per_purpose_shows_its_latest_statement_and_where_it_came_from(
    store_factory: Callable[[], Store],
) -> None:
    book = ProfileBook(store_factory())
    statements = [
        (at(1), "newsletter-tool", {"email": True, "sms": True}),
        (at(5), "pos-berlin-03", {"sms": False}),
        (at(3), "call-centre", {"email": False, "sms": True}),  # late, older than the till's
    ]
    for moment, source, consent in statements:
        out = book.add_event(
            "c1", make_event(occurred_at=moment, source=source, consent=consent), [], NOW
        )
    profile = out.profiles[0]
    assert profile.consent == {"email": False, "sms": False}
    shown = {k: (v.granted, v.source, v.stated_at) for k, v in profile.consent_statements.items()}
    assert shown == {
        "email": (False, "call-centre", at(3)),
        "sms": (False, "pos-berlin-03", at(5)),
    }


def test_a_repeated_event_changes_nothing(store_factory: Callable[[], Store]) -> None:
    book = ProfileBook(store_factory())
    event = make_event(occurred_at=at(1))
    first = book.add_event("c1", event, [], NOW)
    again = book.add_event("c1", event, [], NOW)
    assert first.journeys and not again.journeys and not again.profiles


def test_fold_hands_the_state_to_the_winner_and_forwards_late_events(
    store_factory: Callable[[], Store],
) -> None:
    book = ProfileBook(store_factory())
    book.add_event("win", make_event(occurred_at=at(1), channel=Channel.web), [], NOW)
    book.add_event(
        "lose",
        make_event(
            occurred_at=at(2),
            channel=Channel.store,
            event_type="purchase",
            properties={"amount": "5", "currency": "EUR"},
        ),
        [],
        NOW,
    )
    folded = book.handle("lose", fold_message("win"), NOW)
    assert folded.tombstones == [] and folded.profiles == []
    ((target, absorb),) = folded.forwards
    assert target == "win"
    out = book.handle("win", absorb, NOW)
    profile = out.profiles[0]
    assert profile.event_count == 2 and profile.merged_ids == ["lose"]
    assert profile.order_totals == {"EUR": "5"}
    # The loser's tombstone comes with the winner's merged profile, never before it.
    assert out.tombstones == ["lose"]
    again = book.handle("win", absorb, NOW)  # absorbing twice changes nothing ...
    assert again.profiles[0].version == profile.version
    assert again.profiles[0].event_count == 2
    assert again.tombstones == ["lose"]  # ... and sends the same outputs again
    late = make_event(occurred_at=at(3))
    forwarded = book.handle("lose", route_message(late, []), NOW)
    assert forwarded.forwards[0][0] == "win" and not forwarded.journeys


def test_journey_context_uses_event_time() -> None:
    touches: list[list[object]] = []
    first = place(touches, 1000, Channel.web)  # type: ignore[arg-type]
    third = place(touches, 5000, Channel.store)  # type: ignore[arg-type]
    second = place(touches, 2000, Channel.email)  # type: ignore[arg-type]  # arrives late
    assert (first.sequence_number, first.previous_channel) == (1, None)
    assert (third.sequence_number, third.previous_channel, third.time_since_previous_ms) == (
        2,
        Channel.web,
        4000,
    )
    assert (second.sequence_number, second.previous_channel, second.channel_switch) == (
        2,
        Channel.web,
        True,
    )
    assert second.time_since_previous_ms == 1000


def test_the_journal_re_emits_a_lost_journey_but_not_one_merged_in(
    store_factory: Callable[[], Store],
) -> None:
    from pipeline.engine.journey import Journal

    journal = Journal(window_ms=600_000)
    journal.reset({}, to_ms_now := int(NOW.timestamp() * 1000))
    book = ProfileBook(store_factory(), journal=journal)
    event = make_event(occurred_at=at(1))
    assert book.add_event("c1", event, [], NOW).journeys
    # After a crash: the state survived, the journey event did not reach the topic.
    journal.reset({}, to_ms_now)
    again = book.add_event("c1", event, [], NOW)
    assert [j.event.event_id for j in again.journeys] == [event.event_id]
    assert not book.add_event("c1", event, [], NOW).journeys  # noted now: once is enough
    # Merged in from another customer (journey emitted there): never repeated here.
    other = make_event(occurred_at=at(2))
    book.add_event("c2", other, [], NOW)
    ((target, absorb),) = book.handle("c2", fold_message("c1"), NOW).forwards
    book.handle(target, absorb, NOW)
    journal.reset({}, to_ms_now)
    assert not book.handle("c2", route_message(other, []), NOW).journeys
    forwarded = book.handle("c2", route_message(other, []), NOW).forwards[0]
    assert not book.handle(forwarded[0], forwarded[1], NOW).journeys


def test_profiles_and_journeys_built_without_validation_equal_validated_ones() -> None:
    """The book builds its records from values valid by construction (no validation in the
    hot path): validating them again changes nothing."""
    from pipeline.contract.models import CustomerProfile, JourneyEvent
    from tests.factories import make_rich_event

    book = ProfileBook(MemoryStore())
    event = make_rich_event(
        consent={"email": True}, properties={"amount": "9.5", "currency": "EUR"}
    )
    out = book.add_event("c1", event, [], NOW)
    (profile,) = out.profiles
    (journey,) = out.journeys
    assert CustomerProfile.model_validate(profile.model_dump()) == profile
    assert JourneyEvent.model_validate(journey.model_dump()) == journey
    assert profile.to_avro() == CustomerProfile.model_validate(profile.model_dump()).to_avro()


def test_a_journey_carries_hashed_identifiers_no_traits_and_only_the_listed_properties() -> None:
    email = Node("email", "ann@example.com")
    event = make_event(
        traits=Traits(first_name="Ann"),
        properties={"amount": "19.90", "currency": "EUR", "ip": "203.0.113.7", "note": "Ann"},
    )
    [journey] = ProfileBook(MemoryStore()).add_event("c1", event, [email], NOW).journeys
    assert journey.event.properties == {"amount": "19.90", "currency": "EUR"}
    assert journey.event.traits == Traits()
    assert [i.value for i in journey.event.identifiers] == [email.hashed().value]
    assert "ann@" not in journey.model_dump_json()
    book = ProfileBook(MemoryStore(), journey_properties=frozenset({"ip"}))
    [shown] = book.add_event("c1", event, [email], NOW).journeys
    assert shown.event.properties == {"ip": "203.0.113.7"}
