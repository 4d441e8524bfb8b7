"""Where every connector's output goes: ChannelEvents to the events topic, refusals to dead letters.

One confluent-kafka producer per connector process, idempotent, ``acks=all``. A record counts as
accepted only once Kafka acknowledged it: ``deliver`` (blocking, for the file connector) and
``deliver_async`` (for the HTTP collector) both raise DeliveryError when any record of the call
was not acknowledged within the delivery timeout, so the caller can answer 503 or keep its
checkpoint. librdkafka retries transient broker errors itself, with backoff, until the
timeout; ``close`` flushes what is still queued.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from pipeline import metrics
from pipeline.clock import Clock, system_clock
from pipeline.contract.dead_letters import DeadLetter, Origin, Rejection
from pipeline.contract.models import ChannelEvent
from pipeline.exceptions import (
    DeliveryError,
    RegistryUnavailableError,
    VaultError,
    VaultUnavailableError,
)
from pipeline.settings import Settings
from pipeline.stream.serialization import RegistrySerde, Serde
from pipeline.stream.topics import DEAD_LETTERS, EVENTS
from pipeline.stream.transport import KafkaSecurity, RegistryAccess, kafka_conf
from pipeline.vault.client import VaultClient
from pipeline.vault.sealer import Sealer
from pipeline.vault.sealing import KEY_HEADER, event_key_id
from pipeline.vault.tags import Tagger

log = logging.getLogger("omnistitch.connectors")

# What one connector call hands to the sink: events to publish, refusals to dead-letter.
Outgoing = ChannelEvent | DeadLetter


@dataclass(frozen=True)
class SinkConfig:
    bootstrap_servers: str
    registry_url: str
    topic_prefix: str = "omnistitch."
    delivery_timeout_s: float = 15.0
    client_id: str = "omnistitch-connector"
    # TLS / SASL and registry auth (pipeline.stream.transport); None: plaintext, no auth.
    security: KafkaSecurity | None = None
    registry: RegistryAccess | None = None

    @classmethod
    def from_settings(cls, settings: Settings, client_id: str) -> SinkConfig:
        return cls(
            bootstrap_servers=settings.bootstrap_servers,
            registry_url=settings.schema_registry_url,
            topic_prefix=settings.topic_prefix,
            delivery_timeout_s=settings.delivery_timeout_s,
            client_id=client_id,
            security=settings.kafka_security(),
            registry=settings.registry_access(),
        )

    def kafka(self) -> str | KafkaSecurity:
        return self.security or self.bootstrap_servers


def refusal(
    connector: str, where: str, rejection: Rejection, raw: bytes, now: datetime, line: int = -1
) -> DeadLetter:
    """A dead letter for a record a connector could not map; ``where``: endpoint or file."""
    return DeadLetter(
        origin=Origin(f"{connector}:{where}", -1, line),
        rejection=rejection,
        key=None,
        value=raw,
        failed_at=now,
    )


class EventSink:
    """The producing end of a connector."""

    def __init__(
        self,
        config: SinkConfig,
        serde: Serde | None = None,
        clock: Clock = system_clock,
        producer_config: dict[str, Any] | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        # Crypto-shredding (pipeline.vault): personal fields leave sealed under per-record keys.
        self.sealer = sealer
        self.serde = serde or (
            RegistrySerde.from_access(config.registry)
            if config.registry
            else RegistrySerde(config.registry_url)
        )
        self.events_topic = EVENTS.name(config.topic_prefix)
        self.dead_letters_topic = DEAD_LETTERS.name(config.topic_prefix)
        timeout_ms = int(config.delivery_timeout_s * 1000)
        self.producer = Producer(
            {
                **kafka_conf(config.kafka()),
                "client.id": config.client_id,
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": timeout_ms,
                "retry.backoff.ms": 100,
                "retry.backoff.max.ms": 2000,
                "linger.ms": 5,
                "compression.type": "lz4",
                **(producer_config or {}),
            }
        )
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings, client_id: str) -> EventSink:
        """The sink of a connector process: sealing when a vault is configured."""
        vault = VaultClient.from_settings(settings)
        sealer = None if vault is None else Sealer(vault, Tagger.from_settings(settings))
        return cls(SinkConfig.from_settings(settings, client_id), sealer=sealer)

    def sealed(self, records: Sequence[Outgoing]) -> Sequence[Outgoing]:
        """The records as they may leave: sealed when a vault is configured. A vault that
        cannot be reached or refuses is a DeliveryError: nothing was accepted."""
        if self.sealer is None:
            return records
        try:
            return self.sealer.seal(records, self.clock())
        except (VaultUnavailableError, VaultError) as exc:
            raise DeliveryError(f"records could not be sealed: {exc}") from exc

    # -- encoding -------------------------------------------------------------------------------

    def _encode(self, record: Outgoing) -> tuple[str, bytes | None, bytes | None, Any]:
        if isinstance(record, DeadLetter):
            return self.dead_letters_topic, record.key, record.value, record.headers()
        try:
            value = self.serde.encode(self.events_topic, record)
        except RegistryUnavailableError:
            raise
        except Exception as exc:  # the registry client raises plain errors when unreachable
            raise RegistryUnavailableError(f"could not encode an event: {exc}") from exc
        headers = None if record.sealed is None else [(KEY_HEADER, event_key_id(record.event_id))]
        return self.events_topic, record.event_id.encode(), value, headers

    def _produce(self, record: Outgoing, on_delivery: Any, deadline: float) -> None:
        topic, key, value, headers = self._encode(record)
        while True:
            try:
                self.producer.produce(
                    topic, key=key, value=value, headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                # The local queue is full: let deliveries drain, within the deadline.
                if time.monotonic() > deadline:
                    raise DeliveryError("producer queue full until the delivery timeout") from None
                self.producer.poll(0.05)

    # -- blocking -------------------------------------------------------------------------------

    def deliver(self, records: Sequence[Outgoing]) -> None:
        """Publish and wait until Kafka acknowledged every record; DeliveryError otherwise."""
        if not records:
            return
        records = self.sealed(records)
        failures: list[str] = []
        pending = [len(records)]

        def done(err: KafkaError | None, _msg: Message) -> None:
            pending[0] -= 1
            if err is not None:
                failures.append(err.str())

        deadline = time.monotonic() + self.config.delivery_timeout_s
        for record in records:
            self._produce(record, done, deadline)
        # message.timeout.ms bounds each record; a little slack for the last callbacks.
        while pending[0] > 0 and time.monotonic() < deadline + 5:
            self.producer.flush(0.2)
        if pending[0] > 0:
            raise DeliveryError(f"{pending[0]} of {len(records)} records not acknowledged")
        if failures:
            raise DeliveryError(
                f"{len(failures)} of {len(records)} records refused by Kafka: {failures[0]}"
            )
        self.counted(records)

    def counted(self, records: Sequence[Outgoing]) -> None:
        """Acknowledged records in the metrics (pipeline.metrics), by outcome and reason."""
        letters = [r for r in records if isinstance(r, DeadLetter)]
        connector = self.config.client_id
        metrics.CONNECTOR_RECORDS.labels(connector, "delivered").inc(len(records) - len(letters))
        if letters:
            metrics.CONNECTOR_RECORDS.labels(connector, "dead_lettered").inc(len(letters))
        for letter in letters:
            metrics.DEAD_LETTERS.labels(connector, letter.rejection.reason.value).inc()

    # -- asyncio --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread that serves delivery reports (needed by ``deliver_async``)."""
        if self._poller is None:
            self._stopping.clear()
            self._poller = threading.Thread(target=self._poll, name="sink-poller", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self.producer.poll(0.1)

    async def deliver_async(self, records: Sequence[Outgoing]) -> None:
        """Like ``deliver`` without blocking the event loop."""
        if not records:
            return
        self.start()
        loop = asyncio.get_running_loop()
        if self.sealer is not None:  # a vault call: off the event loop
            records = await loop.run_in_executor(None, self.sealed, records)
        futures: list[asyncio.Future[None]] = []

        def report(future: asyncio.Future[None]) -> Any:
            def done(err: KafkaError | None, _msg: Message) -> None:
                def settle() -> None:
                    if future.done():
                        return
                    if err is None:
                        future.set_result(None)
                    else:
                        future.set_exception(DeliveryError(f"refused by Kafka: {err.str()}"))

                loop.call_soon_threadsafe(settle)

            return done

        deadline = time.monotonic() + self.config.delivery_timeout_s
        for record in records:
            future: asyncio.Future[None] = loop.create_future()
            futures.append(future)
            self._produce(record, report(future), deadline)
        try:
            async with asyncio.timeout(self.config.delivery_timeout_s + 5):
                await asyncio.gather(*futures)
        except TimeoutError as exc:
            raise DeliveryError(f"{len(records)} records not acknowledged in time") from exc
        self.counted(records)

    def connected(self, timeout_s: float = 2.0) -> bool:
        """Whether the broker answers a metadata request (for health checks)."""
        try:
            self.producer.list_topics(self.events_topic, timeout=timeout_s)
        except Exception:
            return False
        return True

    def close(self, timeout_s: float = 30.0) -> int:
        """Flush what is queued and stop; returns how many records were left undelivered."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.join(5)
            self._poller = None
        left = int(self.producer.flush(timeout_s))
        if left:
            log.error("sink closed with %d undelivered records", left)
        return left
