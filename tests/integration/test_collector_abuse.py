"""The collector's abuses of issue #10 against a real collector process on the real broker, with
bounded counts and time: each is refused with the right status, valid clients are served
meanwhile, and what was accepted is on the events topic (refused webhook items as dead letters)."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest

from pipeline.contract.dead_letters import DeadLetter, Reason
from pipeline.stream.topics import DEAD_LETTERS, EVENTS
from tests.integration.conftest import WRITE_KEY, KafkaEndpoints, consume

pytestmark = pytest.mark.integration
HEADERS = {"Content-Type": "application/json", "X-Write-Key": WRITE_KEY}


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, payload = response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, json.loads(exc.read() or b"{}")
    return status, payload, time.monotonic() - started


def _track(message_id: str) -> bytes:
    call = {
        "event": "Product Viewed",
        "anonymousId": "abuse-anon",
        "messageId": message_id,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    return json.dumps(call).encode()


def test_collector_abuse_is_refused_and_valid_clients_are_served(
    kafka: KafkaEndpoints, collector: tuple[str, str]
) -> None:
    base, prefix = collector
    deep = b"[" * 10_000 + b"]" * 10_000
    assert _post(f"{base}/v1/track", deep, HEADERS)[0] == 400
    broken = {**HEADERS, "Content-Encoding": "gzip"}
    assert _post(f"{base}/v1/track", b"\x1f\x8b\x08\x00garbage", broken)[0] == 400
    # The body is not read before the key is checked: a body with the key inside is a 401.
    with_key = json.dumps({"writeKey": WRITE_KEY, "event": "x"}).encode()
    assert _post(f"{base}/v1/track", with_key, {"Content-Type": "application/json"})[0] == 401
    # One webhook item over the per-call cap: dead-lettered, its neighbour accepted.
    items = [
        {"email": "a@example.de", "event": "open", "sg_event_id": "ok-1", "timestamp": 1795000000},
        {
            "email": "b@example.de",
            "event": "open",
            "sg_event_id": "big",
            "timestamp": 1795000000,
            "note": "x" * 400_000,
        },
    ]
    status, payload, _ = _post(f"{base}/v1/webhooks/email", json.dumps(items).encode(), HEADERS)
    assert status == 200 and payload["dead_lettered"] == 1 and payload["accepted"] == 1

    # Gzip bombs in parallel with valid calls: refused fast, the valid calls are not held up.
    bomb = gzip.compress(b" " * (100 * 1024 * 1024), compresslevel=9)

    async def storm() -> tuple[list[int], list[float]]:
        loop = asyncio.get_running_loop()
        bombs = [
            loop.run_in_executor(None, _post, f"{base}/v1/batch", bomb, broken) for _ in range(8)
        ]
        valid = [
            loop.run_in_executor(None, _post, f"{base}/v1/track", _track(f"ok-{i}"), HEADERS)
            for i in range(8)
        ]
        refused = [status for status, _, _ in await asyncio.gather(*bombs)]
        served = await asyncio.gather(*valid)
        assert [status for status, _, _ in served] == [200] * 8
        return refused, [elapsed for _, _, elapsed in served]

    refused, elapsed = asyncio.run(storm())
    assert refused == [413] * 8
    assert max(elapsed) < 2.0, elapsed

    events = consume(kafka.bootstrap_servers, EVENTS.name(prefix), 9, 60)
    assert len(events) == 9  # the webhook item and the eight valid calls
    (letter,) = consume(kafka.bootstrap_servers, DEAD_LETTERS.name(prefix), 1, 30)
    read = DeadLetter.from_message(letter.key(), letter.value(), letter.headers() or [])
    assert read.rejection.reason is Reason.too_large
