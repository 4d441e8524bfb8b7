"""Profile API lookups under concurrent load, for make bench: ``omnistitch serve`` over the
output topics a worker wrote, looked up by e-mail address from many concurrent clients, next to
the floor of the HTTP stack measured the same way in the same run (an aiohttp process answering
a fixed profile-sized JSON body without any lookup)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import secrets
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bench.processes import start, stop
from pipeline.contract.models import ChannelEvent
from pipeline.stack.local import free_port

TOKEN = secrets.token_urlsafe(24)  # per run
FLOOR = """
import json, sys
from aiohttp import web
body = json.dumps({"customer_id": "cus-0", "traits": {"first_name": "x" * 40},
                   "identifiers": {"email": ["x" * 30]}, "padding": "y" * 900})
async def answer(_request):
    return web.Response(text=body, content_type="application/json")
app = web.Application()
app.router.add_get("/v1/lookup", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def _ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - local
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"bench: {url} not ready within {timeout_s:.0f}s")


async def _load(base: str, paths: list[str], concurrency: int) -> tuple[list[float], int]:
    """Every path once, ``concurrency`` at a time: each request's latency (s), non-200s."""
    latencies: list[float] = []
    failed = 0
    queue = iter(paths)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def client() -> None:
            nonlocal failed
            for path in queue:
                began = time.perf_counter()
                async with session.get(path) as answer:
                    await answer.read()
                    failed += answer.status != 200
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, failed


def _percentiles(latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return statistics.median(ordered) * 1000, p99 * 1000, len(ordered)


def lookup_latency(
    env: dict[str, str],
    events: list[ChannelEvent],
    work: Path,
    requests: int = 10_000,
    concurrency: int = 32,
) -> dict[str, Any]:
    """p50/p99 (ms) and requests/s of the API's lookups and of the HTTP floor."""
    port = free_port()
    serve_env = {
        **env,
        "OMNISTITCH_SERVE_PORT": str(port),
        "OMNISTITCH_SERVE_DIR": str(work / "serve"),
        "OMNISTITCH_API_TOKENS": json.dumps({"bench": hashlib.sha256(TOKEN.encode()).hexdigest()}),
    }
    began = time.monotonic()
    serve = start([sys.executable, "-m", "pipeline.cli", "serve"], serve_env, work / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        _ready(base + "/health/ready", 600)
        caught_up = time.monotonic() - began
        emails = sorted({i.value for e in events for i in e.identifiers if i.namespace == "email"})
        rnd = random.Random(7)  # noqa: S311 - choosing test data, not secrets
        paths = [
            "/v1/lookup?" + urlencode({"namespace": "email", "value": rnd.choice(emails)})
            for _ in range(requests)
        ]
        asyncio.run(_load(base, paths[:500], concurrency))  # warm-up
        started = time.perf_counter()
        latencies, failed = asyncio.run(_load(base, paths, concurrency))
        elapsed = time.perf_counter() - started
    finally:
        stop(serve)
    floor_port = free_port()
    floor = start([sys.executable, "-c", FLOOR, str(floor_port)], env, work / "floor.log")
    try:
        _ready(f"http://127.0.0.1:{floor_port}/v1/lookup", 60)
        floor_base = f"http://127.0.0.1:{floor_port}"
        asyncio.run(_load(floor_base, paths[:500], concurrency))
        floor_started = time.perf_counter()
        floor_latencies, _ = asyncio.run(_load(floor_base, paths, concurrency))
        floor_elapsed = time.perf_counter() - floor_started
    finally:
        stop(floor)
    p50, p99, n = _percentiles(latencies)
    f50, f99, _ = _percentiles(floor_latencies)
    return {
        "p50_ms": p50,
        "p99_ms": p99,
        "rate": n / elapsed,
        "not_found": failed,
        "floor_p50_ms": f50,
        "floor_p99_ms": f99,
        "floor_rate": n / floor_elapsed,
        "catch_up_s": caught_up,
        "concurrency": concurrency,
    }
