"""The profile API over a view filled in-process: tokens, lookups normalised as the stitcher
does, merged-away and erased ids, journeys, the graph, operations through a stand-in worker,
KPIs, OpenAPI, health and metrics, and what the access log does not say."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.serving.api import ProfileApi, build_app
from pipeline.serving.tokens import ApiTokens
from pipeline.serving.view import CustomerView
from pipeline.settings import Settings
from pipeline.vault.sealing import seal_profile
from pipeline.vault.store import memory_store
from tests.factories import NOW, make_profile
from tests.unit.pipeline.serving.conftest import Feed, StandInWorker, decoded, fill_example

READER, OPERATOR = "reader-token-0123456789", "operator-token-0123456789"
Call = Callable[[TestClient], Awaitable[None]]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _run(
    view: CustomerView, call: Call, worker: StandInWorker | None = None, vault: Any = None
) -> None:
    settings = Settings(
        api_tokens={"crm": _hash(READER), "desk": _hash(OPERATOR)}, api_operators=["desk"]
    )
    api = ProfileApi(
        settings,
        view,
        vault,
        ApiTokens.from_settings(settings),
        worker or StandInWorker(),
        lambda: NOW,
    )

    async def main() -> None:
        # As `omnistitch serve` runs it: no aiohttp access log (pipeline.serving.server).
        server = TestServer(build_app(api))
        await server.start_server(access_log=None)
        client = TestClient(server)
        await client.start_server()
        try:
            await call(client)
        finally:
            await client.close()

    asyncio.run(main())


def _auth(token: str = READER) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_v1_route_needs_a_known_token(view: CustomerView) -> None:
    fill_example(view)

    async def call(client: TestClient) -> None:
        for headers in ({}, _auth("wrong-token-0123456789")):
            answer = await client.get("/v1/customers/cus-anna", headers=headers)
            assert answer.status == 401
        assert (await client.get("/v1/customers/cus-anna", headers=_auth())).status == 200
        assert (await client.get("/health/live")).status == 200  # probes need none
        spec = await (await client.get("/openapi.json")).json()
        assert "/v1/lookup" in spec["paths"] and spec["openapi"].startswith("3.")

    _run(view, call)


def test_lookup_by_any_identifier_normalised_as_the_stitcher_does(
    view: CustomerView, caplog: pytest.LogCaptureFixture
) -> None:
    fill_example(view)

    async def call(client: TestClient) -> None:
        for namespace, value in (("email", " Anna@Example.DE "), ("phone", "0170 1234567")):
            answer = await client.get(
                "/v1/lookup", params={"namespace": namespace, "value": value}, headers=_auth()
            )
            body = await answer.json()
            assert answer.status == 200, body
            assert body["customer_id"] == "cus-anna"
            assert body["traits"]["first_name"] == "Anna"
        unknown = await client.get(
            "/v1/lookup", params={"namespace": "email", "value": "x@y.de"}, headers=_auth()
        )
        assert unknown.status == 404
        bad = await client.get(
            "/v1/lookup", params={"namespace": "email", "value": "not-an-email"}, headers=_auth()
        )
        assert bad.status == 400

    with caplog.at_level(logging.DEBUG):
        _run(view, call)
    logged = caplog.text
    assert "api: GET /v1/lookup 200" in logged
    assert "anna" not in logged.lower() and "1234567" not in logged


def test_a_merged_away_id_answers_with_the_survivor_and_an_erased_one_is_gone(
    view: CustomerView,
) -> None:
    fill_example(view)

    async def call(client: TestClient) -> None:
        moved = await client.get("/v1/customers/cus-old", headers=_auth(), allow_redirects=False)
        assert moved.status == 301
        assert moved.headers["Location"] == "/v1/customers/cus-anna"
        assert (await moved.json())["merged_into"] == "cus-anna"
        followed = await client.get("/v1/customers/cus-old", headers=_auth())
        assert (await followed.json())["customer_id"] == "cus-anna"
        assert (await client.get("/v1/customers/cus-gone", headers=_auth())).status == 410
        gone = await client.get(
            "/v1/lookup", params={"namespace": "email", "value": "gone@example.de"}, headers=_auth()
        )
        assert gone.status == 404
        assert (await client.get("/v1/customers/cus-nobody", headers=_auth())).status == 404

    _run(view, call)


def test_journey_graph_changes_and_possible_matches(view: CustomerView) -> None:
    fill_example(view)

    async def call(client: TestClient) -> None:
        journey = await (
            await client.get("/v1/customers/cus-old/journey?limit=1", headers=_auth())
        ).json()
        assert journey["customer_id"] == "cus-anna"
        assert [e["event"]["event_id"] for e in journey["events"]] == ["e-order"]
        rest = await (
            await client.get(
                "/v1/customers/cus-anna/journey",
                params={"limit": "1", "before": journey["next"]},
                headers=_auth(),
            )
        ).json()
        assert [e["event"]["event_id"] for e in rest["events"]] == ["e-web"]
        assert rest["next"] is None
        graph = await (await client.get("/v1/customers/cus-anna/graph", headers=_auth())).json()
        labels = {n["label"] for n in graph["nodes"]}
        assert "email:anna@example.de" in labels and "cus-old" in labels
        kinds = {e["kind"] for e in graph["edges"]}
        assert {"event", "attached", "merged", "possible_match"} <= kinds
        event_edge = next(e for e in graph["edges"] if e["kind"] == "event")
        assert event_edge["evidence"][0]["event_id"] == "e-web"
        changes = await (await client.get("/v1/customers/cus-anna/changes", headers=_auth())).json()
        assert {c["change_id"] for c in changes["changes"]} == {"chg-1", "chg-pm"}
        matches = await (
            await client.get("/v1/customers/cus-anna/possible-matches", headers=_auth())
        ).json()
        assert [m["customer_id"] for m in matches["possible_matches"]] == ["cus-other"]

    _run(view, call)


def test_operations_need_an_operator_token_and_reach_the_worker(view: CustomerView) -> None:
    fill_example(view)
    worker = StandInWorker()

    async def call(client: TestClient) -> None:
        body = {"kind": "accept", "left": "cus-anna", "right": "cus-other", "reason": "checked"}
        refused = await client.post("/v1/operations", json=body, headers=_auth())
        assert refused.status == 403
        done = await client.post("/v1/operations", json=body, headers=_auth(OPERATOR))
        assert done.status == 200 and (await done.json())["status"] == "done"
        wrong = await client.post(
            "/v1/operations", json={"kind": "dance", "left": "a"}, headers=_auth(OPERATOR)
        )
        assert wrong.status == 200  # the stand-in answers everything; the real one refuses
        explained = await client.get(
            "/v1/explain",
            params={"left": "email:anna@example.de", "right": "phone:+491701234567"},
            headers=_auth(),
        )
        assert (await explained.json())["explanation"]["joined"] is True

    _run(view, call, worker)
    assert worker.sent[0]["operator"] == "api:desk"
    assert worker.sent[0]["kind"] == "accept" and worker.sent[-1]["kind"] == "explain"


def test_kpis_health_and_metrics(view: CustomerView) -> None:
    fill_example(view)

    async def call(client: TestClient) -> None:
        kpis = await (await client.get("/v1/kpis", headers=_auth())).json()
        assert kpis["customers"] == 1 and kpis["events"] == 2  # cus-old's event is Anna's
        assert kpis["cross_channel_conversion"]["orders"] == 1
        assert (await client.get("/health/ready")).status == 200
        text = await (await client.get("/metrics")).text()
        assert 'omnistitch_api_requests_total{route="/v1/kpis",status="200"}' in text

    _run(view, call)


def test_a_sealed_profile_opens_while_its_key_exists(view: CustomerView) -> None:
    vault = memory_store()
    key = vault.issue([("t:p1", [])])["t:p1"]
    assert key is not None
    plain = make_profile(customer_id="cus-s", identifiers={"email": ["s@x.de"]}, merged_ids=[])
    sealed = seal_profile(decoded(plain), key, "t:p1")
    feed = Feed(view)
    feed.apply(feed._item("profiles", "cus-s", sealed, {"email": ["s@x.de"]}))
    assert b"s@x.de" not in (view.cells.get(b"p|cus-s") or b"")

    async def call(client: TestClient) -> None:
        found = await client.get(
            "/v1/lookup", params={"namespace": "email", "value": "s@x.de"}, headers=_auth()
        )
        assert (await found.json())["identifiers"]["email"] == ["s@x.de"]
        vault.shred(["t:p1"], [])
        assert (await client.get("/v1/customers/cus-s", headers=_auth())).status == 503

    _run(view, call, vault=vault)


def test_clienteling_shows_interest_only_with_consent_for_personalisation(
    view: CustomerView,
) -> None:
    from pipeline.contract.models import ComputedTraits, Traits

    feed = Feed(view)
    computed = ComputedTraits(
        recently_viewed=["P-9", "P-1"], abandoned_cart=["P-3"], preferred_store="S-1", open_cases=1
    )

    def card(consent: bool, version: int) -> Any:
        return make_profile(
            customer_id="cus-card",
            identifiers={"loyalty_id": ["LC-77"], "email": ["kim@example.de"]},
            traits=Traits(first_name="Kim", city="Köln", birth_date="1990-01-02"),
            consent={"personalisation": consent},
            computed=computed,
            merged_ids=[],
            version=version,
        )

    feed.apply(feed.profile(card(False, 1)))
    seen: list[dict[str, Any]] = []

    async def call(client: TestClient) -> None:
        answer = await client.get(
            "/v1/clienteling", params={"namespace": "loyalty_id", "value": "LC-77"}, headers=_auth()
        )
        seen.append(await answer.json())

    _run(view, call)
    feed.apply(feed.profile(card(True, 2)))
    _run(view, call)
    without, with_consent = seen
    assert without == {
        "customer_id": "cus-card",
        "first_name": "Kim",
        "open_support_case": True,
        "personalisation": False,
    }
    assert with_consent["abandoned_cart"] == ["P-3"] and with_consent["preferred_store"] == "S-1"
    assert with_consent["recently_viewed"] == ["P-9", "P-1"]
    text = json.dumps(with_consent)
    assert "kim@example.de" not in text and "Köln" not in text and "1990" not in text
