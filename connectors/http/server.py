"""Serving the collector: an aiohttp server behind a cap on open connections (a connection over
the cap is closed at once), started by ``omnistitch collector``."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from connectors.http.collector import Collector, collector_config
from pipeline.settings import Settings

log = logging.getLogger("omnistitch.collector")


class ConnectionCap:
    """The protocol factory in front of aiohttp's server: beyond ``limit`` open connections a
    new one is closed at once, so slow or idle clients cannot exhaust the process."""

    def __init__(self, server: Any, limit: int) -> None:
        self.server = server
        self.limit = limit
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self.server.connections) >= self.limit:
            self.refused += 1
            return _Closing()
        protocol: asyncio.BaseProtocol = self.server()
        return protocol


class _Closing(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


async def run_capped(app: web.Application, host: str, port: int, limit: int) -> None:
    """Serve ``app`` with a connection cap until SIGTERM or SIGINT, then clean up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    assert runner.server is not None
    server = await loop.create_server(
        ConnectionCap(runner.server, limit), host, port, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await runner.cleanup()


def serve(settings: Settings) -> None:
    """``omnistitch collector``: serve until SIGTERM/SIGINT, then flush what is queued."""
    from connectors.sink import EventSink

    config = collector_config(settings)
    sink = EventSink.from_settings(settings, "omnistitch-collector")
    sink.start()
    app = Collector(config, sink).app()

    async def close_sink(_app: web.Application) -> None:
        sink.close()

    app.on_cleanup.append(close_sink)
    log.info(
        "collector on http://%s:%d (%d write keys)",
        settings.collector_host,
        settings.collector_port,
        len(config.write_keys),
    )
    asyncio.run(
        run_capped(app, settings.collector_host, settings.collector_port, config.max_connections)
    )
