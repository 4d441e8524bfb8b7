"""Dead letters hold personal data: their retention is configurable and they can be purged."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from pipeline.stream.topics import DEAD_LETTERS, create_topics, purge_before
from tests.integration.conftest import KafkaEndpoints, drain

pytestmark = pytest.mark.integration


def test_retention_is_configurable_and_purge_deletes_for_good(
    kafka: KafkaEndpoints, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("purge") + "."
    create_topics(
        kafka.bootstrap_servers,
        prefix,
        1,
        specs=[DEAD_LETTERS],
        dead_letter_retention_ms=86_400_000,
    )
    topic = DEAD_LETTERS.name(prefix)
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    resource = ConfigResource("topic", topic)
    config = admin.describe_configs([resource])[resource].result(timeout=30)
    assert config["retention.ms"].value == "86400000"

    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for n in range(3):
        producer.produce(topic, key=b"old", value=f"old-{n}".encode())
    assert producer.flush(30) == 0
    time.sleep(0.5)
    cut = int(time.time() * 1000)
    time.sleep(0.5)
    producer.produce(topic, key=b"new", value=b"new-0")
    assert producer.flush(30) == 0

    assert purge_before(kafka.bootstrap_servers, topic, cut) == {0: 3}
    assert [m.value() for m in drain(kafka.bootstrap_servers, topic, idle_s=2)] == [b"new-0"]
    assert purge_before(kafka.bootstrap_servers, topic, None) == {0: 1}
    assert drain(kafka.bootstrap_servers, topic, idle_s=2) == []
