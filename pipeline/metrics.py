"""Prometheus metrics and health probes of every long-running process: the worker, the
collector, the file connector and the profile API (docs/operations.md: scrape config and
alerts). Labels carry stage, topic, reason or route names — never an identifier or a key.

The collector and the API serve ``/metrics``, ``/health/live`` and ``/health/ready`` on their
own port; the worker and the file connector start a small probe server on
``OMNISTITCH_METRICS_PORT`` (``probe_server``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

# The worker's stages are processes of their own: with this variable set (by the worker), each
# writes its metrics to files there and the worker's probe server adds them up.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

log = logging.getLogger("omnistitch.metrics")

_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RECORDS_IN = Counter(
    "omnistitch_records_in_total", "Records a stage took in (events, operations).", ["stage"]
)
RECORDS_OUT = Counter(
    "omnistitch_records_out_total", "Records a stage produced, by topic.", ["stage", "topic"]
)
DEAD_LETTERS = Counter(
    "omnistitch_dead_letters_total",
    "Dead letters written, by stage and reason.",
    ["stage", "reason"],
)
IDENTITY_CHANGES = Counter(
    "omnistitch_identity_changes_total",
    "Identity changes produced: merged, split, conflict, quarantined, possible_match, …",
    ["change_type"],
)
PROCESSING_ERRORS = Counter(
    "omnistitch_processing_errors_total",
    "Records whose handling failed (dead-lettered).",
    ["stage"],
)
BATCH_SIZE = Histogram(
    "omnistitch_batch_size", "Records per handled batch.", ["stage"], buckets=_BATCH_BUCKETS
)
PROCESSING_SECONDS = Histogram(
    "omnistitch_processing_seconds",
    "Time from taking a batch to its outputs acknowledged by Kafka.",
    ["stage"],
    buckets=_SECONDS,
)
CONSUMER_LAG = Gauge(
    "omnistitch_consumer_lag",
    "Records behind the partition's end.",
    ["stage", "topic", "partition"],
    multiprocess_mode="livemax",
)
STATE_BYTES = Gauge(
    "omnistitch_state_bytes",
    "Size of a process's state files.",
    ["store"],
    multiprocess_mode="livemax",
)
STAGE_READY = Gauge(
    "omnistitch_stage_ready",
    "1 once a stage process consumes its input.",
    ["stage"],
    multiprocess_mode="livemax",
)
CONNECTOR_RECORDS = Counter(
    "omnistitch_connector_records_total",
    "Records a connector handled: delivered, dead_lettered.",
    ["connector", "outcome"],
)
API_REQUESTS = Counter(
    "omnistitch_api_requests_total",
    "Profile API requests by route and status.",
    ["route", "status"],
)
API_LATENCY = Histogram(
    "omnistitch_api_latency_seconds",
    "Profile API answer time by route.",
    ["route"],
    buckets=_SECONDS,
)


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (a state store's size on disk); 0 when absent."""
    total = 0
    for path in folder.rglob("*") if folder.exists() else ():
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # a file compaction removed meanwhile
            continue
    return total


def exposition(registry: CollectorRegistry | None = None) -> bytes:
    return generate_latest(registry) if registry is not None else generate_latest()


def forget_process(pid: int) -> None:
    """A stage process ended: its live gauges no longer count (multi-process mode)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]


class _Restarts(Collector):
    def __init__(self, children: Iterable[Any]) -> None:
        self.children = list(children)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "omnistitch_stage_restarts", "Unexpected ends of a stage process.", labels=["stage"]
        )
        for child in self.children:
            family.add_metric([child.stage], len(child.restarts))
        yield family


def stage_registry(folder: Path, children: Iterable[Any]) -> CollectorRegistry:
    """The stages' metrics from their files, and the worker's count of stage restarts."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    registry.register(_Restarts(children))
    return registry


def ready_stages(folder: Path) -> set[str]:
    """The stages whose process reported itself ready (from the multi-process files)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    found = set()
    for family in registry.collect():
        if family.name == "omnistitch_stage_ready":
            found |= {s.labels["stage"] for s in family.samples if s.value >= 1}
    return found


async def aiohttp_handler(_request: Any) -> Any:
    """``GET /metrics`` on an aiohttp server."""
    from aiohttp import web

    response = web.Response(body=exposition())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


def probe_server(
    port: int,
    live: Callable[[], bool],
    ready: Callable[[], bool],
    host: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
) -> ThreadingHTTPServer:
    """``/metrics``, ``/health/live`` and ``/health/ready`` on a daemon thread."""

    class Probes(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, exposition(registry), CONTENT_TYPE_LATEST)
                return
            checks = {"/health/live": ("live", live), "/health/ready": ("ready", ready)}
            if self.path not in checks:
                self._send(404, b'{"error": "not found"}', "application/json")
                return
            name, check = checks[self.path]
            try:
                ok = bool(check())
            except Exception:
                ok = False
            body = json.dumps({name: ok}).encode()
            self._send(200 if ok else 503, body, "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """No access log."""

    server = ThreadingHTTPServer((host, port), Probes)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    log.info("metrics and health on %s:%d", host, server.server_address[1])
    return server
