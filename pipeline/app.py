"""The faust-streaming worker: thin glue between Kafka and the pure pipeline modules.

Stage 1, intake: every record of the events topic is decoded and validated (pipeline.intake);
a valid ChannelEvent goes to the accepted-events topic keyed by event_id, anything else to the
dead-letter topic with its original bytes and reason. Offsets are committed only after the
record was handled, so nothing accepted is lost (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from pipeline.clock import Clock, system_clock
from pipeline.contract import ChannelEvent
from pipeline.dead_letters import DeadLetter, DeadLetterCounts, Origin, Rejection
from pipeline.exceptions import RegistryUnavailableError
from pipeline.intake import accept
from pipeline.serialization import RegistrySerde, Serde
from pipeline.settings import Settings
from pipeline.topics import ACCEPTED, DEAD_LETTERS, EVENTS

log = logging.getLogger("omnistitch.worker")

REGISTRY_RETRY_MAX_S = 30.0


def broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap_servers.split(",") if host.strip()]


def build_app(
    settings: Settings, clock: Clock = system_clock, serde: Serde | None = None
) -> faust.App:
    """The worker's faust app, configured from settings."""
    serde = serde or RegistrySerde(settings.schema_registry_url)
    policy = settings.intake_policy()
    prefix = settings.topic_prefix
    app = faust.App(
        settings.app_id,
        broker=broker_urls(settings.bootstrap_servers),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
    )

    def raw_topic(name: str) -> Any:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    events_topic = raw_topic(EVENTS.name(prefix))
    accepted_topic = raw_topic(ACCEPTED.name(prefix))
    dead_topic = raw_topic(DEAD_LETTERS.name(prefix))
    counts = DeadLetterCounts()
    accepted_count = 0

    def decode(data: bytes) -> dict[str, Any]:
        return serde.decode(EVENTS.name(prefix), data, ChannelEvent)

    async def accept_with_retry(data: bytes | None) -> ChannelEvent | Rejection:
        delay = 0.5
        while True:
            try:
                return accept(data, decode, clock(), policy)
            except RegistryUnavailableError as exc:
                # Not the record's fault: wait and retry, the offset stays uncommitted.
                log.warning("schema registry unavailable, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REGISTRY_RETRY_MAX_S)

    @app.agent(events_topic, concurrency=1)
    async def intake(stream: Any) -> None:
        nonlocal accepted_count
        async for event in stream.events():
            message = event.message
            outcome = await accept_with_retry(message.value)
            if isinstance(outcome, Rejection):
                letter = DeadLetter(
                    Origin(message.topic, message.partition, message.offset),
                    outcome,
                    message.key,
                    message.value,
                    clock(),
                )
                await dead_topic.send(
                    key=message.key, value=message.value, headers=letter.headers()
                )
                counts.add(outcome.reason)
                log.info(
                    "dead letter: reason=%s origin=%s/%d@%d",
                    outcome.reason,
                    message.topic,
                    message.partition,
                    message.offset,
                )
                continue
            await accepted_topic.send(
                key=outcome.event_id.encode(),
                value=serde.encode(ACCEPTED.name(prefix), outcome),
            )
            accepted_count += 1

    last_logged: list[tuple[int, dict[str, int]]] = []

    @app.timer(settings.stats_interval_s)
    async def log_counts() -> None:
        snapshot = (accepted_count, counts.as_dict())
        if not last_logged or last_logged[-1] != snapshot:
            log.info("intake: accepted=%d dead_letters=%s", snapshot[0], snapshot[1])
            last_logged[:] = [snapshot]

    return app
