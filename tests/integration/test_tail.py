"""`omnistitch tail` on the real broker and registry: Avro decoded, tombstones, junk."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from pipeline.cli import main
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import JOURNEYS
from tests.factories import make_journey
from tests.integration.conftest import KafkaEndpoints

pytestmark = pytest.mark.integration


def test_tail_prints_decoded_records_tombstones_and_the_size_of_junk(
    kafka: KafkaEndpoints,
    project_topics: Callable[[int], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = project_topics(1)
    topic = JOURNEYS.name(prefix)
    serde = RegistrySerde(kafka.registry_url)
    journey = make_journey()
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    producer.produce(topic, key=journey.customer_id, value=serde.encode(topic, journey))
    producer.produce(topic, key="cus-gone", value=None)
    producer.produce(topic, key="junk", value=b"not avro")
    assert producer.flush(30) == 0
    monkeypatch.setenv("OMNISTITCH_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("OMNISTITCH_SCHEMA_REGISTRY_URL", kafka.registry_url)

    assert main(["tail", topic]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["key"] for line in lines] == [journey.customer_id, "cus-gone", "junk"]
    assert lines[0]["value"]["event"]["event_id"] == journey.event.event_id
    assert lines[0]["value"]["customer_id"] == journey.customer_id
    assert lines[1]["value"] is None
    assert lines[2]["value"] == {"undecoded_bytes": 8, "why": "bad_magic_byte"}

    assert main(["tail", topic, "--last", "1"]) == 0
    (last,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert last["key"] == "junk"
    assert main(["tail", prefix + "no-such-topic"]) == 2
