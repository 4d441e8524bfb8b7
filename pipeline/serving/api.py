"""The profile API and the viewer (``omnistitch serve``): aiohttp over the materialised view
(pipeline.serving.view), kept current by the follower.

Every /v1 route needs a bearer token (pipeline.serving.tokens); /health/*, /metrics, the viewer's
static files and /openapi.json do not. The access log names the route's pattern, the status and
the time — never a path's customer id or an identifier from the query.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from pipeline import metrics
from pipeline.clock import Clock
from pipeline.contract.models import JourneyEvent
from pipeline.engine.identifiers import Node
from pipeline.exceptions import ConfigurationError, OmnistitchError, VaultUnavailableError
from pipeline.insight.histories import histories
from pipeline.insight.kpis import report
from pipeline.quality.evaluation import stitching_accuracy
from pipeline.serving.clienteling import assistant_view
from pipeline.serving.follower import Follower
from pipeline.serving.identity_graph import identity_graph
from pipeline.serving.openapi import openapi
from pipeline.serving.tokens import ApiTokens
from pipeline.serving.view import CustomerView
from pipeline.settings import Settings
from pipeline.vault.client import Vault
from pipeline.vault.sealer import readable
from pipeline.vault.tags import normaliser_of

log = logging.getLogger("omnistitch.serve")

VIEWER = Path(__file__).parent / "viewer"
STATIC = {"/": "index.html", "/viewer.js": "viewer.js", "/viewer.css": "viewer.css"}
KPI_TTL_S = 60.0
OPERATION_TIMEOUT_S = 30.0
MAX_BODY_BYTES = 64 * 1024
TOKEN_NAME = web.RequestKey("token_name", str)
SUMMARY = web.AppKey("access-summary", asyncio.Task[None])
SUMMARY_INTERVAL_S = 60.0
Submit = Callable[[dict[str, Any], float], dict[str, Any] | None]


class Problem(OmnistitchError):
    """An answer other than 200, with its status."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


_encode = msgspec.json.Encoder(decimal_format="number").encode
HIDDEN = ("sealed", "sealed_key")  # a profile as the API shows it: opened, without its seal


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON (msgspec: datetimes as RFC 3339, as pydantic writes them, at a fraction of the
    cost of a model round trip)."""
    return web.Response(
        body=_encode(data), status=status, headers=headers, content_type="application/json"
    )


class ProfileApi:
    """The handlers; ``submit`` publishes an operation and waits for its result (the running
    worker answers), injected so that tests can stand in for the worker."""

    def __init__(
        self,
        settings: Settings,
        view: CustomerView,
        vault: Vault | None,
        tokens: ApiTokens,
        submit: Submit,
        clock: Clock,
        follower: Follower | None = None,
    ) -> None:
        self.settings, self.view, self.vault, self.tokens = settings, view, vault, tokens
        self.submit, self.clock, self.follower = submit, clock, follower
        self.normaliser = normaliser_of(settings)
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="serve")
        self.kpi_cache: tuple[float, dict[str, Any]] | None = None

    async def _run(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, call, *args)

    # ---- profiles ------------------------------------------------------------------------
    async def _profile(self, customer: str) -> dict[str, Any]:
        """A plain profile is read on the event loop (a RocksDB get and a decode: ~0.1 ms; a
        thread hand-off would cost more than it saves); a sealed one waits for the vault on a
        thread."""
        if self.vault is None:
            return self._profile_json(customer)
        found: dict[str, Any] = await self._run(self._profile_json, customer)
        return found

    def _profile_json(self, customer: str) -> dict[str, Any]:
        """The customer's profile, opened; Problem 301 (merged away), 410 (erased), 404."""
        if self.view.erased(customer):
            raise Problem(410, "this customer was erased")
        survivor, merged = self.view.resolve(customer)
        if merged:
            raise Problem(
                301,
                f"merged into {survivor}",
                merged_into=survivor,
                location=f"/v1/customers/{survivor}",
            )
        row = self.view.profile(customer)
        if row is None:
            raise Problem(404, "no such customer")
        if row.record.get("sealed") is not None and self.vault is None:
            raise Problem(503, "the profile is sealed and no vault is configured")
        record = readable(row.record, self.vault)
        if record is None:
            raise Problem(503, "this version's key is gone; a newer version is on its way")
        # As decoded from its topic through the contract's schema: valid as it is.
        return {k: v for k, v in record.items() if k not in HIDDEN}

    def _node(self, namespace: str, value: str) -> Node:
        node = self.normaliser.node_of(f"{namespace}:{value}")
        if not isinstance(node, Node):
            why = getattr(node, "value", "not an identifier")
            raise Problem(400, f"the identifier is not usable: {why}")
        return node

    async def customer(self, request: web.Request) -> web.Response:
        return _json(await self._profile(request.match_info["customer"]))

    async def _holder(self, request: web.Request) -> tuple[Node, dict[str, Any]]:
        """The identifier of ``?namespace&value`` and the profile of its customer now."""
        namespace = request.query.get("namespace", "")
        value = request.query.get("value", "")
        if not namespace or not value:
            raise Problem(400, "namespace and value are required")
        node = self._node(namespace, value)
        holder = self.view.holder(node.namespace, node.value)
        if holder is None:
            raise Problem(404, "no customer holds this identifier")
        survivor, _merged = self.view.resolve(holder)
        return node, await self._profile(survivor)

    async def lookup(self, request: web.Request) -> web.Response:
        node, profile = await self._holder(request)
        return _json({"matched": {"namespace": node.namespace, "value": node.value}} | profile)

    async def clienteling(self, request: web.Request) -> web.Response:
        """A sales assistant's view (pipeline.serving.clienteling)."""
        _node, profile = await self._holder(request)
        return _json(assistant_view(profile))

    async def journey(self, request: web.Request) -> web.Response:
        customer = await self._current(request.match_info["customer"])
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError as exc:
            raise Problem(400, "limit must be a number") from exc
        records, cursor = await self._run(
            self.view.journey, customer, limit, request.query.get("before")
        )
        events = records  # decoded through the contract's schema
        return _json({"customer_id": customer, "events": events, "next": cursor})

    async def _current(self, customer: str) -> str:
        """The id whose data to show: 404/410 as for the profile; a merged-away id follows."""
        if self.view.erased(customer):
            raise Problem(410, "this customer was erased")
        survivor, _merged = self.view.resolve(customer)
        if self.view.profile(survivor) is None:
            raise Problem(404, "no such customer")
        return survivor

    async def graph(self, request: web.Request) -> web.Response:
        customer = await self._current(request.match_info["customer"])
        profile = await self._profile(customer)

        def build() -> dict[str, Any]:
            row = self.view.profile(customer)
            records, _ = self.view.journey(customer, self.settings.serve_max_journey)
            return identity_graph(
                customer,
                profile.get("identifiers", {}),
                row.merged if row else [],
                records,
                self.view.changes(customer),
            )

        return _json(await self._run(build))

    async def changes(self, request: web.Request) -> web.Response:
        customer = await self._current(request.match_info["customer"])
        found = await self._run(self.view.changes, customer)
        return _json({"customer_id": customer, "changes": found})

    async def possible_matches(self, request: web.Request) -> web.Response:
        customer = await self._current(request.match_info["customer"])
        profile = await self._profile(customer)
        found = []
        for other in profile.get("possible_matches", []):
            try:
                theirs = await self._profile(other)
            except Problem as problem:
                found.append({"customer_id": other, "status": problem.status})
                continue
            found.append(
                {
                    "customer_id": theirs["customer_id"],
                    "status": 200,
                    "traits": theirs.get("traits", {}),
                    "channels": theirs.get("channels", []),
                    "event_count": theirs.get("event_count", 0),
                }
            )
        return _json({"customer_id": customer, "possible_matches": found})

    # ---- the worker's answers --------------------------------------------------------------
    async def explain(self, request: web.Request) -> web.Response:
        left, right = request.query.get("left", ""), request.query.get("right", "")
        if not left or not right:
            raise Problem(400, "left and right are required (NAMESPACE:VALUE or a customer id)")
        return await self._operate(request, {"kind": "explain", "left": left, "right": right})

    async def operation(self, request: web.Request) -> web.Response:
        if not self.tokens.may_operate(request[TOKEN_NAME]):
            raise Problem(403, "this token may not send identity operations")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise Problem(400, "the body is not JSON") from exc
        if not isinstance(body, dict):
            raise Problem(400, "the body must be a JSON object")
        wanted = {k: str(body[k]) for k in ("kind", "left", "right", "reason") if k in body}
        if "operation_id" in body:
            wanted["operation_id"] = str(body["operation_id"])
        return await self._operate(request, wanted)

    async def _operate(self, request: web.Request, wanted: dict[str, str]) -> web.Response:
        operation = {
            "operation_id": wanted.get("operation_id") or f"op-{uuid.uuid4()}",
            "kind": wanted.get("kind", ""),
            "left": wanted.get("left", ""),
            "right": wanted.get("right", ""),
            "operator": f"api:{request[TOKEN_NAME]}",
            "reason": wanted.get("reason", ""),
            "requested_at": self.clock(),
        }
        try:
            result = await self._run(self.submit, operation, OPERATION_TIMEOUT_S)
        except ConfigurationError as exc:
            raise Problem(400, str(exc)) from exc
        if result is None:
            return _json({"operation_id": operation["operation_id"], "status": "sent"}, status=202)
        if operation["kind"] == "explain" and result.get("status") == "done":
            result = result | {"explanation": json.loads(result["detail"])}
        return _json(result)

    # ---- insight -------------------------------------------------------------------------
    async def kpis(self, request: web.Request) -> web.Response:
        try:
            days = int(request.query.get("lookback_days", "30"))
        except ValueError as exc:
            raise Problem(400, "lookback_days must be a number") from exc
        now = time.monotonic()
        if self.kpi_cache is None or now - self.kpi_cache[0] > KPI_TTL_S or days != 30:
            found = await self._run(self._kpis, max(1, min(days, 365)))
            if days == 30:
                self.kpi_cache = (now, found)
            return _json(found)
        return _json(self.kpi_cache[1])

    def _kpis(self, days: int) -> dict[str, Any]:
        journeys = [JourneyEvent.from_avro(r) for r in self.view.journey_records()]
        found = histories(journeys, lambda c: self.view.resolve(c)[0])
        return report(found, timedelta(days=days), stitching_accuracy(found)).to_json()

    # ---- health ----------------------------------------------------------------------------
    def live(self) -> bool:
        return self.follower is None or (self.follower.is_alive() and self.follower.failed is None)

    def ready(self) -> bool:
        return self.live() and (self.follower is None or self.follower.ready.is_set())


def build_app(api: ProfileApi) -> web.Application:
    # One line per request at INFO with OMNISTITCH_API_ACCESS_LOG (it costs a lookup's time:
    # formatting and the redaction filter), else at DEBUG; a summary every minute either way.
    access_level = logging.INFO if api.settings.api_access_log else logging.DEBUG
    answered: Counter[int] = Counter()

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        pattern = route.canonical if route is not None else "unmatched"
        status = 500
        try:
            if request.path.startswith("/v1/"):
                name = api.tokens.who(request.headers.get("Authorization", ""))
                if name is None:
                    raise Problem(401, "a valid bearer token is required")
                request[TOKEN_NAME] = name
            response = await handler(request)
            status = response.status
            return response
        except Problem as problem:
            status = problem.status
            headers = (
                {"Location": problem.extra["location"]} if "location" in problem.extra else None
            )
            body = {"error": str(problem)} | {
                k: v for k, v in problem.extra.items() if k != "location"
            }
            return _json(body, status=status, headers=headers)
        except VaultUnavailableError:
            status = 503
            return _json({"error": "the vault is unreachable; try again"}, status=503)
        except web.HTTPException as exc:
            status = exc.status
            raise
        except Exception as exc:  # no traceback: its values could be personal data
            log.error("api: %s %s failed: %s", request.method, pattern, type(exc).__name__)
            return _json({"error": "internal error"}, status=500)
        finally:
            elapsed = time.perf_counter() - started
            metrics.API_REQUESTS.labels(pattern, str(status)).inc()
            metrics.API_LATENCY.labels(pattern).observe(elapsed)
            answered[status // 100] += 1
            log.log(
                access_level,
                "api: %s %s %d %.1f ms",
                request.method,
                pattern,
                status,
                elapsed * 1000,
            )

    async def health_live(_request: web.Request) -> web.Response:
        return _json({"live": api.live()}, status=200 if api.live() else 503)

    async def health_ready(_request: web.Request) -> web.Response:
        return _json({"ready": api.ready()}, status=200 if api.ready() else 503)

    async def spec(_request: web.Request) -> web.Response:
        return _json(openapi())

    def static(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
        async def send(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(VIEWER / name)

        return send

    async def summarise() -> None:
        while True:
            await asyncio.sleep(SUMMARY_INTERVAL_S)
            if answered:
                shown = ", ".join(f"{k}xx {v}" for k, v in sorted(answered.items()))
                log.info("api: %d requests in the last minute (%s)", sum(answered.values()), shown)
                answered.clear()

    async def started(app: web.Application) -> None:
        app[SUMMARY] = asyncio.get_running_loop().create_task(summarise())

    async def closed(app: web.Application) -> None:
        if SUMMARY in app:
            app[SUMMARY].cancel()
        api.pool.shutdown(wait=False)

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/v1/customers/{customer}", api.customer)
    app.router.add_get("/v1/customers/{customer}/journey", api.journey)
    app.router.add_get("/v1/customers/{customer}/graph", api.graph)
    app.router.add_get("/v1/customers/{customer}/changes", api.changes)
    app.router.add_get("/v1/customers/{customer}/possible-matches", api.possible_matches)
    app.router.add_get("/v1/lookup", api.lookup)
    app.router.add_get("/v1/clienteling", api.clienteling)
    app.router.add_get("/v1/explain", api.explain)
    app.router.add_post("/v1/operations", api.operation)
    app.router.add_get("/v1/kpis", api.kpis)
    app.router.add_get("/health/live", health_live)
    app.router.add_get("/health/ready", health_ready)
    app.router.add_get("/metrics", metrics.aiohttp_handler)
    app.router.add_get("/openapi.json", spec)
    for path, name in STATIC.items():
        app.router.add_get(path, static(name))
    app.on_startup.append(started)
    app.on_cleanup.append(closed)
    return app


def worker_submit(settings: Settings) -> Submit:
    """Operations through the running worker (pipeline.stream.submission)."""

    def send(operation: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        from pipeline.engine.operations import Operation
        from pipeline.stream.submission import submit

        answer = submit(settings, Operation.from_json(operation), timeout_s)
        if answer.result is None:
            return None
        return answer.result.model_dump(mode="json", exclude={"sealed"})

    return send
