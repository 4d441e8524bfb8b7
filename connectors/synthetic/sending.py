"""Sending a scenario through the real connectors: Segment calls and webhooks to the HTTP
collector, POS and CRM rows as files into the drop folder."""

from __future__ import annotations

import asyncio
import csv
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.synthetic.timeline import Scenario


@dataclass
class SendReport:
    segment_calls: int = 0
    segment_requests: int = 0
    webhooks: int = 0
    file_rows: int = 0
    files: int = 0
    retries: int = 0
    failed: int = 0
    dead_lettered: int = 0

    def render(self) -> str:
        return (
            f"{self.segment_calls} Segment calls in {self.segment_requests} requests, "
            f"{self.webhooks} webhooks, {self.file_rows} rows in {self.files} files "
            f"({self.dead_lettered} dead-lettered by the collector, {self.retries} retries, "
            f"{self.failed} failed)"
        )


def _batches(calls: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(calls), size):
        yield calls[i : i + size]


async def _post(
    session: Any, url: str, report: SendReport, *, json_body: Any = None, form: Any = None
) -> None:
    import aiohttp

    for attempt in range(12):
        try:
            async with session.post(url, json=json_body, data=form) as resp:
                if resp.status == 200:
                    body = await resp.json()
                    report.dead_lettered += int(body.get("dead_lettered", 0))
                    return
                if resp.status not in (429, 502, 503, 504):
                    report.failed += 1
                    return
        except aiohttp.ClientError:
            pass
        report.retries += 1
        await asyncio.sleep(min(0.2 * 2**attempt, 5))
    report.failed += 1


async def _send_http(
    scenario: Scenario, base_url: str, write_key: str, report: SendReport, concurrency: int
) -> None:
    import base64

    import aiohttp

    token = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}  # Segment's basic auth: the key, no password
    limit = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:

        async def post(url: str, **kwargs: Any) -> None:
            async with limit:
                await _post(session, url, report, **kwargs)

        jobs = []
        calls = [t.payload for t in scenario.touches if t.connector == "segment"]
        for batch in _batches(calls, 100):
            body = {"batch": batch, "sentAt": datetime.now(UTC).isoformat()}
            jobs.append(post(f"{base_url}/v1/batch", json_body=body))
            report.segment_calls += len(batch)
            report.segment_requests += 1
        for touch in scenario.touches:
            if touch.connector != "webhook":
                continue
            url = f"{base_url}/v1/webhooks/{touch.target}"
            if touch.target == "twilio":  # Twilio posts forms
                jobs.append(post(url, form={k: str(v) for k, v in touch.payload.items()}))
            else:
                jobs.append(post(url, json_body=touch.payload))
            report.webhooks += 1
        await asyncio.gather(*jobs)


def write_drops(scenario: Scenario, drop_dir: Path, report: SendReport) -> None:
    """POS rows as one CSV per store, CRM rows as one export; each appears complete (rename)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for touch in scenario.touches:
        if touch.connector == "file":
            key = touch.payload.get("store_id", "export") if touch.target == "pos" else "export"
            groups[(touch.target, key)].append(touch.payload)
    for (kind, key), rows in sorted(groups.items()):
        folder = drop_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{kind}-{key}-{scenario.seed}.csv"
        part = folder / f".{final.name}.part"
        columns = list(dict.fromkeys(column for row in rows for column in row))
        with part.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        part.rename(final)
        report.files += 1
        report.file_rows += len(rows)


def send(
    scenario: Scenario, base_url: str, write_key: str, drop_dir: Path, concurrency: int = 8
) -> SendReport:
    """Push the scenario through the real connectors: HTTP collector and file drops."""
    report = SendReport()
    asyncio.run(_send_http(scenario, base_url.rstrip("/"), write_key, report, concurrency))
    write_drops(scenario, drop_dir, report)
    return report
