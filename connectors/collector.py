"""The HTTP collector: Segment's HTTP Tracking API and the channel webhooks, into Kafka.

Routes (aiohttp, async):

- ``POST /v1/identify|track|page|screen|alias|group`` — one Segment call;
- ``POST /v1/batch`` (and ``/v1/import``) — ``{"batch": [calls...], "sentAt": ...}``;
- ``POST /v1/i|t|p|s|a|g`` and ``/v1/b`` — the same, as analytics.js names them (``text/plain``
  bodies with ``writeKey`` inside, CORS allowed);
- ``POST /v1/webhooks/<source>`` — the webhooks of ``connectors.webhooks``;
- ``GET /health`` — 200 when Kafka answers, 503 otherwise, with the counters.

The write key authenticates: HTTP basic auth with the key as user name (Segment's libraries), or
``writeKey`` in the body (analytics.js), or an ``X-Write-Key`` header. Each key names a source.
A request is answered 200 only after Kafka acknowledged every event of it (acks=all); if Kafka
cannot be reached within the delivery timeout the answer is 503 with Retry-After, and the
clients retry. Malformed bodies get a 4xx with a message; single calls that cannot be mapped get
a 400; inside a batch, calls that cannot be mapped go to the dead-letter topic with their reason
and original bytes while the rest is accepted. Nothing personal is logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from connectors.segment import CALL_TYPES, SHORT_TYPES, map_call
from connectors.sink import Outgoing, refusal
from connectors.webhooks import MAPPERS, Mapped
from pipeline.clock import Clock, system_clock
from pipeline.contract import ChannelEvent
from pipeline.dead_letters import Reason, Rejection
from pipeline.exceptions import DeliveryError, MappingConfigError, RegistryUnavailableError
from pipeline.settings import Settings

log = logging.getLogger("omnistitch.collector")

CONNECTOR = "collector"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding, X-Write-Key",
    "Access-Control-Max-Age": "600",
}


class Delivery(Protocol):
    """What the collector needs of a sink (EventSink, or an in-process one in tests)."""

    async def deliver_async(self, records: Sequence[Outgoing]) -> None: ...

    def connected(self, timeout_s: float = 2.0) -> bool: ...


@dataclass(frozen=True)
class CollectorConfig:
    write_keys: Mapping[str, str]
    max_body_bytes: int = 512 * 1024
    max_call_bytes: int = 32 * 1024
    max_batch: int = 2500
    rate_per_s: float = 200.0
    burst: int = 400
    user_id_namespace: str = "customer_id"

    def __post_init__(self) -> None:
        if not self.write_keys:
            raise MappingConfigError(
                "the collector needs at least one write key: set OMNISTITCH_WRITE_KEYS to a JSON "
                'object of key → source name, e.g. {"<random key>": "web-shop"}'
            )


@dataclass
class TokenBucket:
    """Requests per second per write key, with a burst."""

    rate: float
    capacity: float
    now: Callable[[], float] = time.monotonic
    _levels: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str) -> bool:
        moment = self.now()
        level, last = self._levels.get(key, (self.capacity, moment))
        level = min(self.capacity, level + (moment - last) * self.rate)
        if level < 1:
            self._levels[key] = (level, moment)
            return False
        self._levels[key] = (level - 1, moment)
        return True


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response(
        {"success": False, "code": code, "message": message},
        status=status,
        headers={**CORS_HEADERS, **headers},
    )


def _basic_user(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def _raw(item: Any) -> bytes:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=str).encode()


class Collector:
    def __init__(self, config: CollectorConfig, sink: Delivery, clock: Clock = system_clock):
        self.config = config
        self.sink = sink
        self.clock = clock
        self.bucket = TokenBucket(config.rate_per_s, float(config.burst))
        self.counts: Counter[str] = Counter()

    # -- the request ----------------------------------------------------------------------------

    async def _body(self, request: web.Request, form_allowed: bool = False) -> Any:
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise _Refused(
                413, "body_too_large", f"body exceeds {self.config.max_body_bytes} bytes"
            ) from exc
        if not data:
            raise _Refused(400, "empty_body", "the request has no body")
        if form_allowed and request.content_type == "application/x-www-form-urlencoded":
            try:
                form = urllib.parse.parse_qs(data.decode("utf-8"), strict_parsing=True)
            except (UnicodeDecodeError, ValueError) as exc:
                raise _Refused(400, "malformed_form", "the form body cannot be parsed") from exc
            return {k: v[-1] for k, v in form.items()}
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Refused(400, "malformed_json", f"the body is not JSON: {exc}") from exc

    @staticmethod
    def _header_key(request: web.Request) -> str | None:
        return _basic_user(request.headers.get("Authorization")) or request.headers.get(
            "X-Write-Key"
        )

    def _check_header(self, request: web.Request) -> None:
        """A key sent in a header is checked before the body is read."""
        key = self._header_key(request)
        if key is not None and key not in self.config.write_keys:
            self.counts["unauthorized"] += 1
            raise _Refused(401, "unauthorized", "missing or unknown write key")

    async def _authorised(
        self, request: web.Request, form_allowed: bool = False
    ) -> tuple[Any, str]:
        """The parsed body and the source named by the write key (header or body)."""
        self._check_header(request)
        body = await self._body(request, form_allowed)
        return body, self._source(request, body)

    def _source(self, request: web.Request, body: Any) -> str:
        key = self._header_key(request) or (
            body.get("writeKey") if isinstance(body, dict) else None
        )
        if not isinstance(key, str) or key not in self.config.write_keys:
            self.counts["unauthorized"] += 1
            raise _Refused(401, "unauthorized", "missing or unknown write key")
        if not self.bucket.take(key):
            self.counts["rate_limited"] += 1
            raise _Refused(429, "rate_limited", "too many requests for this write key", "1")
        return self.config.write_keys[key]

    async def _accept(self, records: list[Outgoing], accepted: int, refused: int) -> web.Response:
        try:
            await self.sink.deliver_async(records)
        except (DeliveryError, RegistryUnavailableError) as exc:
            self.counts["unavailable"] += 1
            log.warning("answering 503: %s", type(exc).__name__)
            return _error(
                503, "unavailable", "events could not be persisted; retry", **{"Retry-After": "5"}
            )
        self.counts.update({"accepted": accepted, "dead_lettered": refused})
        self.counts += Counter()  # drop zero counts
        return web.json_response(
            {"success": True, "accepted": accepted, "dead_lettered": refused},
            headers=CORS_HEADERS,
        )

    def _too_big(self, item: Any) -> bool:
        return len(_raw(item)) > self.config.max_call_bytes

    # -- handlers -------------------------------------------------------------------------------

    async def single(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        kind = SHORT_TYPES.get(kind, kind)
        try:
            body, source = await self._authorised(request)
        except _Refused as refused:
            return refused.response()
        if self._too_big(body):
            return _error(
                400, "call_too_large", f"a call may have {self.config.max_call_bytes} bytes"
            )
        result = map_call(
            body,
            source=source,
            received_at=self.clock(),
            call_type=kind,
            user_id_namespace=self.config.user_id_namespace,
        )
        if isinstance(result, Rejection):
            self.counts["bad_request"] += 1
            return _error(400, result.reason.value, result.detail)
        return await self._accept([result], 1, 0)

    async def batch(self, request: web.Request) -> web.Response:
        try:
            body, source = await self._authorised(request)
        except _Refused as refused:
            return refused.response()
        calls = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(calls, list):
            return _error(400, "invalid_batch", "the body must be an object with a 'batch' list")
        if len(calls) > self.config.max_batch:
            return _error(400, "batch_too_large", f"a batch may hold {self.config.max_batch} calls")
        now = self.clock()
        mapped: Mapped = []
        for call in calls:
            if self._too_big(call):
                rejection = Rejection(
                    Reason.too_large, f"a call may have {self.config.max_call_bytes} bytes"
                )
                mapped.append((call, rejection))
                continue
            mapped.append(
                (
                    call,
                    map_call(
                        call,
                        source=source,
                        received_at=now,
                        batch_sent_at=body.get("sentAt"),
                        user_id_namespace=self.config.user_id_namespace,
                    ),
                )
            )
        return await self._publish(mapped, request.path, now)

    async def webhook(self, request: web.Request) -> web.Response:
        name = request.match_info["source"]
        mapper = MAPPERS.get(name)
        if mapper is None:
            return _error(404, "unknown_source", f"webhook sources: {', '.join(sorted(MAPPERS))}")
        try:
            body, _source = await self._authorised(request, form_allowed=True)
        except _Refused as refused:
            return refused.response()
        now = self.clock()
        return await self._publish(mapper(body, now), request.path, now)

    async def _publish(self, mapped: Mapped, path: str, now: datetime) -> web.Response:
        records: list[Outgoing] = []
        accepted = refused = 0
        for item, result in mapped:
            if isinstance(result, ChannelEvent):
                records.append(result)
                accepted += 1
            else:
                records.append(refusal(CONNECTOR, path, result, _raw(item), now))
                refused += 1
        return await self._accept(records, accepted, refused)

    async def health(self, _request: web.Request) -> web.Response:
        import asyncio

        kafka = await asyncio.get_running_loop().run_in_executor(None, self.sink.connected)
        return web.json_response(
            {"status": "ok" if kafka else "degraded", "kafka": kafka, "counts": dict(self.counts)},
            status=200 if kafka else 503,
        )

    async def preflight(self, _request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS_HEADERS)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        kinds = "|".join(CALL_TYPES + tuple(SHORT_TYPES))
        app.router.add_post(f"/v1/{{kind:({kinds})}}", self.single)
        for path in ("/v1/batch", "/v1/import", "/v1/b"):
            app.router.add_post(path, self.batch)
        app.router.add_post("/v1/webhooks/{source}", self.webhook)
        app.router.add_get("/health", self.health)
        app.router.add_route("OPTIONS", "/{tail:.*}", self.preflight)
        return app


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    def response(self) -> web.Response:
        extra = {"Retry-After": self.retry_after} if self.retry_after else {}
        return _error(self.status, self.code, self.message, **extra)


def collector_config(settings: Settings) -> CollectorConfig:
    return CollectorConfig(
        write_keys=dict(settings.write_keys),
        max_body_bytes=settings.collector_max_body_bytes,
        max_call_bytes=settings.collector_max_call_bytes,
        max_batch=settings.collector_max_batch,
        rate_per_s=settings.collector_rate_per_s,
        burst=settings.collector_burst,
        user_id_namespace=settings.collector_user_id_namespace,
    )


def serve(settings: Settings) -> None:
    """``omnistitch collector``: serve until SIGTERM/SIGINT, then flush what is queued."""
    from connectors.sink import EventSink, SinkConfig

    config = collector_config(settings)
    sink = EventSink(SinkConfig.from_settings(settings, "omnistitch-collector"))
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
    web.run_app(
        app,
        host=settings.collector_host,
        port=settings.collector_port,
        print=None,
        access_log=None,
    )
