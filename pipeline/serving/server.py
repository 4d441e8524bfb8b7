"""``omnistitch serve``: the view in RocksDB under ``OMNISTITCH_SERVE_DIR``, the follower that
keeps it current, and the API with the viewer on ``OMNISTITCH_SERVE_HOST:PORT``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from pipeline import metrics
from pipeline.clock import system_clock
from pipeline.serving.api import ProfileApi, build_app, worker_submit
from pipeline.serving.follower import Follower
from pipeline.serving.tokens import ApiTokens
from pipeline.serving.view import Applied, CustomerView
from pipeline.settings import Settings
from pipeline.stream.serialization import RegistrySerde
from pipeline.vault.client import VaultClient
from pipeline.vault.store import RocksCells

log = logging.getLogger("omnistitch.serve")
SIZE_INTERVAL_S = 30.0


class Reporter:
    """Counts and lag after every batch; the view's size on disk at most every 30 s."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.measured = 0.0

    def __call__(self, applied: Applied, lag: dict[tuple[str, int], int]) -> None:
        on_batch(applied, lag)
        if time.monotonic() - self.measured > SIZE_INTERVAL_S:
            self.measured = time.monotonic()
            metrics.STATE_BYTES.labels("serve-view").set(metrics.folder_bytes(self.folder))


def on_batch(applied: Applied, lag: dict[tuple[str, int], int]) -> None:
    for kind in ("profiles", "tombstones", "journeys", "changes", "erased", "ignored"):
        count = getattr(applied, kind)
        if count:
            metrics.RECORDS_OUT.labels("serve", kind).inc(count)
    for (topic, partition), behind in lag.items():
        metrics.CONSUMER_LAG.labels("serve", topic, str(partition)).set(behind)


def run(settings: Settings, catch_up_s: float = 0.0) -> None:
    """Run until SIGTERM/SIGINT. With ``catch_up_s``, wait that long for the view to catch up
    before answering (the API answers from the start otherwise; /health/ready tells)."""
    tokens = ApiTokens.from_settings(settings)
    folder = settings.serve_dir / "view"
    cells = RocksCells(folder, sync=False)
    view = CustomerView(cells, settings.serve_max_journey)
    vault = VaultClient.from_settings(settings)
    serde = RegistrySerde.from_access(settings.registry_access())
    follower = Follower(settings, view, serde, vault, Reporter(folder))
    follower.start()
    if catch_up_s:
        follower.wait_ready(catch_up_s)
    api = ProfileApi(settings, view, vault, tokens, worker_submit(settings), system_clock, follower)
    app = build_app(api)

    async def stopped(_app: web.Application) -> None:
        follower.stop()
        follower.join(10)
        cells.close()

    app.on_cleanup.append(stopped)
    log.info(
        "serve: profile API and viewer on http://%s:%d/ (%s)",
        settings.serve_host,
        settings.serve_port,
        "tokens from OMNISTITCH_API_TOKENS"
        if settings.api_tokens
        else f"local token in {settings.serve_dir / 'token'}",
    )
    kwargs: dict[str, Any] = {"access_log": None, "print": None}
    web.run_app(app, host=settings.serve_host, port=settings.serve_port, **kwargs)
