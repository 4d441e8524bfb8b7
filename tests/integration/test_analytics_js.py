"""analytics.js, Segment's browser library, unchanged but for its API host, in headless Chromium
against the collector: identify, track and page calls arrive as ChannelEvents.

Needs Chromium and the npm package of stack/browser: run by `make test-browser` (and by CI),
not by `make test`."""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.contract.models import Channel, ChannelEvent
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import EVENTS
from tests.conftest import REPO_ROOT
from tests.integration.conftest import WRITE_KEY, KafkaEndpoints, consume

pytestmark = [pytest.mark.integration, pytest.mark.browser]

BUNDLE = REPO_ROOT / "stack" / "browser" / "node_modules" / "@segment" / "analytics-next" / "dist"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Shop</title></head><body>
<script src="/umd/index.js"></script>
<script>
const analytics = window.AnalyticsNext.AnalyticsBrowser.load({
  writeKey: "%(key)s",
  cdnSettings: {integrations: {"Segment.io": {apiKey: "%(key)s", apiHost: "%(host)s/v1",
                                              protocol: "http"}}},
});
(async () => {
  await analytics.identify("CRM-0815", {firstName: "Zoë", lastName: "O'Brien",
                                        email: "zoe@example.ie"});
  await analytics.track("Order Completed", {order_id: "W-77", total: 19.9, currency: "EUR"});
  await analytics.page("Sale");
  document.body.setAttribute("data-done", "yes");
})().catch(e => document.body.setAttribute("data-error", String(e)));
</script></body></html>
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static web server for the shop page and analytics.js: (its folder, its base URL)."""
    if not (BUNDLE / "umd" / "index.js").exists():
        pytest.fail(
            "analytics.js is missing: run `make test-browser` (npm install in stack/browser)"
        )
    root = tmp_path / "site"
    shutil.copytree(BUNDLE / "umd", root / "umd")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_analytics_js_in_a_browser_sends_through_the_collector(
    kafka: KafkaEndpoints, collector: tuple[str, str], site: tuple[Path, str], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is needed: apt-get install chromium (see README, make test-browser)"
    base, prefix = collector
    root, page_base = site
    host = base.removeprefix("http://")
    (root / "shop.html").write_text(PAGE % {"key": WRITE_KEY, "host": host}, encoding="utf-8")
    dom = subprocess.run(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            f"{page_base}/shop.html",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 'data-done="yes"' in dom.stdout, (dom.stdout[-2000:], dom.stderr[-2000:])

    serde = RegistrySerde(kafka.registry_url)
    topic = EVENTS.name(prefix)
    events = {
        e.event_type: e
        for e in (
            ChannelEvent.from_avro(serde.decode(topic, m.value(), ChannelEvent))
            for m in consume(kafka.bootstrap_servers, topic, 3, timeout_s=60)
        )
    }
    assert set(events) == {"identify", "order_completed", "page_viewed"}
    anonymous = {
        i.value for e in events.values() for i in e.identifiers if i.namespace == "anonymous_id"
    }
    assert len(anonymous) == 1  # analytics.js's own anonymous id, the same on every call
    for event in events.values():
        assert event.channel is Channel.web
        assert event.source == "web-shop"
        assert ("customer_id", "CRM-0815") in {(i.namespace, i.value) for i in event.identifiers}
    assert (events["identify"].traits.first_name, events["identify"].traits.last_name) == (
        "Zoë",
        "O'Brien",
    )
    order = events["order_completed"]
    assert ("order_id", "W-77") in {(i.namespace, i.value) for i in order.identifiers}
    assert order.properties["amount"] == "19.9"
    page = events["page_viewed"]
    assert page.properties["page_name"] == "Sale"
    assert page.properties["url"].endswith("/shop.html")
