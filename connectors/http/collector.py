"""The HTTP collector: Segment's HTTP Tracking API and the channel webhooks, into Kafka.

Routes (aiohttp, async):

- ``POST /v1/identify|track|page|screen|alias|group`` — one Segment call;
- ``POST /v1/batch`` (and ``/v1/import``) — ``{"batch": [calls...], "sentAt": ...}``;
- ``POST /v1/i|t|p|s|a|g`` and ``/v1/b`` — the same, as analytics.js names them (``text/plain``
  bodies with ``writeKey`` inside, CORS allowed);
- ``POST /v1/webhooks/<source>`` — the webhooks of ``connectors.http.webhooks``;
- ``GET /health`` (also ``/health/ready``) — 200 when Kafka answers, 503 otherwise, with the
  counters; ``GET /health/live`` — the process answers; ``GET /metrics`` — Prometheus
  (pipeline.metrics).

The write key authenticates: HTTP basic auth with the key as user name (Segment's libraries), or
an ``X-Write-Key`` header, checked before any byte of the body is read; only analytics.js's
``text/plain`` paths (``/v1/<letter>``) may carry ``writeKey`` in the body, whose size is capped
before it is parsed. Each key names a source. Keys may be configured hashed
(``sha256:<hex>``) and are compared in constant time.

Abuse is bounded: the body size is capped before and while it is inflated (gzip/deflate are
decoded here in chunks, never by the HTTP layer), JSON nesting is limited, a body must arrive
within a read timeout (408), idle or never-completed connections close after the keep-alive
timeout, and connections beyond a cap are closed at once.
A request is answered 200 only after Kafka acknowledged every event of it (acks=all); if Kafka
cannot be reached within the delivery timeout the answer is 503 with Retry-After, and the
clients retry. Malformed bodies get a 4xx with a message; single calls that cannot be mapped get
a 400; inside a batch, calls that cannot be mapped go to the dead-letter topic with their reason
and original bytes while the rest is accepted. Nothing personal is logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from connectors.http.segment import CALL_TYPES, SHORT_TYPES, map_call
from connectors.http.webhooks import MAPPERS, Mapped
from connectors.sink import Outgoing, refusal
from pipeline import metrics
from pipeline.clock import Clock, system_clock
from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.contract.models import ChannelEvent
from pipeline.exceptions import DeliveryError, MappingConfigError, RegistryUnavailableError
from pipeline.rates import TokenBucket
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


HASHED = "sha256:"


class WriteKeys:
    """Write key → source name. Keys are kept as SHA-256 digests only (given in clear or as
    ``sha256:<hex>``) and a presented key is compared with every digest in constant time."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._digests: list[tuple[bytes, str]] = []
        for key, source in keys.items():
            if key.startswith(HASHED):
                try:
                    digest = bytes.fromhex(key[len(HASHED) :])
                except ValueError as exc:
                    raise MappingConfigError("a hashed write key must be sha256:<64 hex>") from exc
                if len(digest) != 32:
                    raise MappingConfigError("a hashed write key must be sha256:<64 hex>")
            else:
                digest = hashlib.sha256(key.encode()).digest()
            self._digests.append((digest, source))

    def __len__(self) -> int:
        return len(self._digests)

    def source(self, presented: str) -> tuple[str, str] | None:
        """(source, digest hex as a stable bucket id) for a valid key, else None."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found = None
        for candidate, source in self._digests:
            if hmac.compare_digest(candidate, digest):
                found = (source, candidate.hex())
        return found


@dataclass(frozen=True)
class CollectorConfig:
    write_keys: Mapping[str, str]
    max_body_bytes: int = 512 * 1024
    max_call_bytes: int = 32 * 1024
    max_batch: int = 2500
    rate_per_s: float = 200.0
    burst: int = 400
    user_id_namespace: str = "customer_id"
    read_timeout_s: float = 10.0
    keepalive_s: float = 10.0
    max_connections: int = 256
    max_json_depth: int = 32

    def __post_init__(self) -> None:
        if not self.write_keys:
            raise MappingConfigError(
                "the collector needs at least one write key: set OMNISTITCH_WRITE_KEYS to a JSON "
                'object of key → source name, e.g. {"<random key>": "web-shop"}'
            )


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
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=str).encode(
        "utf-8", "surrogatepass"
    )


def _too_deep(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """Decode a gzip or deflate body in bounded steps: at most ``limit`` bytes are ever
    produced (a bomb costs what its first ``limit`` bytes cost). Raises _Refused."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise _Refused(415, "unsupported_encoding", "Content-Encoding must be gzip or deflate")
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    attempts = [wbits] if encoding != "deflate" else [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    for index, bits in enumerate(attempts):
        inflater = zlib.decompressobj(bits)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            if index + 1 < len(attempts):
                continue  # deflate without its zlib header
            raise _Refused(400, "malformed_encoding", f"the body is not valid {encoding}") from exc
        if len(out) > limit:
            raise _Refused(413, "body_too_large", f"the inflated body exceeds {limit} bytes")
        if not inflater.eof:
            raise _Refused(400, "malformed_encoding", f"the {encoding} body is truncated")
        return out
    raise AssertionError("unreachable")


class Collector:
    def __init__(self, config: CollectorConfig, sink: Delivery, clock: Clock = system_clock):
        self.config = config
        self.sink = sink
        self.clock = clock
        self.bucket = TokenBucket(config.rate_per_s, float(config.burst))
        self.counts: Counter[str] = Counter()
        self.keys = WriteKeys(config.write_keys)

    # -- the request ----------------------------------------------------------------------------

    async def _body(self, request: web.Request, form_allowed: bool = False) -> Any:
        try:
            data = await asyncio.wait_for(request.read(), self.config.read_timeout_s)
        except web.HTTPRequestEntityTooLarge as exc:
            raise _Refused(
                413, "body_too_large", f"body exceeds {self.config.max_body_bytes} bytes"
            ) from exc
        except TimeoutError as exc:
            raise _Refused(408, "request_timeout", "the body did not arrive in time") from exc
        data = inflate(
            data, request.headers.get("Content-Encoding", ""), self.config.max_body_bytes
        )
        if not data:
            raise _Refused(400, "empty_body", "the request has no body")
        if form_allowed and request.content_type == "application/x-www-form-urlencoded":
            try:
                form = urllib.parse.parse_qs(data.decode("utf-8"), strict_parsing=True)
            except (UnicodeDecodeError, ValueError) as exc:
                raise _Refused(400, "malformed_form", "the form body cannot be parsed") from exc
            return {k: v[-1] for k, v in form.items()}
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            # Position only: the message of a JSONDecodeError quotes no input.
            raise _Refused(400, "malformed_json", f"the body is not JSON: {exc}") from exc
        except RecursionError as exc:
            raise _Refused(400, "too_deep", "the JSON body nests too deeply") from exc
        if _too_deep(body, self.config.max_json_depth):
            raise _Refused(
                400, "too_deep", f"the JSON body nests deeper than {self.config.max_json_depth}"
            )
        return body

    @staticmethod
    def _header_key(request: web.Request) -> str | None:
        return _basic_user(request.headers.get("Authorization")) or request.headers.get(
            "X-Write-Key"
        )

    def _check_header(self, request: web.Request) -> None:
        """The key is checked before the body is read; only analytics.js's text/plain paths
        (/v1/<letter>) may carry it in the body instead."""
        key = self._header_key(request)
        in_body = request.path.startswith("/v1/") and len(request.path) == len("/v1/x")
        if (key is None and not in_body) or (key is not None and self.keys.source(key) is None):
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
        found = self.keys.source(key) if isinstance(key, str) else None
        if found is None:
            self.counts["unauthorized"] += 1
            raise _Refused(401, "unauthorized", "missing or unknown write key")
        source, bucket = found
        if not self.bucket.take(bucket):
            self.counts["rate_limited"] += 1
            raise _Refused(429, "rate_limited", "too many requests for this write key", "1")
        return source

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
        mapped: Mapped = [
            (item, result)
            if not self._too_big(item)
            else (
                item,
                Rejection(Reason.too_large, f"a call may have {self.config.max_call_bytes} bytes"),
            )
            for item, result in mapper(body, now)
        ]
        return await self._publish(mapped, request.path, now)

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

    async def live(self, _request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def preflight(self, _request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS_HEADERS)

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_body_bytes,
            handler_args={
                # Bodies are inflated by ``inflate`` (bounded), never by the HTTP layer.
                "auto_decompress": False,
                # Also closes connections whose request headers never complete.
                "keepalive_timeout": self.config.keepalive_s,
                "max_line_size": 8190,
                "max_field_size": 8190,
            },
        )
        kinds = "|".join(CALL_TYPES + tuple(SHORT_TYPES))
        app.router.add_post(f"/v1/{{kind:({kinds})}}", self.single)
        for path in ("/v1/batch", "/v1/import", "/v1/b"):
            app.router.add_post(path, self.batch)
        app.router.add_post("/v1/webhooks/{source}", self.webhook)
        app.router.add_get("/health", self.health)
        app.router.add_get("/health/ready", self.health)  # Kafka answers
        app.router.add_get("/health/live", self.live)
        app.router.add_get("/metrics", metrics.aiohttp_handler)
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
        read_timeout_s=settings.collector_read_timeout_s,
        keepalive_s=settings.collector_keepalive_s,
        max_connections=settings.collector_max_connections,
        max_json_depth=settings.collector_max_json_depth,
    )
