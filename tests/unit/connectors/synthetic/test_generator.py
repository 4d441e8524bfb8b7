"""The omnichannel generator: reproducible, realistic stories, ground truth on every event."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.synthetic.generator import Scenario, generate, map_touches, write_jsonl
from connectors.synthetic.people import ascii_fold, phone_forms
from pipeline.cli import main
from pipeline.contract.models import Channel
from pipeline.engine.identifiers import Normaliser

ANCHOR = datetime(2026, 11, 24, tzinfo=UTC)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(400, seed=11, anchor=ANCHOR)


def test_same_seed_same_records_other_seed_other_records() -> None:
    first = generate(30, seed=5, anchor=ANCHOR)
    again = generate(30, seed=5, anchor=ANCHOR)
    other = generate(30, seed=6, anchor=ANCHOR)
    assert first.touches == again.touches
    assert first.touches != other.touches


def test_every_event_maps_and_carries_its_ground_truth(scenario: Scenario) -> None:
    mapped = map_touches(scenario)
    assert mapped.rejected == 0
    assert all(e.properties.get("truth_person_id") for e in mapped.events)
    assert {e.properties["truth_person_id"] for e in mapped.events} == {
        str(p.pid) for p in scenario.people
    }


def test_events_lie_in_the_60_days_before_the_anchor(scenario: Scenario) -> None:
    for event in map_touches(scenario).events:
        assert ANCHOR - timedelta(days=61) <= event.occurred_at <= ANCHOR + timedelta(days=1)


def test_all_channels_and_connectors_are_used(scenario: Scenario) -> None:
    channels = Counter(e.channel for e in map_touches(scenario).events)
    assert set(channels) == set(Channel) - {Channel.unknown, Channel.social}
    assert {key.split(":")[0] for key in scenario.counts()} == {"segment", "webhook", "file"}


def test_names_have_umlauts_double_names_nicknames_and_mistakes(scenario: Scenario) -> None:
    events = map_touches(scenario).events
    firsts = {e.traits.first_name for e in events if e.traits.first_name}
    lasts = {e.traits.last_name for e in events if e.traits.last_name}
    assert any(re.search("[äöüÄÖÜß]", name) for name in firsts | lasts)
    assert any("-" in name for name in firsts) and any("-" in name for name in lasts)
    by_person: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.traits.last_name:
            by_person[e.properties["truth_person_id"]].add(e.traits.last_name)
    assert sum(len(spellings) > 1 for spellings in by_person.values()) >= 20


def test_anonymous_browsing_is_identified_later(scenario: Scenario) -> None:
    events = sorted(map_touches(scenario).events, key=lambda e: e.occurred_at)
    first_seen: dict[str, str] = {}
    identified = 0
    for e in events:
        anon = [i.value for i in e.identifiers if i.namespace == "anonymous_id"]
        named = any(i.namespace == "customer_id" for i in e.identifiers)
        for value in anon:
            if value in first_seen and named and first_seen[value] == "anonymous":
                identified += 1
            first_seen.setdefault(value, "named" if named else "anonymous")
    assert identified >= 50


def test_click_and_collect_orders_are_picked_up_in_store(scenario: Scenario) -> None:
    events = map_touches(scenario).events
    collect = {
        e.properties["order_id"]
        for e in events
        if e.event_type == "order_placed" and e.properties.get("fulfilment") == "click_and_collect"
    }
    picked = {e.properties["order_id"] for e in events if e.event_type == "order_picked_up"}
    assert collect and picked and picked <= collect


def test_support_cases_go_from_chat_to_phone_to_email(scenario: Scenario) -> None:
    tickets: dict[str, set[Channel]] = defaultdict(set)
    solved: set[str] = set()
    for e in map_touches(scenario).events:
        if "ticket_id" in e.properties:
            tickets[e.properties["ticket_id"]].add(e.channel)
            if e.event_type == "ticket_solved":
                solved.add(e.properties["ticket_id"])
    assert solved  # (cases still open at the anchor are cut short)
    assert all({Channel.chat, Channel.call_center, Channel.email} <= tickets[t] for t in solved)


def test_junk_identifiers_shared_devices_moves_and_repeated_webhooks(scenario: Scenario) -> None:
    events = map_touches(scenario).events
    normaliser = Normaliser()
    _nodes, dropped = normaliser.nodes([i for e in events for i in e.identifiers])
    assert dropped["junk"] > 0
    device_people: dict[str, set[str]] = defaultdict(set)
    for e in events:
        for i in e.identifiers:
            if i.namespace == "device_id":
                device_people[i.value].add(e.properties["truth_person_id"])
    assert any(len(people) > 1 for people in device_people.values())
    assert len(events) > len({e.event_id for e in events})  # webhooks delivered twice
    moved = [p for p in scenario.people if p.moved_to and p.customer_id]
    crm_cities = defaultdict(set)
    for e in events:
        if e.channel is Channel.crm:
            crm_cities[e.properties["truth_person_id"]].add(e.traits.postal_code)
    assert any(len(crm_cities[str(p.pid)]) == 2 for p in moved)


def test_phone_forms_are_one_number_and_folding_spells_german_names() -> None:
    numbers = {Normaliser().normalise("phone", form) for form in phone_forms("1701234567")}
    assert len(numbers) == 1
    assert ascii_fold("Jürgen Weiß") == "Juergen Weiss"
    assert ascii_fold("Jürgen", german=False) == "Jurgen"


def test_generate_command_writes_jsonl_that_replay_reads(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    assert main(["generate", "--customers", "40", "--seed", "3", "--output", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines and all(json.loads(line)["properties"]["truth_person_id"] for line in lines)
    result = tmp_path / "customers.jsonl"
    assert main(["replay", str(out), "--output", str(result)]) == 0
    assert len(result.read_text(encoding="utf-8").splitlines()) == len(lines)


def test_write_jsonl_counts_what_it_wrote(tmp_path: Path, scenario: Scenario) -> None:
    out = tmp_path / "x.jsonl"
    assert write_jsonl(scenario, out) == len(out.read_text(encoding="utf-8").splitlines())
