"""Records a stage reads back from Kafka outside its stream: the journey tail of the last
window (what reached Kafka, whatever the state says: pipeline.engine.journey.Journal) and a
gap of records no stage handled (pipeline.stream.app, handle_batch)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pipeline.contract.models import JourneyEvent
from pipeline.settings import Settings
from pipeline.stream.serialization import Serde
from pipeline.stream.topics import JOURNEYS


@dataclass(frozen=True)
class Missed:
    """A record read back because no stage handled it (see handle_batch)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _consumer(settings: Settings, group: str) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        {
            **settings.kafka_security().librdkafka(),
            "group.id": f"{settings.app_id}-{group}",
            "enable.auto.commit": False,
        }
    )


def journey_tail(settings: Settings, codec: Serde, now_ms: int) -> dict[str, int]:
    """Event ids (and record times) of the journey events written in the last window."""
    from confluent_kafka import TopicPartition

    topic = JOURNEYS.name(settings.topic_prefix)
    consumer = _consumer(settings, "journey-tail")
    found: dict[str, int] = {}
    since = now_ms - int(settings.journey_window_s * 1000)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        wanted = [TopicPartition(topic, p, since) for p in metadata.partitions]
        ends = []
        for tp in consumer.offsets_for_times(wanted, timeout=10):
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=10
            )
            if tp.offset >= 0 and high > tp.offset:
                ends.append((tp, high))
        consumer.assign([tp for tp, _ in ends])
        remaining = {tp.partition: high for tp, high in ends}
        while remaining:
            msg = consumer.poll(2.0)
            if msg is None:
                break
            value, offset, partition = msg.value(), msg.offset(), msg.partition()
            if msg.error() or value is None or offset is None or partition is None:
                continue
            record = codec.decode(topic, value, JourneyEvent)
            found[record["event"]["event_id"]] = msg.timestamp()[1]
            if offset + 1 >= remaining.get(partition, 0):
                remaining.pop(partition, None)
    finally:
        consumer.close()
    return found


def records_between(
    settings: Settings, topic: str, partition: int, start: int, end: int
) -> list[Missed]:
    """The records of one partition in [start, end), as far as retention kept them."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(settings, "gap-reader")
    found: list[Missed] = []
    try:
        low, _high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        consumer.assign([TopicPartition(topic, partition, max(start, low))])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and max(start, low) < end:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            offset = int(msg.offset() or 0)
            if offset >= end:
                break
            found.append(Missed(topic, partition, offset, msg.key(), msg.value()))
            if offset == end - 1:
                break
    finally:
        consumer.close()
    return found


def latest_per_key(
    settings: Settings, topic: str, timeout_s: float = 60.0
) -> dict[bytes, bytes | None]:
    """A compacted topic read from its start to its current end: the latest value per key
    (None: a tombstone)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(settings, "compacted-reader")
    found: dict[bytes, bytes | None] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            found[msg.key() or b""] = msg.value()
            if int(msg.offset() or 0) + 1 >= ends.get(int(msg.partition() or 0), 0):
                ends.pop(int(msg.partition() or 0), None)
    finally:
        consumer.close()
    return found
