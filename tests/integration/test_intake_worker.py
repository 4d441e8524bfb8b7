"""`omnistitch worker` on the real broker: good records pass intake, each bad one lands in the
dead-letter topic with its original bytes, origin and reason, and processing goes on."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from pipeline.contract.dead_letters import DeadLetter, Reason
from pipeline.contract.models import ChannelEvent, Traits
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import DEAD_LETTERS, EVENTS, create_topics
from tests.factories import make_event, make_rich_event
from tests.integration.conftest import KafkaEndpoints, WorkerProcess, accepted_entries, consume

pytestmark = pytest.mark.integration

MAX_BYTES = 20_000


def _bad_records(serde: RegistrySerde, topic: str) -> dict[str, tuple[bytes | None, Reason]]:
    now = datetime.now(UTC)
    good = serde.encode(topic, make_rich_event(occurred_at=now))
    marker = "Jürgen".encode()
    return {
        "bad-magic": (b"\x01" + good[1:], Reason.bad_magic_byte),
        "json-not-avro": (b'{"event_id": "e-1", "channel": "web"}', Reason.bad_magic_byte),
        "unknown-schema": (
            b"\x00" + (987_654).to_bytes(4, "big") + good[5:],
            Reason.unknown_schema_id,
        ),
        "truncated": (good[: len(good) // 2], Reason.truncated_avro),
        "invalid-utf8": (good.replace(marker, b"\xff\xfe" + marker[2:], 1), Reason.invalid_utf8),
        "trailing": (good + b"\x00", Reason.trailing_bytes),
        "no-event-id": (
            serde.encode(topic, make_event(event_id="", occurred_at=now)),
            Reason.missing_event_id,
        ),
        "too-old": (
            serde.encode(topic, make_event(occurred_at=now - timedelta(days=20 * 365))),
            Reason.occurred_at_out_of_window,
        ),
        "nobody": (
            serde.encode(topic, make_event(identifiers=[], traits=Traits(), occurred_at=now)),
            Reason.no_identifiers_or_traits,
        ),
        "too-large": (
            serde.encode(topic, make_event(properties={"pad": "x" * MAX_BYTES}, occurred_at=now)),
            Reason.too_large,
        ),
        "tombstone": (None, Reason.empty_record),
    }


def test_worker_dead_letters_every_bad_record_and_passes_the_good_ones(
    kafka: KafkaEndpoints,
    unique_name: Callable[[str], str],
    worker_process: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    prefix = unique_name("intake") + "."
    create_topics(kafka.bootstrap_servers, prefix, partitions=2)
    events_topic = EVENTS.name(prefix)
    serde = RegistrySerde(kafka.registry_url)
    now = datetime.now(UTC)
    goods = [make_rich_event(occurred_at=now - timedelta(minutes=i)) for i in range(3)] + [
        make_event(occurred_at=now) for _ in range(2)
    ]
    bads = _bad_records(serde, events_topic)

    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "enable.idempotence": True})
    # Bad records interleaved with good ones: processing must go on after each bad one.
    for i, (key, (value, _reason)) in enumerate(bads.items()):
        producer.produce(events_topic, key=key.encode(), value=value)
        if i < len(goods):
            event = goods[i]
            producer.produce(
                events_topic, key=event.event_id.encode(), value=serde.encode(events_topic, event)
            )
    assert producer.flush(30) == 0

    worker = worker_process(
        [sys.executable, "-m", "pipeline.cli", "worker"],
        {
            "OMNISTITCH_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "OMNISTITCH_SCHEMA_REGISTRY_URL": kafka.registry_url,
            "OMNISTITCH_TOPIC_PREFIX": prefix,
            "OMNISTITCH_PARTITIONS": "2",
            "OMNISTITCH_APP_ID": unique_name("app"),
            "OMNISTITCH_DATA_DIR": str(tmp_path / "data"),
            "OMNISTITCH_MAX_RECORD_BYTES": str(MAX_BYTES),
            "OMNISTITCH_STATS_INTERVAL_S": "1",
        },
    )
    worker.start()

    letters = consume(
        kafka.bootstrap_servers, DEAD_LETTERS.name(prefix), len(bads), 120, worker.tail()
    )
    accepted = accepted_entries(
        kafka.bootstrap_servers, serde, prefix, len(goods), 60, worker.tail()
    )

    assert len(letters) == len(bads), "each bad record exactly once"
    by_key = {}
    for msg in letters:
        letter = DeadLetter.from_message(msg.key(), msg.value(), msg.headers() or [])
        by_key[letter.key.decode() if letter.key else ""] = letter
    assert set(by_key) == set(bads)
    for key, (value, reason) in bads.items():
        letter = by_key[key]
        assert letter.rejection.reason is reason, key
        assert letter.value == value, f"{key}: original bytes must be kept"
        assert letter.origin.topic == events_topic
        assert letter.origin.offset >= 0

    assert len(accepted) == len(goods)
    decoded = {
        event.event_id: event
        for event in (ChannelEvent.from_avro(entry["event"]) for entry in accepted)
    }
    assert decoded == {g.event_id: g for g in goods}
    assert {entry["topic"] for entry in accepted} == {events_topic}

    # Counters per reason, in the worker's log (without personal data).
    expected_counts = {}
    for _value, reason in bads.values():
        expected_counts[reason.value] = expected_counts.get(reason.value, 0) + 1
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    pattern = re.compile(r"intake: accepted=(\d+) dead_letters=(\{[^}]*\})")
    last = None
    while datetime.now(UTC) < deadline:
        found = pattern.findall(worker.tail(200_000))
        if found:
            last = found[-1]
            if int(last[0]) == len(goods) and eval(last[1]) == expected_counts:  # noqa: S307
                break
    assert last is not None and int(last[0]) == len(goods)
    assert eval(last[1]) == expected_counts  # noqa: S307 - the worker's own dict literal
    assert worker.stop() == 0
    assert "Jürgen" not in worker.tail(1_000_000), "no personal data in the worker log"
