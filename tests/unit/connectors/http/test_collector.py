"""The HTTP collector in-process: authentication, limits, mapping, dead letters, 503, webhooks."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.http.collector import Collector, CollectorConfig, TokenBucket
from connectors.sink import EventSink, Outgoing, SinkConfig, refusal
from pipeline.contract.dead_letters import DeadLetter, Reason
from pipeline.contract.models import ChannelEvent
from pipeline.exceptions import DeliveryError, MappingConfigError
from pipeline.stack.local import free_port
from tests.factories import make_event

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
KEY = "wk-test-123"


def basic(user: str, password: str = "") -> dict[str, str]:
    """An Authorization header as Segment's libraries send it."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


AUTH = basic(KEY)
EXAMPLES = Path(__file__).resolve().parents[4] / "connectors" / "examples"


class MemorySink:
    """Records what would be published; can be told Kafka is down."""

    def __init__(self) -> None:
        self.records: list[Outgoing] = []
        self.down = False

    async def deliver_async(self, records: Sequence[Outgoing]) -> None:
        if self.down:
            raise DeliveryError("broker unreachable")
        self.records.extend(records)

    def connected(self, timeout_s: float = 2.0) -> bool:
        return not self.down

    def events(self) -> list[ChannelEvent]:
        return [r for r in self.records if isinstance(r, ChannelEvent)]

    def letters(self) -> list[DeadLetter]:
        return [r for r in self.records if isinstance(r, DeadLetter)]


Scenario = Callable[[TestClient[Any, Any], MemorySink], Awaitable[None]]


def run(scenario: Scenario, sink: Any = None, **config: Any) -> MemorySink:
    sink = sink if sink is not None else MemorySink()
    settings: dict[str, Any] = {"write_keys": {KEY: "web-shop"}, **config}
    app = Collector(CollectorConfig(**settings), sink, clock=lambda: NOW).app()

    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            await scenario(client, sink)

    asyncio.run(main())
    return sink


def track(**fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Viewed",
        "anonymousId": "a-1",
        "messageId": "m-1",
        **fields,
    }


def test_the_collector_needs_a_write_key() -> None:
    with pytest.raises(MappingConfigError, match="OMNISTITCH_WRITE_KEYS"):
        CollectorConfig(write_keys={})


def test_a_single_call_with_basic_auth_is_accepted_after_delivery() -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        resp = await client.post("/v1/track", json=track(), headers=AUTH)
        assert resp.status == 200
        assert await resp.json() == {"success": True, "accepted": 1, "dead_lettered": 0}

    sink = run(scenario)
    (event,) = sink.events()
    assert (event.event_id, event.source, event.received_at) == ("m-1", "web-shop", NOW)


@pytest.mark.parametrize(
    "auth",
    [basic("wrong"), {}, basic("", "x")],
)
def test_a_wrong_or_missing_write_key_is_refused(auth: dict[str, str]) -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        resp = await client.post("/v1/track", json=track(), headers=auth)
        assert resp.status == 401
        assert (await resp.json())["code"] == "unauthorized"

    assert run(scenario).records == []


def test_a_wrong_key_in_a_header_is_refused_before_the_body_is_read() -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        resp = await client.post("/v1/track", data=b"not json", headers={"X-Write-Key": "nope"})
        assert resp.status == 401

    run(scenario)


def test_analytics_js_style_text_plain_with_write_key_in_the_body() -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        body = json.dumps({**track(), "writeKey": KEY})
        resp = await client.post("/v1/t", data=body, headers={"Content-Type": "text/plain"})
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        batch = json.dumps({"batch": [{**track(messageId="m-2"), "type": "page"}], "writeKey": KEY})
        assert (await client.post("/v1/b", data=batch)).status == 200
        preflight = await client.options("/v1/t")
        assert preflight.status == 204
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]

    sink = run(scenario)
    assert [e.event_type for e in sink.events()] == ["product_viewed", "page_viewed"]


def test_gzip_bodies_are_read() -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        body = gzip.compress(json.dumps({"batch": [track()]}).encode())
        resp = await client.post(
            "/v1/batch", data=body, headers={**AUTH, "Content-Encoding": "gzip"}
        )
        assert resp.status == 200

    assert len(run(scenario).events()) == 1


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/track", b"{not json", 400, "malformed_json"),
        ("/v1/track", b"", 400, "empty_body"),
        ("/v1/track", json.dumps(track(anonymousId=None)).encode(), 400, "unmappable_record"),
        (
            "/v1/track",
            json.dumps({"type": "track", "event": "x"}).encode(),
            400,
            "unmappable_record",
        ),
        ("/v1/batch", b'{"batch": {"a": 1}}', 400, "invalid_batch"),
        ("/v1/batch", b"[1, 2]", 400, "invalid_batch"),
        ("/v1/batch", json.dumps({"batch": [track()] * 3}).encode(), 400, "batch_too_large"),
        (
            "/v1/track",
            json.dumps(track(properties={"x": "y" * 3000})).encode(),
            400,
            "call_too_large",
        ),
        ("/v1/track", b"{" + b" " * 9000 + b"}", 413, "body_too_large"),
        ("/v1/webhooks/fax", b"{}", 404, "unknown_source"),
    ],
)
def test_malformed_requests_get_a_4xx_with_a_clear_message(
    path: str, body: bytes, status: int, code: str
) -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        resp = await client.post(path, data=body, headers=AUTH)
        assert resp.status == status
        answer = await resp.json()
        assert answer["success"] is False
        assert answer["code"] == code
        assert answer["message"]

    sink = run(scenario, max_batch=2, max_call_bytes=2048, max_body_bytes=8192)
    assert sink.records == []


def test_bad_calls_in_a_batch_are_dead_lettered_with_their_bytes_the_rest_accepted() -> None:
    bad = {"type": "track", "event": "Checkout", "messageId": "m-bad"}
    oversized = track(messageId="m-big", properties={"x": "y" * 3000})

    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        body = {"batch": [track(), bad, track(messageId="m-2"), oversized]}
        resp = await client.post("/v1/batch", json=body, headers=AUTH)
        assert await resp.json() == {"success": True, "accepted": 2, "dead_lettered": 2}

    sink = run(scenario, max_call_bytes=2048)
    assert [e.event_id for e in sink.events()] == ["m-1", "m-2"]
    first, second = sink.letters()
    assert first.rejection.reason is Reason.unmappable_record
    assert "userId or anonymousId" in first.rejection.detail
    assert json.loads(first.value or b"") == bad
    assert first.origin.topic == "collector:/v1/batch"
    assert second.rejection.reason is Reason.too_large
    assert json.loads(second.value or b"")["messageId"] == "m-big"


def test_when_kafka_cannot_persist_the_answer_is_503_with_retry_after() -> None:
    sink = MemorySink()
    sink.down = True

    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        resp = await client.post("/v1/batch", json={"batch": [track()]}, headers=AUTH)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        health = await client.get("/health")
        assert health.status == 503
        assert (await health.json())["kafka"] is False

    run(scenario, sink=sink)


def test_with_a_real_producer_and_no_broker_the_collector_answers_503() -> None:
    port = free_port()  # nothing listens there
    sink = EventSink(
        SinkConfig(f"127.0.0.1:{port}", "http://127.0.0.1:1/none", "t.", delivery_timeout_s=1.5),
        serde=_PlainSerde(),
    )

    async def scenario(client: TestClient[Any, Any], _sink: MemorySink) -> None:
        resp = await client.post("/v1/track", json=track(), headers=AUTH)
        assert resp.status == 503

    try:
        run(scenario, sink=sink)
    finally:
        sink.close(timeout_s=1)


class _PlainSerde:
    def encode(self, topic: str, record: Any) -> bytes:
        return bytes(record.to_json().encode())

    def decode(self, topic: str, data: bytes, model: Any) -> dict[str, Any]:
        raise NotImplementedError


def test_rate_limit_per_write_key_answers_429() -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        statuses = [
            (await client.post("/v1/track", json=track(messageId=f"m{n}"), headers=AUTH)).status
            for n in range(5)
        ]
        assert statuses == [200, 200, 200, 429, 429]

    run(scenario, rate_per_s=0.001, burst=3)


def test_token_bucket_refills_over_time() -> None:
    clock = [0.0]
    bucket = TokenBucket(rate=2.0, capacity=2.0, now=lambda: clock[0])
    assert [bucket.take("k") for _ in range(3)] == [True, True, False]
    clock[0] = 0.5
    assert bucket.take("k") is True
    assert bucket.take("other") is True


@pytest.mark.parametrize(
    "source", ["email", "messenger", "chat", "calls", "support", "orders", "pickups"]
)
def test_webhook_examples_are_accepted(source: str) -> None:
    payload = json.loads((EXAMPLES / f"{source}.json").read_text(encoding="utf-8"))

    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        resp = await client.post(f"/v1/webhooks/{source}", json=payload, headers=AUTH)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["dead_lettered"] == 0

    assert run(scenario).events()


def test_twilio_posts_a_form() -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        form = {"MessageSid": "SM9", "From": "whatsapp:+4917012345678", "To": "whatsapp:+4930"}
        resp = await client.post("/v1/webhooks/twilio", data=form, headers=AUTH)
        assert resp.status == 200

    (event,) = run(scenario).events()
    assert event.channel.value == "whatsapp"


def test_health_reports_counts_without_personal_data() -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        await client.post("/v1/track", json=track(), headers=AUTH)
        await client.post("/v1/track", json=track(), headers=basic("x"))
        resp = await client.get("/health")
        assert resp.status == 200
        body = await resp.json()
        assert body["counts"] == {"accepted": 1, "unauthorized": 1}
        assert "a-1" not in json.dumps(body)

    run(scenario)


def test_probes_and_metrics_of_the_collector() -> None:
    sink = MemorySink()

    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        assert (await client.get("/health/live")).status == 200
        assert (await client.get("/health/ready")).status == 200
        sink.down = True
        assert (await client.get("/health/ready")).status == 503
        text = await (await client.get("/metrics")).text()
        assert "omnistitch_connector_records_total" in text
        assert "omnistitch_dead_letters_total" in text

    run(scenario, sink=sink)


def test_the_sink_counts_what_kafka_acknowledged_by_outcome_and_reason() -> None:
    from prometheus_client import REGISTRY

    from pipeline.contract.dead_letters import Rejection

    sink = EventSink(
        SinkConfig("127.0.0.1:1", "http://127.0.0.1:1/none", "t.", client_id="unit-sink"),
        serde=_PlainSerde(),
    )
    letter = refusal("unit", "/v1/track", Rejection(Reason.too_large, "big"), b"{}", NOW)

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("omnistitch_connector_records_total", connector="unit-sink", outcome="delivered")
    sink.counted([make_event(), make_event(), letter])
    assert (
        value("omnistitch_connector_records_total", connector="unit-sink", outcome="delivered")
        == before + 2
    )
    assert (
        value("omnistitch_connector_records_total", connector="unit-sink", outcome="dead_lettered")
        == 1
    )
    assert value("omnistitch_dead_letters_total", stage="unit-sink", reason="too_large") == 1
