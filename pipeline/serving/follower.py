"""The Kafka glue of ``omnistitch serve``: read profiles, journeys and identity changes from
where the view stopped (its own offsets, stored with its rows) and hand them to the view in
batches; readiness once it caught up with the topics' ends seen at start.

A record that cannot be decoded is counted and logged by position (topic, partition, offset:
no content) and passed over — the output topics are written by the worker through the
registry, so this means a foreign writer, not customer input to dead-letter. With the vault
on, a profile is opened only to index its identifiers (the view keeps it sealed); the vault
unreachable → the batch waits and is retried, nothing is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pipeline.contract.models import CustomerProfile, IdentityChange, JourneyEvent
from pipeline.exceptions import DecodeError, VaultUnavailableError
from pipeline.serving.view import Applied, CustomerView, Incoming
from pipeline.settings import Settings
from pipeline.stream.serialization import Serde
from pipeline.stream.topics import IDENTITY_CHANGES, JOURNEYS, PROFILES
from pipeline.vault.client import Vault
from pipeline.vault.sealer import readable

log = logging.getLogger("omnistitch.serve")

BATCH = 500
MODELS: dict[str, Any] = {
    "profiles": CustomerProfile,
    "journeys": JourneyEvent,
    "changes": IdentityChange,
}


def topic_names(prefix: str) -> dict[str, str]:
    return {
        "profiles": PROFILES.name(prefix),
        "journeys": JOURNEYS.name(prefix),
        "changes": IDENTITY_CHANGES.name(prefix),
    }


def opened_identifiers(record: dict[str, Any], vault: Vault | None) -> dict[str, list[str]]:
    """A profile's identifiers, opened when sealed (empty when its key is gone)."""
    found = readable(record, vault)
    return dict(found.get("identifiers") or {}) if found is not None else {}


class Follower(threading.Thread):
    """Keeps ``view`` current from the topics until ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        view: CustomerView,
        serde: Serde,
        vault: Vault | None,
        on_batch: Any = None,
    ) -> None:
        super().__init__(name="serve-follower", daemon=True)
        self.settings, self.view, self.serde, self.vault = settings, view, serde, vault
        self.topics = topic_names(settings.topic_prefix)
        self.kinds = {name: kind for kind, name in self.topics.items()}
        self.on_batch = on_batch or (lambda _applied, _lag: None)
        self.halt = threading.Event()
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self.undecodable = 0
        self.unreadable: list[str] = []  # positions of this batch's unreadable records
        self.lag: dict[tuple[str, int], int] = {}

    def stop(self) -> None:
        self.halt.set()

    def run(self) -> None:
        try:
            self._follow()
        except BaseException as exc:
            self.failed = exc
            log.error("serve: the follower stopped: %s", type(exc).__name__)

    def _follow(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        kafka = self.settings.kafka_security().librdkafka()
        consumer = Consumer(
            {
                **kafka,
                "group.id": f"{self.settings.app_id}.serve",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            assignment, targets = [], {}
            metadata = consumer.list_topics(timeout=30)
            for name in self.topics.values():
                partitions = (
                    sorted(metadata.topics[name].partitions) if name in metadata.topics else []
                )
                for partition, offset in self.view.offsets(name, partitions).items():
                    assignment.append(TopicPartition(name, partition, offset))
                    _low, high = consumer.get_watermark_offsets(
                        TopicPartition(name, partition), timeout=30
                    )
                    targets[(name, partition)] = max(high, 0)
                    self.lag[(name, partition)] = max(0, high - offset)
            consumer.assign(assignment)
            positions = {(tp.topic, tp.partition): tp.offset for tp in assignment}
            self._check_ready(positions, targets)
            while not self.halt.is_set():
                messages = consumer.consume(BATCH, 0.5)
                batch = [item for m in messages if (item := self._incoming(m)) is not None]
                if self.unreadable:  # one line per batch, by position only
                    log.warning(
                        "serve: %d records not readable, passed over; first %s",
                        len(self.unreadable),
                        self.unreadable[0],
                    )
                    self.unreadable.clear()
                for m in messages:
                    if not m.error():
                        positions[(str(m.topic()), int(m.partition() or 0))] = (
                            int(m.offset() or 0) + 1
                        )
                if batch:
                    applied = self._apply(batch)
                    self.on_batch(applied, self.lag)
                if messages:
                    self._refresh_lag(consumer, positions)
                self._check_ready(positions, targets)
        finally:
            consumer.close()

    def _incoming(self, message: Any) -> Incoming | None:
        if message.error():
            return None
        topic = message.topic()
        kind = self.kinds[topic]
        raw, key = message.value(), (message.key() or b"").decode("utf-8", "replace")
        record: dict[str, Any] | None = None
        if raw is not None:
            try:
                record = self.serde.decode(topic, raw, MODELS[kind])
            except DecodeError as exc:
                self.undecodable += 1
                self.unreadable.append(
                    f"{topic}[{message.partition()}]@{message.offset()} "
                    f"({exc.rejection.reason.value})"
                )
                return (
                    Incoming(kind, message.partition(), message.offset(), key, None)
                    if kind != "profiles"
                    else None
                )
        return Incoming(kind, message.partition(), message.offset(), key, record)

    def _apply(self, batch: list[Incoming]) -> Applied:
        """Open what needs opening, then one write; the vault down → wait and retry."""
        while True:
            try:
                ready = [
                    Incoming(
                        item.topic,
                        item.partition,
                        item.offset,
                        item.key,
                        item.record,
                        opened_identifiers(item.record, self.vault),
                    )
                    if item.topic == "profiles" and item.record is not None
                    else item
                    for item in batch
                ]
                return self.view.apply(ready, self.topics)
            except VaultUnavailableError:
                log.warning("serve: the vault is unreachable; the batch waits")
                if self.halt.wait(1.0):
                    raise

    def _refresh_lag(self, consumer: Any, positions: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import TopicPartition

        for (topic, partition), position in positions.items():
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=5, cached=True
            )
            if high >= 0:
                self.lag[(topic, partition)] = max(0, high - position)

    def _check_ready(
        self, positions: dict[tuple[str, int], int], targets: dict[tuple[str, int], int]
    ) -> None:
        if not self.ready.is_set() and all(
            positions.get(tp, 0) >= end for tp, end in targets.items()
        ):
            self.ready.set()
            log.info("serve: caught up with %d partitions", len(targets))

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.failed is None:
            if self.ready.wait(0.2):
                return True
        return self.ready.is_set()
