"""The viewer page in headless Chromium, driven over the DevTools protocol: search by an
identifier, the profile with trait sources and consent, the identity graph (an edge clicked for
its evidence), the journey, a possible match accepted through the API, and the KPI dashboard.
Screenshots are saved in build/screenshots/.

The API runs in-process over a view filled as the topics would fill it (the same records as the
API's unit tests; the real-broker path is tests/integration/test_serving.py). Needs Chromium:
run by `make test-browser` (and by CI), not by `make test`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pipeline.serving.api import ProfileApi, build_app
from pipeline.serving.tokens import ApiTokens
from pipeline.serving.view import CustomerView
from pipeline.settings import Settings
from pipeline.vault.store import MemoryCells
from tests.conftest import REPO_ROOT
from tests.factories import NOW
from tests.servers import serving
from tests.unit.pipeline.serving.conftest import StandInWorker, fill_example

pytestmark = [pytest.mark.integration, pytest.mark.browser]

TOKEN = "viewer-test-token-0123456789"
SHOTS = REPO_ROOT / "build" / "screenshots"


@pytest.fixture
def api_base() -> Iterator[tuple[str, StandInWorker]]:
    """The profile API and viewer on a free port, over the example customers."""
    view = CustomerView(MemoryCells())
    fill_example(view)
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    settings = Settings(api_tokens={"desk": digest}, api_operators=["desk"])
    worker = StandInWorker()
    api = ProfileApi(settings, view, None, ApiTokens.from_settings(settings), worker, lambda: NOW)
    with serving(build_app(api)) as base:
        yield base, worker


class Page:
    """One Chromium tab over the DevTools protocol (a WebSocket)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=60)
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return dict(message["result"])

    async def value(self, expression: str) -> Any:
        found = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in found, found
        return found["result"].get("value")

    async def until(self, expression: str, timeout_s: float = 30) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = await self.value(expression)
            if found:
                return found
            await asyncio.sleep(0.2)
        raise AssertionError(f"not within {timeout_s}s: {expression}")

    async def screenshot(self, name: str) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _chromium(tmp_path: Path) -> subprocess.Popen[bytes]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is needed: apt-get install chromium (see README, make test-browser)"
    return subprocess.Popen(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1600",
            "--remote-debugging-port=0",
            f"--user-data-dir={tmp_path / 'profile'}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _drive(tmp_path: Path, base: str) -> dict[str, Any]:
    port_file = tmp_path / "profile" / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text().strip():
        assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
        await asyncio.sleep(0.2)
    port = int(port_file.read_text().split()[0])
    seen: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        targets = await (await session.get(f"http://127.0.0.1:{port}/json/list")).json()
        target = next(t for t in targets if t["type"] == "page")
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            await page.send("Page.enable")
            query = "email: Anna@Example.de"
            await page.send("Page.navigate", url=f"{base}/#token={TOKEN}&q={query}")
            await page.until("document.body && document.body.dataset.loaded")
            seen["customer"] = await page.value(
                "document.getElementById('customer-id').textContent"
            )
            seen["traits"] = await page.value(
                "[...document.querySelectorAll('#traits tbody tr')].map(r => "
                "[...r.cells].map(c => c.textContent))"
            )
            seen["consent"] = await page.value(
                "[...document.querySelectorAll('#consent tbody tr')].map(r => "
                "[...r.cells].map(c => c.textContent))"
            )
            seen["activity"] = await page.value(
                "Object.fromEntries([...document.querySelectorAll('#activity dd')].map(d => "
                "[d.dataset.activity, d.textContent]))"
            )
            seen["identifiers"] = await page.value(
                "document.querySelector('#identifiers dd[data-namespace=email]').textContent"
            )
            seen["edges"] = await page.value(
                "[...document.querySelectorAll('#graph .edge')].map(e => e.dataset.kind)"
            )
            seen["nodes"] = await page.value("document.querySelectorAll('#graph .node').length")
            await page.value(
                "document.querySelector('#graph .edge[data-kind=merged]')"
                ".dispatchEvent(new MouseEvent('click', {bubbles: true}))"
            )
            seen["evidence"] = json.loads(
                await page.value("document.getElementById('evidence').textContent")
            )
            seen["journey"] = await page.value(
                "[...document.querySelectorAll('#journey .journey-event')]"
                ".map(li => li.dataset.channel)"
            )
            seen["token_in_url"] = await page.value("location.href.includes('token=')")
            seen["shot_customer"] = await page.screenshot("viewer-customer")
            await page.value(
                "document.querySelector('.match button[data-decision=accept]').click()"
            )
            seen["status"] = await page.until(
                "document.getElementById('status').textContent.startsWith('accept') && "
                "document.getElementById('status').textContent"
            )
            await page.value("document.getElementById('show-kpis').click()")
            await page.until("document.body.dataset.kpis === 'yes'")
            seen["figures"] = await page.value(
                "Object.fromEntries([...document.querySelectorAll('.figure')].map(f => "
                "[f.dataset.figure, f.querySelector('b').textContent]))"
            )
            seen["charts"] = await page.value(
                "[...document.querySelectorAll('.kpi-chart')].map(c => "
                "[c.dataset.chart, c.querySelectorAll('rect').length])"
            )
            seen["shot_kpis"] = await page.screenshot("viewer-kpis")
            await page.value(
                "document.getElementById('query').value = 'email:lena.k@example.de';"
                "document.getElementById('search').requestSubmit()"
            )
            seen["unknown"] = await page.until("document.getElementById('status').textContent")
    return seen


def test_the_viewer_shows_a_customer_its_graph_journey_matches_and_the_kpis(
    api_base: tuple[str, StandInWorker], tmp_path: Path
) -> None:
    base, worker = api_base
    browser = _chromium(tmp_path)
    try:
        seen = asyncio.run(_drive(tmp_path, base))
    finally:
        browser.terminate()
        browser.wait(30)
    assert seen["customer"] == "cus-anna"
    traits = {row[0]: row[1:] for row in seen["traits"]}
    assert traits["first_name"] == ["Anna", "crm", "2026-11-24 12:00:00"]
    assert traits["city"][0] == "Köln"
    assert seen["consent"] == [["email_marketing", "yes", "shop-de", "2026-11-24 12:00:00"]]
    assert seen["identifiers"] == "anna@example.de"
    activity = seen["activity"]
    assert activity["revenue to date"] == "20.00 EUR" and activity["abandoned cart"] == "P-3"
    assert activity["preferred store"] == "S-1"
    assert {"event", "attached", "merged", "possible_match"} <= set(seen["edges"])
    assert seen["nodes"] >= 5
    assert seen["evidence"]["kind"] == "merged"
    assert seen["evidence"]["evidence"][0]["change_id"] == "chg-1"
    assert sorted(seen["journey"]) == ["store", "web"]
    assert seen["token_in_url"] is False  # moved to sessionStorage, not left in the address
    assert seen["status"].startswith("accept: done")
    accepted = worker.sent[-1]
    assert (accepted["kind"], accepted["left"], accepted["right"]) == (
        "accept",
        "cus-anna",
        "cus-other",
    )
    assert seen["figures"]["customers"] == "1" and seen["figures"]["events"] == "2"
    assert dict(seen["charts"])["channel switches"] >= 1
    assert seen["unknown"] == "no customer holds this identifier"
    for shot in (seen["shot_customer"], seen["shot_kpis"]):
        assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
