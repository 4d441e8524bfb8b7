"""The whole chain on the real broker: confluent-kafka producer → Avro via the registry →
faust agent → RocksDB table → changelog; the worker restarts and the table comes back."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.integration.conftest import KafkaEndpoints, WorkerProcess

pytestmark = pytest.mark.integration

PURCHASE_SCHEMA = """
{"type": "record", "name": "Purchase", "namespace": "io.omnistitch.test",
 "fields": [{"name": "customer", "type": "string"},
            {"name": "amount", "type": "int"}]}
"""
PARTITIONS = 2


@pytest.fixture
def chain(
    kafka: KafkaEndpoints,
    unique_name: Callable[[str], str],
    worker_process: Callable[..., WorkerProcess],
) -> tuple[WorkerProcess, dict[str, str]]:
    names = {
        "CHAIN_INPUT": unique_name("chain-in"),
        "CHAIN_OUTPUT": unique_name("chain-out"),
        "CHAIN_APP_ID": unique_name("chain-app"),
    }
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    futures = admin.create_topics(
        [
            NewTopic(names["CHAIN_INPUT"], PARTITIONS, 1),
            NewTopic(names["CHAIN_OUTPUT"], 1, 1),
        ]
    )
    for future in futures.values():
        future.result(30)
    env = {
        **names,
        "CHAIN_BOOTSTRAP": kafka.bootstrap_servers,
        "CHAIN_REGISTRY": kafka.registry_url,
        "CHAIN_PARTITIONS": str(PARTITIONS),
    }
    argv = [sys.executable, "-m", "tests.integration.chain_app", "worker", "-l", "info"]
    return worker_process(argv, env, name="chain"), env


def _produce(kafka: KafkaEndpoints, topic: str, customer: str, amount: int) -> None:
    serializer = AvroSerializer(SchemaRegistryClient({"url": kafka.registry_url}), PURCHASE_SCHEMA)
    producer = Producer(
        {"bootstrap.servers": kafka.bootstrap_servers, "enable.idempotence": True, "acks": "all"}
    )
    value = serializer(
        {"customer": customer, "amount": amount}, SerializationContext(topic, MessageField.VALUE)
    )
    assert value is not None and value[0] == 0  # Confluent wire format: magic byte 0
    producer.produce(topic, key=customer.encode(), value=value)
    assert producer.flush(30) == 0


def _next_outputs(
    consumer: Consumer, count: int, timeout_s: float, worker: WorkerProcess, fail: bool = True
) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        got.append(msg.value().decode())
    if len(got) < count and fail:
        pytest.fail(f"expected {count} outputs, got {got}; worker log:\n{worker.tail(60000)}")
    return got


def test_table_survives_worker_restart_from_its_changelog(
    kafka: KafkaEndpoints, chain: tuple[WorkerProcess, dict[str, str]], tmp_path: Path
) -> None:
    worker, env = chain
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": env["CHAIN_APP_ID"] + "-reader",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([env["CHAIN_OUTPUT"]])
    try:
        _produce(kafka, env["CHAIN_INPUT"], "Jürgen", 5)
        _produce(kafka, env["CHAIN_INPUT"], "Zoë", 7)
        worker.start(CHAIN_DATADIR=str(tmp_path / "data-1"))
        first = _next_outputs(consumer, 2, 120, worker)
        assert sorted(first) == ["Jürgen=5", "Zoë=7"]
        assert worker.stop() == 0

        # RocksDB really held the table (rocksdict store, not memory).
        assert any((tmp_path / "data-1").rglob("*.sst")) or any(
            (tmp_path / "data-1").rglob("CURRENT")
        )

        # A fresh data directory: the table can only come back from its changelog topic.
        _produce(kafka, env["CHAIN_INPUT"], "Jürgen", 3)
        worker.start(CHAIN_DATADIR=str(tmp_path / "data-2"))
        second = _next_outputs(consumer, 1, 90, worker, fail=False)
        if not second:
            # Seen in 3 of some 30 CI runs, never reproduced alone: faust-streaming 0.15.3's
            # restarted worker completes recovery, says "Worker ready" and then never fetches
            # the input. What this test is about - the table coming back from its changelog - is
            # asked again of one more restart from yet another empty data directory.
            print(f"faust fetched nothing after the restart; once more:\n{worker.tail(4000)}")
            assert worker.stop() == 0
            worker.start(CHAIN_DATADIR=str(tmp_path / "data-3"))
            second = _next_outputs(consumer, 1, 120, worker)
        # 8 = 5 recovered from the changelog + 3. A lost table would give 3; a consumer group
        # that forgot its committed offsets would reprocess the first records and give 13.
        assert second == ["Jürgen=8"]
        changelog = f"{env['CHAIN_APP_ID']}-totals-changelog"
        topics = AdminClient({"bootstrap.servers": kafka.bootstrap_servers}).list_topics(timeout=10)
        assert changelog in topics.topics
        assert len(topics.topics[changelog].partitions) == PARTITIONS
    finally:
        consumer.close()
