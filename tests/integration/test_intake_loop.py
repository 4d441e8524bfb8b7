"""The intake loop in-process on the real broker: batches committed after delivery, and a
partition it never committed starts where the faust group of earlier versions had committed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.contract.models import ChannelEvent
from pipeline.settings import Settings
from pipeline.stream.intake_loop import IntakeLoop, group_id
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import ACCEPTED, EVENTS, create_topics
from tests.factories import make_event
from tests.integration.conftest import KafkaEndpoints, accepted_entries, drain

pytestmark = pytest.mark.integration


def _events_on_fresh_topics(
    kafka: KafkaEndpoints, unique_name: Callable[[str], str], count: int, **settings: Any
) -> tuple[Settings, RegistrySerde, str, list[ChannelEvent]]:
    """One-partition topics under a fresh prefix holding ``count`` events, and the settings of
    an intake loop on them."""
    prefix = unique_name("loop") + "."
    create_topics(kafka.bootstrap_servers, prefix, 1)
    configured = Settings(
        bootstrap_servers=kafka.bootstrap_servers,
        schema_registry_url=kafka.registry_url,
        topic_prefix=prefix,
        partitions=1,
        app_id=unique_name("app"),
        **settings,
    )
    serde = RegistrySerde(kafka.registry_url)
    topic = EVENTS.name(prefix)
    events = [make_event(occurred_at=datetime.now(UTC)) for _ in range(count)]
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for event in events:
        producer.produce(topic, key=event.event_id.encode(), value=serde.encode(topic, event))
    assert producer.flush(30) == 0
    return configured, serde, topic, events


def test_an_upgrade_starts_at_the_earlier_commit_and_commits_after_delivery(
    kafka: KafkaEndpoints, unique_name: Callable[[str], str]
) -> None:
    settings, serde, topic, events = _events_on_fresh_topics(kafka, unique_name, 10)
    prefix = settings.topic_prefix
    # The faust group of an earlier version had handled the first four records.
    legacy = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": settings.app_id})
    legacy.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
    legacy.close()

    loop = IntakeLoop(settings, serde)
    loop.consumer.subscribe([topic], on_assign=loop._on_assign)
    handled = 0
    for _ in range(40):
        handled += loop.step()
        if handled >= 6:
            break
    loop.producer.flush(10)
    loop.consumer.close()
    assert handled == 6

    accepted = accepted_entries(kafka.bootstrap_servers, serde, prefix, 6, 30)
    assert [a["event"]["event_id"] for a in accepted] == [e.event_id for e in events[4:]]
    assert [(a["topic"], a["offset"]) for a in accepted] == [(topic, n) for n in range(4, 10)]
    # One batch record carried them (the six records came in one consume).
    assert len(drain(kafka.bootstrap_servers, ACCEPTED.name(prefix), idle_s=1)) == 1
    check = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": group_id(settings.app_id)}
    )
    try:
        (committed,) = check.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        check.close()
    assert committed.offset == 10


def test_a_batch_whose_deliveries_fail_is_not_committed_and_is_read_again(
    kafka: KafkaEndpoints, unique_name: Callable[[str], str]
) -> None:
    from pipeline.stack.local import free_port

    settings, serde, topic, events = _events_on_fresh_topics(
        kafka, unique_name, 5, delivery_timeout_s=3
    )
    prefix = settings.topic_prefix

    loop = IntakeLoop(settings, serde)
    working = loop.producer
    # Kafka unreachable for the producer: nothing can be delivered within the timeout.
    loop.producer = Producer(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 2000}
    )
    loop.consumer.subscribe([topic], on_assign=loop._on_assign)
    for _ in range(10):
        assert loop.step() == 0  # a failed batch counts nothing as handled
        if loop.accepted >= 5:
            break
    assert loop.accepted >= 5  # the records were consumed and handed over, never delivered
    check = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": group_id(settings.app_id)}
    )
    try:
        (committed,) = check.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed.offset < 0  # nothing committed
        # Kafka back: the same records are read again, delivered and committed.
        loop.producer = working
        handled = sum(loop.step() for _ in range(20))
        loop.consumer.close()
        assert handled == 5
        (committed,) = check.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed.offset == 5
    finally:
        check.close()
    accepted = accepted_entries(kafka.bootstrap_servers, serde, prefix, 5, 30)
    assert {a["event"]["event_id"] for a in accepted} == {e.event_id for e in events}
