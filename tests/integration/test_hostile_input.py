"""The probes of issue #10 against a real worker on the real broker: records that once stalled
the worker for good or vanished. Every record produced ends as a journey event or as a dead
letter with its reason, the worker stays alive, keeps stitching a normal event sent afterwards,
logs no processing error and stays within a bounded memory."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.contract.dead_letters import MAX_KEPT_BYTES, DeadLetter, Reason
from pipeline.contract.models import ChannelEvent, Identifier, JourneyEvent
from pipeline.stream.batches import OPERATION_BATCH, operation, partition_for
from pipeline.stream.intake_loop import group_id
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import CUSTOMER_OPS, DEAD_LETTERS, EVENTS, JOURNEYS
from tests.factories import make_event
from tests.integration.conftest import KafkaEndpoints, WorkerProcess, consume, drain

pytestmark = pytest.mark.integration

NORMAL_AFTERWARDS = "evt-normal-afterwards"


def _foreign_schema_id(registry_url: str, subject: str) -> int:
    """Register a schema that is not Avro (JSON Schema, else Protobuf) and return its id."""
    candidates = [
        (
            "JSON",
            json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}),
        ),
        ("PROTOBUF", 'syntax = "proto3";\npackage hostile;\nmessage Probe { string a = 1; }\n'),
    ]
    errors = []
    for kind, text in candidates:
        body = json.dumps({"schemaType": kind, "schema": text}).encode()
        request = urllib.request.Request(  # noqa: S310 - the test's own registry
            f"{registry_url}/subjects/{subject}-{kind.lower()}/versions",
            data=body,
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return int(json.loads(response.read())["id"])
        except urllib.error.HTTPError as exc:
            errors.append(f"{kind}: {exc.code} {exc.read()[:300]!r}")
    raise AssertionError(f"the registry took no non-Avro schema: {errors}")


def test_hostile_records_neither_stall_the_worker_nor_vanish(
    kafka: KafkaEndpoints,
    project_topics: Callable[[int], str],
    unique_name: Callable[[str], str],
    worker_process: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    prefix = project_topics(2)
    topic = EVENTS.name(prefix)
    serde = RegistrySerde(kafka.registry_url)
    now = datetime.now(UTC)
    expect_journeys: set[str] = set()
    expect_letters: Counter[Reason] = Counter()
    # A producer that bypasses the connectors (their limits are not the worker's defence).
    producer = Producer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "enable.idempotence": True,
            "message.max.bytes": 8_000_000,
            "compression.type": "lz4",
        }
    )

    def send(key: str, value: bytes | None) -> None:
        producer.produce(topic, key=key.encode(), value=value)
        producer.poll(0)

    def event(n: int, identifiers: list[Identifier], **fields: object) -> ChannelEvent:
        return make_event(
            event_id=f"h-{n}",
            occurred_at=now - timedelta(seconds=1000 - n),
            identifiers=identifiers,
            **fields,
        )

    # 1. The 40-call stall, ten times over: one customer, a new maximal order id per event.
    for n in range(400):
        ids = [
            Identifier(namespace="customer_id", value="C-HOSTILE"),
            Identifier(namespace="order_id", value=f"{n:04d}" + "ü" * 126),
        ]
        e = event(n, ids, event_type="order_completed")
        send(e.event_id, serde.encode(topic, e))
        expect_journeys.add(e.event_id)
    # ... and the original probe: ~30 KB order ids.
    for n in range(400, 440):
        e = event(n, [Identifier(namespace="order_id", value="9" * 30_000)])
        send(e.event_id, serde.encode(topic, e))
        expect_letters[Reason.limit_exceeded] += 1
    # 2. 2,500 e-mails in one event.
    crowd = [Identifier(namespace="email", value=f"p{i}@example.de") for i in range(2500)]
    e = event(500, crowd)
    send(e.event_id, serde.encode(topic, e))
    expect_letters[Reason.limit_exceeded] += 1
    # 3. Exactly 1 MiB, and a value far over 1 MiB that travels compressed.
    exact = b"\x00" + (1).to_bytes(4, "big") + b"\x02" * (1_048_576 - 5)
    send("exact-mib", exact)
    expect_letters[Reason.too_large] += 1
    bomb = b"\x00" + (1).to_bytes(4, "big") + b"\x00" * 3_000_000
    send("compressed-3mb", bomb)
    expect_letters[Reason.too_large] += 1
    # 4. 300,000 control characters (1.8 MB as escaped JSON).
    e = event(
        600,
        [Identifier(namespace="email", value="c@example.de")],
        properties={"x": "\x01" * 300_000},
    )
    send(e.event_id, serde.encode(topic, e))
    expect_letters[Reason.too_large] += 1
    e = event(
        601, [Identifier(namespace="email", value="d@example.de")], properties={"x": "\x01" * 2000}
    )
    send(e.event_id, serde.encode(topic, e))
    expect_letters[Reason.limit_exceeded] += 1
    # 5. A schema id that names a JSON Schema.
    json_id = _foreign_schema_id(kafka.registry_url, unique_name("json-subject"))
    send("json-schema-id", b"\x00" + json_id.to_bytes(4, "big") + b"{}")
    expect_letters[Reason.unsupported_schema_type] += 1
    # 6. Garbage on the internal customer-ops topic, three in a row on one partition: each an
    # OperationBatch whose operation raises in the profile stage (its state is not JSON).
    # Before #10 faust restarted the crashed agent and committed past such records (checked
    # with one and with two in a row): no dead letter, no trace. And one record that is no
    # OperationBatch at all.
    ops = CUSTOMER_OPS.name(prefix)
    bad_op = operation("cus-garbage", {"kind": "absorb", "loser": "cus-x", "state": {}})
    bad_op["state"] = "{not json"
    garbage_partition = partition_for("cus-garbage", 2)
    for _ in range(3):
        value = serde.encode_record(ops, OPERATION_BATCH, {"operations": [bad_op]})
        producer.produce(ops, value=value, partition=garbage_partition)
    expect_letters[Reason.processing_error] += 3
    producer.produce(ops, key=b"not-a-batch", value=b"{not json", partition=garbage_partition)
    expect_letters[Reason.bad_magic_byte] += 1
    assert producer.flush(30) == 0

    app_id = unique_name("hostile")
    worker = worker_process(
        [sys.executable, "-m", "pipeline.cli", "worker"],
        {
            "OMNISTITCH_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "OMNISTITCH_SCHEMA_REGISTRY_URL": kafka.registry_url,
            "OMNISTITCH_TOPIC_PREFIX": prefix,
            "OMNISTITCH_PARTITIONS": "2",
            "OMNISTITCH_APP_ID": app_id,
            "OMNISTITCH_DATA_DIR": str(tmp_path / "data"),
            "OMNISTITCH_STATS_INTERVAL_S": "2",
        },
    )
    worker.start()
    letters_expected = sum(expect_letters.values())
    letters = consume(
        kafka.bootstrap_servers, DEAD_LETTERS.name(prefix), letters_expected, 180, worker.tail()
    )
    # 6. A normal event afterwards is stitched.
    normal = make_event(event_id=NORMAL_AFTERWARDS, occurred_at=datetime.now(UTC))
    producer.produce(topic, key=normal.event_id.encode(), value=serde.encode(topic, normal))
    assert producer.flush(30) == 0
    expect_journeys.add(NORMAL_AFTERWARDS)
    journeys = consume(
        kafka.bootstrap_servers, JOURNEYS.name(prefix), len(expect_journeys), 240, worker.tail()
    )
    seen = [
        serde.decode(JOURNEYS.name(prefix), m.value(), JourneyEvent)  # type: ignore[arg-type]
        for m in journeys
    ]
    assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
    rss = psutil.Process(worker.proc.pid).memory_info().rss
    assert rss < 800 * 1024 * 1024, rss

    got = Counter(
        DeadLetter.from_message(m.key(), m.value(), m.headers() or []).rejection.reason
        for m in letters
    )
    assert got == +expect_letters, worker.tail()
    for m in letters:
        letter = DeadLetter.from_message(m.key(), m.value(), m.headers() or [])
        assert letter.value is not None and len(letter.value) <= MAX_KEPT_BYTES
        if letter.rejection.reason is Reason.processing_error:
            assert (letter.stage, letter.exception) == ("profile", "JSONDecodeError")
            assert letter.origin.topic == ops
            kept = serde.decode_record(ops, letter.value, OPERATION_BATCH)
            assert kept == {"operations": [bad_op]}, "the failed operation, alone"
        if letter.rejection.reason is Reason.bad_magic_byte and letter.origin.topic == ops:
            assert letter.value == b"{not json"
        if m.key() == b"compressed-3mb":
            assert letter.original_bytes == len(bomb) and letter.value == bomb[:MAX_KEPT_BYTES]
        if m.key() == b"exact-mib":
            assert letter.original_bytes == len(exact)
    assert len(seen) == len(expect_journeys)
    assert {record["event"]["event_id"] for record in seen} == expect_journeys
    # Nothing more arrives: no duplicates, no stray letters.
    time.sleep(2)
    assert len(drain(kafka.bootstrap_servers, DEAD_LETTERS.name(prefix), idle_s=2)) == len(letters)
    log = worker.tail(5_000_000)
    assert log.count("processing error: stage=profile exception=JSONDecodeError") == 3
    assert "Crashed" not in log, log[-4000:]
    assert worker.stop() == 0
    # Every input partition of every stage is committed to its end: nothing skipped, no gap.
    # Every stage has a consumer group of its own.
    groups = {topic: group_id(app_id), ops: f"{app_id}.profile"}
    for name, group in groups.items():
        consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
        try:
            for partition in (0, 1):
                tp = TopicPartition(name, partition)
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                (committed,) = consumer.committed([tp], timeout=10)
                # An empty partition has nothing to commit (offset -1001: none).
                done = committed.offset == high or (high == low and committed.offset < 0)
                assert done, (name, partition, committed.offset, high)
        finally:
            consumer.close()
