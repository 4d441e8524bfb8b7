"""Connectors on the real broker: segment-analytics-python through the HTTP collector into the
events topic, a wrong write key refused, webhooks and their dead letters, and a file connector
killed with SIGKILL mid-file that, restarted, delivers every row exactly once."""

from __future__ import annotations

import json
import random
import signal
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from segment.analytics.client import Client
from segment.analytics.request import APIError

from pipeline.contract.dead_letters import DeadLetter, Reason
from pipeline.contract.models import Channel, ChannelEvent
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import DEAD_LETTERS, EVENTS
from tests.integration.conftest import (
    WRITE_KEY,
    KafkaEndpoints,
    WorkerProcess,
    connector_env,
    consume,
    drain,
)

pytestmark = pytest.mark.integration


def decoded(kafka: KafkaEndpoints, prefix: str, count: int) -> list[ChannelEvent]:
    serde = RegistrySerde(kafka.registry_url)
    topic = EVENTS.name(prefix)
    return [
        ChannelEvent.from_avro(serde.decode(topic, m.value(), ChannelEvent))
        for m in consume(kafka.bootstrap_servers, topic, count, timeout_s=60)
    ]


def test_segment_analytics_python_sends_through_the_collector(
    kafka: KafkaEndpoints, collector: tuple[str, str]
) -> None:
    base, prefix = collector
    errors: list[Exception] = []
    client = Client(
        WRITE_KEY, host=base, gzip=True, on_error=lambda e, _batch: errors.append(e), max_retries=2
    )
    client.identify(
        "CRM-0042",
        {
            "firstName": "Zoë",
            "lastName": "Müller-Lüdenscheidt",
            "email": "zoe@example.de",
            "address": {"street": "Hauptstraße 12a", "postalCode": "10115", "city": "Berlin"},
        },
        anonymous_id="anon-77",
    )
    client.track(
        "CRM-0042",
        "Order Completed",
        {"order_id": "A-1", "total": 59.9, "currency": "EUR"},
        context={"device": {"id": "dev-9", "type": "ios"}, "app": {"name": "Shop"}},
    )
    client.page(anonymous_id="anon-77", name="Sale", properties={"path": "/sale"})
    client.flush()
    client.join()
    assert errors == []

    events = {e.event_type: e for e in decoded(kafka, prefix, 3)}
    assert set(events) == {"identify", "order_completed", "page_viewed"}
    identify, order, page = events["identify"], events["order_completed"], events["page_viewed"]
    assert identify.source == "web-shop"
    assert {(i.namespace, i.value) for i in identify.identifiers} == {
        ("customer_id", "CRM-0042"),
        ("anonymous_id", "anon-77"),
    }
    assert (identify.traits.first_name, identify.traits.last_name) == ("Zoë", "Müller-Lüdenscheidt")
    assert (identify.traits.street, identify.traits.house_number) == ("Hauptstraße", "12a")
    assert order.channel is Channel.app
    assert ("order_id", "A-1") in {(i.namespace, i.value) for i in order.identifiers}
    assert order.properties["amount"] == "59.9"
    assert (page.channel, page.properties["page_name"]) == (Channel.web, "Sale")
    for event in events.values():  # the client's messageId is the event id
        assert len(event.event_id) >= 32


def test_a_wrong_write_key_is_refused_and_nothing_is_written(
    kafka: KafkaEndpoints, collector: tuple[str, str]
) -> None:
    base, prefix = collector
    client = Client("not-the-key", host=base, sync_mode=True)
    with pytest.raises(APIError) as refused:
        client.track("CRM-1", "Product Viewed")
    assert refused.value.status == 401
    assert drain(kafka.bootstrap_servers, EVENTS.name(prefix), idle_s=2) == []


def test_webhooks_and_dead_letters_reach_their_topics(
    kafka: KafkaEndpoints, collector: tuple[str, str]
) -> None:
    base, prefix = collector
    examples = Path(__file__).resolve().parents[2] / "connectors" / "examples"
    payload = json.loads((examples / "email.json").read_text(encoding="utf-8"))
    payload.append({"event": "open", "timestamp": 1795000000, "sg_event_id": "no-email"})
    request = urllib.request.Request(  # noqa: S310 - test URL
        f"{base}/v1/webhooks/email",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "X-Write-Key": WRITE_KEY},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
        assert json.loads(resp.read()) == {"success": True, "accepted": 5, "dead_lettered": 1}
    events = decoded(kafka, prefix, 5)
    assert Counter(e.channel for e in events) == {Channel.email: 5}
    (message,) = consume(kafka.bootstrap_servers, DEAD_LETTERS.name(prefix), 1, timeout_s=30)
    letter = DeadLetter.from_message(message.key(), message.value(), message.headers() or [])
    assert letter.rejection.reason is Reason.unmappable_record
    assert letter.origin.topic == "collector:/v1/webhooks/email"
    assert json.loads(letter.value or b"")["sg_event_id"] == "no-email"


def test_a_file_connector_killed_mid_file_delivers_every_row_exactly_once(
    kafka: KafkaEndpoints,
    project_topics: Callable[[int], str],
    worker_process: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    prefix = project_topics(4)
    rows = 30000
    drop = tmp_path / "drop" / "pos"
    drop.mkdir(parents=True)
    lines = ["receipt_id,store_id,timestamp,loyalty_card,amount,currency,items"]
    for n in range(rows):
        lines.append(f"R{n:05d},store-007,2026-11-20T10:00:00Z,LC-{n % 700},{n % 90}.95,EUR,1")
        if n == 24321:
            lines.append("R-broken,store-007")  # one row for the dead letters
    (drop / "till-export.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {**connector_env(kafka, prefix, tmp_path), "OMNISTITCH_FILE_BATCH_ROWS": "100"}
    argv = [sys.executable, "-m", "pipeline.cli", "files"]

    topic = EVENTS.name(prefix)
    first = worker_process(argv, env, name="files-1")
    first.start()
    checkpoint = tmp_path / "checkpoints" / "pos" / "till-export.csv.json"
    assert first.proc is not None
    # Freeze the process at random moments until it is caught with a batch half delivered:
    # rows on the topic beyond its checkpoint, the batch still marked in flight. Kill it there.
    watermarks = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "probe"})
    partitions = [TopicPartition(topic, p) for p in range(4)]
    caught = False
    deadline = time.monotonic() + 120
    try:
        while not caught and time.monotonic() < deadline and first.proc.poll() is None:
            time.sleep(random.uniform(0.001, 0.03))
            first.proc.send_signal(signal.SIGSTOP)
            try:
                state = json.loads(checkpoint.read_bytes())
            except (OSError, ValueError):
                state = {"inflight": None}
            try:
                on_topic = sum(
                    watermarks.get_watermark_offsets(tp, timeout=5)[1] for tp in partitions
                )
            except KafkaException:  # e.g. leaders not elected yet on fresh topics
                first.proc.send_signal(signal.SIGCONT)
                continue
            caught = state["inflight"] is not None and on_topic > state["rows"]
            first.proc.send_signal(signal.SIGKILL if caught else signal.SIGCONT)
    finally:
        watermarks.close()
    first.proc.wait()
    assert caught, "never caught the connector with a batch half delivered"
    at_kill = len(drain(kafka.bootstrap_servers, topic, idle_s=1))
    assert 0 < at_kill < rows, f"the kill did not land mid-file ({at_kill} of {rows})"

    second = worker_process([*argv, "--once"], env, name="files-2")
    second.start()
    assert second.proc is not None
    assert second.proc.wait(timeout=180) == 0, second.tail()

    keys = Counter((m.key() or b"").decode() for m in drain(kafka.bootstrap_servers, topic))
    assert len(keys) == rows
    assert set(keys.values()) == {1}, [k for k, v in keys.items() if v > 1][:5]
    assert set(keys) == {f"pos-store-007-R{n:05d}" for n in range(rows)}
    letters = drain(kafka.bootstrap_servers, DEAD_LETTERS.name(prefix))
    assert len(letters) == 1
    assert dict(letters[0].headers() or [])["omnistitch.dlq.origin.offset"] == b"24324"


def test_the_file_connector_serves_its_metrics_and_health(
    kafka: KafkaEndpoints,
    project_topics: Callable[[int], str],
    worker_process: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    from pipeline.stack.nodes import free_port
    from tests.integration.deployments import wait_for

    prefix = project_topics(4)
    drop = tmp_path / "drop" / "pos"
    drop.mkdir(parents=True)
    lines = ["receipt_id,store_id,timestamp,loyalty_card,amount,currency,items"]
    lines += [f"M{n},store-1,2026-11-20T10:00:00Z,LC-{n},9.95,EUR,1" for n in range(5)]
    lines.append("M-broken,store-1")
    (drop / "metrics.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    port = free_port()
    env = {**connector_env(kafka, prefix, tmp_path), "OMNISTITCH_METRICS_PORT": str(port)}
    files = worker_process([sys.executable, "-m", "pipeline.cli", "files"], env, name="files-m")
    files.start()
    base = f"http://127.0.0.1:{port}"

    def text(path: str) -> str:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as answer:  # noqa: S310 - local
                return str(answer.read().decode())
        except (urllib.error.URLError, OSError):
            return ""

    delivered = (
        'omnistitch_connector_records_total{connector="omnistitch-files",outcome="delivered"} 5.0'
    )
    wait_for(lambda: delivered in text("/metrics"), "5 rows counted as delivered", 60)
    exposed = text("/metrics")
    assert 'outcome="dead_lettered"} 1.0' in exposed
    assert (
        'omnistitch_dead_letters_total{reason="unmappable_record",stage="omnistitch-files"}'
        in exposed
    )
    assert json.loads(text("/health/ready")) == {"ready": True}
    assert json.loads(text("/health/live")) == {"live": True}
    assert files.stop() == 0, files.tail()
