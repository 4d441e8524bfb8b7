"""Operators' decisions on the real broker: ``omnistitch link`` and ``review reject`` publish on
the operations topic, the running worker applies them in order with events and answers on the
results topic; a retry with the same id is applied once; an invalid operation is dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.models import ChangeType, Identifier, Traits
from pipeline.engine.operations import Operation
from pipeline.engine.state import MemoryStore
from pipeline.engine.stitcher import Stitcher
from pipeline.stream.topics import DEAD_LETTERS, OPERATIONS
from tests.factories import make_event, make_shared_tablet
from tests.integration.conftest import drain
from tests.integration.deployments import Run, wait_for

pytestmark = pytest.mark.integration


def _cli(run: Run, *args: str) -> tuple[int, dict[str, Any]]:
    code, out = run.cli(*args, "--operator", "qa", "--json")
    return code, json.loads(out.strip().splitlines()[-1])


def _explain(run: Run, left: str, right: str) -> tuple[int, dict[str, Any]]:
    """``omnistitch explain`` against the running worker, as JSON."""
    code, out = run.cli("explain", left, right, "--json")
    return code, dict(json.loads(out))


def test_link_and_reject_through_the_worker(run_factory: Callable[[int], Run]) -> None:
    run = run_factory(2)
    worker = run.ready_worker("w0")
    ann = Identifier(namespace="email", value="ann@example.com")
    phone = Identifier(namespace="phone", value="+4915112345678")
    card = Identifier(namespace="loyalty_id", value="LC-1")
    run.produce(
        [
            make_event(event_id="e1", identifiers=[ann]),
            make_event(event_id="e2", identifiers=[phone]),
            make_event(event_id="e3", identifiers=[card]),
        ]
    )
    run.wait_for_journeys({"e1", "e2", "e3"})
    assert len(run.profiles()) == 3

    code, linked = _cli(
        run, "link", "email:ann@example.com", "phone:+4915112345678", "--id", "op-link-1"
    )
    assert (code, linked["status"], linked["kind"]) == (0, "done", "link"), linked
    wait_for(lambda: len(run.profiles()) == 2, "the merged profile and the loser's tombstone")
    survivor = run.profiles()[linked["customer_id"]]
    assert survivor.event_count == 2
    merged = [c for c in run.changes() if c.change_id in linked["change_ids"]]
    assert [c.change_type for c in merged] == [ChangeType.merged]
    assert merged[0].evidence[0].source == "operator:qa"

    code, again = _cli(
        run, "link", "email:ann@example.com", "phone:+4915112345678", "--id", "op-link-1"
    )
    assert (code, again["status"], again["customer_id"]) == (0, "repeat", linked["customer_id"])

    code, rejected = _cli(run, "review", "reject", "email:ann@example.com", "loyalty_id:LC-1")
    assert (code, rejected["status"]) == (0, "done"), rejected
    # An event carrying both afterwards does not merge them: a conflict instead.
    run.produce([make_event(event_id="e4", identifiers=[ann, card])])
    run.wait_for_journeys({"e1", "e2", "e3", "e4"})
    assert len(run.profiles()) == 2
    conflicts = [c for c in run.changes() if c.change_type is ChangeType.conflict]
    assert any("operator" in c.reason for c in conflicts)

    code, unknown = _cli(run, "link", "email:nobody@example.com", "loyalty_id:LC-1")
    assert (code, unknown["status"]) == (1, "unknown")

    # Bytes that are no IdentityOperation: a dead letter, and the worker goes on.
    producer = Producer({"bootstrap.servers": run.kafka.bootstrap_servers})
    producer.produce(OPERATIONS.name(run.prefix), key=b"junk", value=b"not avro")
    assert producer.flush(30) == 0
    dead_topic = DEAD_LETTERS.name(run.prefix)

    def dead_letter_seen() -> bool:
        letters = [
            DeadLetter.from_message(m.key(), m.value(), m.headers() or [])
            for m in drain(run.kafka.bootstrap_servers, dead_topic)
        ]
        return any(letter.value == b"not avro" for letter in letters)

    wait_for(dead_letter_seen, "a dead letter for the broken operation")
    code, later = _cli(run, "review", "accept", "phone:+4915112345678", "email:ann@example.com")
    assert (code, later["status"], later["detail"]) == (0, "done", "already one customer")
    assert worker.stop() == 0


def test_split_through_the_worker_equals_replay_with_the_same_operation(
    run_factory: Callable[[int], Run],
) -> None:
    run = run_factory(4)
    worker = run.ready_worker("w0")
    events = make_shared_tablet()  # b2, the last, merges Ann and Ben through the tablet
    tablet, ben = events[3].identifiers[1], events[3].identifiers[0]
    for n, event in enumerate(events):  # in this order (the topic has 4 partitions)
        run.produce([event])
        run.wait_for_journeys({e.event_id for e in events[: n + 1]})
    wait_for(lambda: len(run.profiles()) == 1, "the tablet's merge")

    code, why = _explain(run, "email:ann@example.com", "email:ben@example.com")
    assert (code, why["joined"]) == (0, True), why  # the worker's graph, through the tablet
    assert "anonymous_id|tablet-1" in json.dumps(why)
    code, split = _cli(run, "split", "email:ann@example.com", "--event", "b2", "--id", "op-s")
    assert (code, split["status"], split["detail"]) == (0, "done", "2 parts"), split
    wait_for(lambda: len(run.profiles()) == 2, "a profile per part")
    code, why = _explain(run, "email:ann@example.com", "email:ben@example.com")
    assert (code, why["joined"]) == (1, False), why
    assert any("do not link" in note for note in why["notes"]), why
    corrected = [j for j in run.journeys() if j.corrects is not None]
    assert len(corrected) == 2, "the moved part's two events, issued again"

    replay = Stitcher(MemoryStore(), MemoryStore(), keep_events=True)
    for event in events:
        replay.process(event)
    operation = Operation.from_json(
        {
            "operation_id": "op-s",
            "kind": "split",
            "left": "email:ann@example.com",
            "right": "event:b2",
            "operator": "qa",
            "requested_at": "2026-11-27T10:00:00Z",
        }
    )
    _outcome, out = replay.operate(operation)

    def comparable(profiles: Any) -> dict[str, Any]:
        return {p.customer_id: p.model_dump(exclude={"updated_at", "version"}) for p in profiles}

    # The parts' profiles are rebuilt over several batches: wait until the topic settles.
    expected = comparable(out.profiles)
    wait_for(lambda: comparable(run.profiles().values()) == expected, "profiles equal replay's")
    assert sorted((j.event.event_id, j.customer_id, j.corrects) for j in corrected) == sorted(
        (j.event.event_id, j.customer_id, j.corrects) for j in out.journeys
    )
    # Ben's next tablet session stays Ben's: the removed link is not made again.
    run.produce([make_event(event_id="b3", identifiers=[ben, tablet])])
    run.wait_for_journeys({"a1", "a2", "b1", "b2", "b3"})
    assert len(run.profiles()) == 2
    code, unlinked = _cli(run, "unlink", "email:ann@example.com", "email:ben@example.com")
    assert (code, unlinked["status"]) == (1, "refused")
    # The tablet is junk: it stops linking and leaves both profiles.
    code, junked = _cli(run, "junk", "anonymous_id:tablet-1")
    assert (code, junked["status"]) == (0, "done"), junked

    def tablet_gone() -> bool:
        profiles = run.profiles().values()
        return len(profiles) == 2 and all("anonymous_id" not in p.identifiers for p in profiles)

    wait_for(tablet_gone, "both profiles without the junk tablet")
    assert worker.stop() == 0


def test_erase_through_the_worker_leaves_no_trace_in_its_state_and_drops_later_events(
    run_factory: Callable[[int], Run],
) -> None:
    run = run_factory(2)
    run.env["OMNISTITCH_ERASURE_KEY"] = "integration-test-erasure-key-0123456789"
    worker = run.ready_worker("w0")
    pii = ["annegret.voss@example.de", "+4915199887766", "Annegret"]
    ann = Identifier(namespace="email", value=pii[0])
    phone = Identifier(namespace="phone", value=pii[1])
    events = [
        make_event(event_id="a1", identifiers=[ann], traits=Traits(first_name=pii[2])),
        make_event(event_id="a2", identifiers=[ann, phone]),
        make_event(event_id="b1", identifiers=[Identifier(namespace="email", value="b@x.de")]),
    ]
    run.produce(events)
    run.wait_for_journeys({"a1", "a2", "b1"})
    wait_for(lambda: len(run.profiles()) == 2, "two profiles")

    code, erased = _cli(run, "erase", "--identifier", f"email:{pii[0]}")
    assert (code, erased["status"]) == (0, "done"), erased
    wait_for(lambda: len(run.profiles()) == 1, "Ann's profile tombstoned")
    changes = [c for c in run.changes() if c.change_type is ChangeType.erased]
    assert [c.customer_id for c in changes] == [erased["customer_id"]]

    run.produce([make_event(event_id="a3", identifiers=[phone])])  # a late event of hers

    def dropped() -> bool:
        letters = [
            DeadLetter.from_message(m.key(), m.value(), m.headers() or [])
            for m in drain(run.kafka.bootstrap_servers, DEAD_LETTERS.name(run.prefix))
        ]
        return any(d.rejection.reason.value == "erased" and not d.value for d in letters)

    wait_for(dropped, "a dead letter 'erased' without payload for the late event")
    assert len(run.profiles()) == 1
    assert worker.stop() == 0
    state = run.tmp_path / "data-w0"
    left = [
        (path.relative_to(state), value)
        for path in state.rglob("*")
        if path.is_file()
        for value in pii
        if value.encode() in path.read_bytes()
    ]
    assert not left, f"personal data left in the worker's state files: {left[:5]}"
