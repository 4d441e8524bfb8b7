"""The collector under abuse (issue #10): every malformed body is a 400, the key is checked
before the body is read, inflating is bounded, webhooks have the per-call cap, hashed keys work,
slow and surplus connections are closed. In-process (aiohttp's test server), no broker."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import time
import zlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from connectors.http.collector import Collector, CollectorConfig, WriteKeys, inflate
from connectors.http.server import run_capped
from pipeline.contract.dead_letters import Reason
from pipeline.exceptions import MappingConfigError
from pipeline.stack.local import free_port
from tests.unit.connectors.http.test_collector import AUTH, KEY, NOW, MemorySink, run, track


def test_json_nested_ten_thousand_deep_is_a_400() -> None:
    async def scenario(client: TestClient[Any, Any], _sink: MemorySink) -> None:
        body = "[" * 10_000 + "]" * 10_000
        response = await client.post("/v1/track", data=body, headers=AUTH)
        assert response.status == 400
        assert (await response.json())["code"] == "too_deep"
        nested: Any = track()
        for _ in range(40):
            nested = {"properties": nested}
        response = await client.post("/v1/track", json=nested, headers=AUTH)
        assert response.status == 400 and (await response.json())["code"] == "too_deep"

    run(scenario)


@pytest.mark.parametrize(
    "body",
    [b"\x1f\x8b\x08\x00garbage", gzip.compress(json.dumps(track()).encode())[:-12]],
    ids=["not gzip", "truncated gzip"],
)
def test_broken_gzip_is_a_400(body: bytes) -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        headers = {**AUTH, "Content-Encoding": "gzip", "Content-Type": "application/json"}
        response = await client.post("/v1/track", data=body, headers=headers)
        assert response.status == 400
        assert (await response.json())["code"] == "malformed_encoding"
        assert not sink.records

    run(scenario)


def test_a_gzip_bomb_is_refused_after_inflating_no_more_than_the_cap() -> None:
    bomb = gzip.compress(b" " * (200 * 1024 * 1024), compresslevel=9)  # 200 MiB of spaces
    assert len(bomb) < 512 * 1024
    started = time.process_time()
    with pytest.raises(Exception) as refused:
        inflate(bomb, "gzip", 512 * 1024)
    assert getattr(refused.value, "status", None) == 413
    # Inflating 512 KiB costs milliseconds, not the seconds 200 MiB would.
    assert time.process_time() - started < 0.5

    async def scenario(client: TestClient[Any, Any], _sink: MemorySink) -> None:
        headers = {**AUTH, "Content-Encoding": "gzip", "Content-Type": "application/json"}
        response = await client.post("/v1/batch", data=bomb, headers=headers)
        assert response.status == 413

    run(scenario)


def test_the_key_is_checked_before_the_body_is_read() -> None:
    """Without a key in a header, only analytics.js's text/plain paths read the body."""

    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        # A body that would be a 400 if it were parsed: the 401 proves it was not.
        for path in ("/v1/track", "/v1/batch", "/v1/webhooks/email"):
            response = await client.post(path, data=b"{not json", headers={})
            assert response.status == 401, path
            response = await client.post(path, data=b"{not json", headers={"X-Write-Key": "nope"})
            assert response.status == 401, path
        # A key in the body is honoured on analytics.js's paths only.
        body = json.dumps({**track(), "writeKey": KEY})
        ok = await client.post("/v1/t", data=body, headers={"Content-Type": "text/plain"})
        assert ok.status == 200
        refused = await client.post("/v1/track", data=body, headers={})
        assert refused.status == 401
        assert len(sink.events()) == 1

    run(scenario)


def test_webhook_items_have_the_per_call_cap() -> None:
    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        small = {"email": "kim@example.de", "event": "open", "sg_event_id": "s1", "timestamp": 1}
        big = {**small, "sg_event_id": "s2", "note": "x" * 400_000}
        response = await client.post("/v1/webhooks/email", json=[small, big], headers=AUTH)
        assert response.status == 200
        assert (await response.json())["dead_lettered"] == 1
        (letter,) = sink.letters()
        assert letter.rejection.reason is Reason.too_large

    run(scenario)


def test_hashed_write_keys_and_constant_time_lookup() -> None:
    hashed = "sha256:" + hashlib.sha256(b"s3cret-key").hexdigest()
    keys = WriteKeys({hashed: "pos", "plain-key": "web"})
    assert keys.source("s3cret-key") is not None and keys.source("s3cret-key")[0] == "pos"  # type: ignore[index]
    assert keys.source("plain-key")[0] == "web"  # type: ignore[index]
    assert keys.source(hashed) is None and keys.source("") is None
    with pytest.raises(MappingConfigError):
        WriteKeys({"sha256:abc": "x"})

    async def scenario(client: TestClient[Any, Any], sink: MemorySink) -> None:
        response = await client.post(
            "/v1/track", json=track(), headers={"X-Write-Key": "s3cret-key"}
        )
        assert response.status == 200
        assert sink.events()[0].source == "pos"

    run(scenario, write_keys={hashed: "pos"})


def test_deflate_bodies_with_and_without_zlib_header() -> None:
    raw = json.dumps(track()).encode()
    assert inflate(zlib.compress(raw), "deflate", 1 << 20) == raw
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert inflate(packer.compress(raw) + packer.flush(), "deflate", 1 << 20) == raw


def test_slow_bodies_time_out_and_surplus_connections_are_closed() -> None:
    config = CollectorConfig(
        write_keys={KEY: "web"}, read_timeout_s=0.5, keepalive_s=1.0, max_connections=5
    )
    app = Collector(config, MemorySink(), clock=lambda: NOW).app()
    port = free_port()

    async def main() -> None:
        server = asyncio.create_task(run_capped(app, "127.0.0.1", port, config.max_connections))
        await asyncio.sleep(0.3)
        # A body announced but never sent: 408 after the read timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/track HTTP/1.1\r\nHost: x\r\nX-Write-Key: "
            + KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert b" 408 " in status
        writer.close()
        # Headers that never complete: closed after the keep-alive timeout.
        slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for _ in range(5):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
            await w.drain()
            slow.append((r, w))
        await asyncio.sleep(0.2)
        # The cap is reached: one more connection is closed at once.
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(r.read(), 2) == b""
        w.close()
        for r, w in slow:
            # read() returns only at EOF: the server closed it (else wait_for times out).
            await asyncio.wait_for(r.read(), 5)
            assert r.at_eof()
            w.close()
        # Room again: a normal request is served.
        r, w = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps(track()).encode()
        w.write(
            b"POST /v1/track HTTP/1.1\r\nHost: x\r\nX-Write-Key: "
            + KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        await w.drain()
        assert b" 200 " in await asyncio.wait_for(r.readline(), 5)
        w.close()
        server.cancel()

    asyncio.run(main())
