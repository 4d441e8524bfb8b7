"""The worker's intake stage on confluent-kafka: decode, validate, dead-letter, forward — in
batches, off faust's per-message path (issue #11: faust's path costs about 17x a plain
confluent-kafka loop, and intake needs no state).

``omnistitch worker`` runs it as a child process (``omnistitch stage intake``, see
pipeline.stream.supervisor) beside the linking and profile stages. At least once: a batch is
consumed, every record becomes an accepted event or a dead letter (``pipeline.contract.intake``,
the same rules as replay), the accepted events leave as EventBatch records
(``pipeline.stream.batches``: one record per up to ``batch_size`` events), the producer is
flushed and every delivery checked, and only then are the batch's offsets committed; a batch
whose deliveries did not all succeed is consumed again. A record whose handling raises becomes a
``processing_error`` dead letter; a schema registry that cannot be reached is waited for.
Repeats downstream are harmless: linking is idempotent by event id. The consumer group is
``<app id>.intake`` (faust's group uses its own assignor); a partition it has never committed
starts where the faust group of earlier versions (``<app id>``) had committed, so an upgrade
does not read the whole topic again.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pipeline import metrics
from pipeline.clock import Clock, system_clock
from pipeline.configuration import normaliser
from pipeline.contract.dead_letters import (
    DeadLetter,
    DeadLetterCounts,
    Origin,
    Reason,
    Rejection,
    log_processing_error,
    processing_error,
)
from pipeline.contract.intake import accept
from pipeline.contract.models import ChannelEvent
from pipeline.contract.schemas import CHANNEL_EVENT, IDENTITY_OPERATION
from pipeline.engine.operations import Operation
from pipeline.exceptions import (
    ConfigurationError,
    DecodeError,
    RegistryUnavailableError,
    SealError,
    VaultError,
    VaultUnavailableError,
)
from pipeline.settings import Settings
from pipeline.stream.batches import EVENT_BATCH, accepted_event, chunks, event_body
from pipeline.stream.serialization import RegistrySerde, Serde
from pipeline.stream.supervisor import parent_alive
from pipeline.stream.topics import ACCEPTED, DEAD_LETTERS, EVENTS, OPERATIONS
from pipeline.vault.client import Vault, VaultClient
from pipeline.vault.sealer import Sealer
from pipeline.vault.sealing import (
    KEY_HEADER,
    event_key_id,
    open_event_record,
    open_operation_record,
    operation_key_id,
)
from pipeline.vault.tags import Tagger

log = logging.getLogger("omnistitch.intake")

STAGE = "intake"
ERASED = Rejection(Reason.erased, "the record was sealed under a key that an erase deleted")
REGISTRY_RETRY_MAX_S = 30.0
LAG_INTERVAL_S = 5.0


def group_id(app_id: str) -> str:
    return f"{app_id}.intake"


class IntakeLoop:
    def __init__(
        self,
        settings: Settings,
        serde: Serde | None = None,
        clock: Clock = system_clock,
        alive: Callable[[], bool] = lambda: True,
        vault: Vault | None = None,
    ) -> None:
        from confluent_kafka import Consumer, Producer

        self.settings = settings
        # Sealed records (pipeline.vault) open with the keys of their batch, fetched at once.
        self.vault = vault or VaultClient.from_settings(settings)
        self.keys: dict[str, bytes | None] = {}
        # Dead letters of records that were not sealed are sealed here (their own key).
        self.sealer = (
            None if self.vault is None else Sealer(self.vault, Tagger.from_settings(settings))
        )
        self.serde = serde or RegistrySerde.from_access(settings.registry_access())
        self.clock = clock
        self.alive = alive
        self.policy = settings.intake_policy()
        self.normaliser = normaliser(settings)
        self._event_schema_id: int | None = None
        prefix = settings.topic_prefix
        self.source = EVENTS.name(prefix)
        self.operations_topic = OPERATIONS.name(prefix)
        self.accepted_topic = ACCEPTED.name(prefix)
        self.dead_topic = DEAD_LETTERS.name(prefix)
        kafka = settings.kafka_security().librdkafka()
        self.consumer = Consumer(
            {
                **kafka,
                "group.id": group_id(settings.app_id),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": int(settings.session_timeout_s * 1000),
            }
        )
        self.producer = Producer(
            {
                **kafka,
                "client.id": f"{settings.app_id}-intake",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
            }
        )
        self.running = True
        self.counts = DeadLetterCounts()
        self.accepted = 0
        self.processing_errors = 0
        self._failed: list[str] = []

    @property
    def event_schema_id(self) -> int:
        """Registry id of this version's ChannelEvent schema (the events topic's subject)."""
        if self._event_schema_id is None:
            self._event_schema_id = self.serde.schema_id(self.source, CHANNEL_EVENT)
        return self._event_schema_id

    # -- one record ----------------------------------------------------------------------------
    def _decode(self, data: bytes) -> dict[str, Any]:
        record = self.serde.decode(self.source, data, ChannelEvent)
        return self._opened(record, event_key_id(str(record["event_id"])), open_event_record)

    def _opened(
        self,
        record: dict[str, Any],
        key_id: str,
        opener: Callable[[dict[str, Any], bytes], dict[str, Any]],
    ) -> dict[str, Any]:
        """A decoded record with its sealed fields opened (as it is when not sealed);
        DecodeError when they do not open."""
        if record.get("sealed") is None:
            return record
        key = self._key(key_id)
        try:
            return opener(record, key)
        except SealError as exc:
            raise DecodeError(Rejection(Reason.unreadable_seal, str(exc))) from None

    def _key(self, key_id: str) -> bytes:
        """The key of a sealed record; DecodeError ``erased`` when it was shredded,
        ``unreadable_seal`` when the vault never had it."""
        if key_id not in self.keys:  # sealed, named neither by header nor by key: asked alone
            self.keys.update(self._fetch([key_id]))
        if key_id not in self.keys:
            raise DecodeError(Rejection(Reason.unreadable_seal, "the vault has no key for it"))
        key = self.keys[key_id]
        if key is None:
            raise DecodeError(ERASED)
        return key

    def _fetch(self, ids: list[str]) -> dict[str, bytes | None]:
        if not ids:
            return {}
        if self.vault is None:  # a configuration gap, not the records' fault: wait
            raise VaultUnavailableError("sealed records, but no vault (OMNISTITCH_VAULT_URL)")
        try:
            return self.vault.fetch(ids)
        except VaultError as exc:  # a refusal (token, limits) is a configuration matter: wait
            raise VaultUnavailableError(str(exc)) from exc

    def prefetch(self, messages: list[Any]) -> None:
        """The keys of the batch's sealed records, in one call: named in their headers, or
        (a producer that seals without the header) by the record key, the event id."""
        self.keys = {}
        if self.vault is None:
            return
        ids = []
        for message in messages:
            named = [v for name, v in message.headers() or () if name == KEY_HEADER and v]
            if named:
                ids.append(named[0].decode())
            elif message.topic() == self.source and message.key():
                ids.append(event_key_id(message.key().decode("utf-8", "replace")))
        self.keys = self._fetch(sorted(set(ids)))

    def _dead_letter(self, message: Any, rejection: Rejection, error: str | None = None) -> None:
        letter = DeadLetter(
            _origin(message),
            rejection,
            message.key(),
            b"" if rejection.reason is Reason.erased else message.value(),
            self.clock(),
            stage=STAGE if error else None,
            exception=error,
        ).bounded()
        sealed_by = [v for name, v in message.headers() or () if name == KEY_HEADER and v]
        if sealed_by and letter.value:  # a sealed record: its personal fields are sealed already
            letter = replace(letter, sealed_key=sealed_by[0].decode())
        elif self.sealer is not None and letter.value:
            letter = self.sealer.seal_letter(letter, self.clock())
        headers: list[tuple[str, str | bytes | None]] = list(letter.headers())
        self.producer.produce(
            self.dead_topic,
            key=message.key(),
            value=letter.value,
            headers=headers,
            on_delivery=self._delivered,
        )
        self.counts.add(rejection.reason)
        metrics.DEAD_LETTERS.labels(STAGE, rejection.reason.value).inc()

    def handle(self, message: Any) -> tuple[dict[str, Any], int] | None:
        """The accepted event's batch entry (and its size), or None after a dead letter for the
        record. RegistryUnavailableError is raised: the batch waits."""
        if message.topic() == self.operations_topic:
            return self.handle_operation(message)
        try:
            outcome = accept(message.value(), self._decode, self.clock(), self.policy)
            if isinstance(outcome, Rejection):
                self._dead_letter(message, outcome)
                return None
            origin = _origin(message)
            # Normalisation is pure and per event: done here, in parallel over the intake
            # processes, so the one-partition linker only links (pipeline.stream.stages.LinkStage).
            nodes, _dropped = self.normaliser.nodes(outcome.identifiers, outcome.traits)
            entry = accepted_event(
                (event_body(outcome.to_avro()), self.event_schema_id),
                origin.topic,
                origin.partition,
                origin.offset,
                [(node.namespace, node.value) for node in nodes],
            )
        except (RegistryUnavailableError, VaultUnavailableError):
            raise
        except Exception as exc:
            self.processing_errors += 1
            log_processing_error(log, STAGE, exc, _origin(message))
            self._dead_letter(message, processing_error(STAGE, exc), type(exc).__name__)
            return None
        return entry, len(message.value())

    def handle_operation(self, message: Any) -> tuple[dict[str, Any], int] | None:
        """An operator's decision as a batch entry in its place among the events (the linking
        stage applies it), or None after a dead letter ``invalid_operation``."""
        origin = _origin(message)
        try:
            record = self.serde.decode_record(
                self.operations_topic, message.value() or b"", IDENTITY_OPERATION
            )
            key_id = operation_key_id(str(record["operation_id"]))
            record = self._opened(record, key_id, open_operation_record)
            Operation.from_json(record)  # the linking stage applies only valid operations
        except (RegistryUnavailableError, VaultUnavailableError):
            raise
        except DecodeError as exc:
            self._dead_letter(message, exc.rejection)
            return None
        except ConfigurationError as exc:
            self._dead_letter(message, Rejection(Reason.invalid_operation, str(exc)))
            return None
        except Exception as exc:
            self.processing_errors += 1
            log_processing_error(log, STAGE, exc, origin)
            self._dead_letter(message, processing_error(STAGE, exc), type(exc).__name__)
            return None
        entry = accepted_event((b"", 0), origin.topic, origin.partition, origin.offset)
        entry["operation"] = record
        return entry, len(message.value() or b"")

    def forward(self, entries: list[tuple[dict[str, Any], int]]) -> None:
        """The accepted events as EventBatch records (batch_size events, MAX_BATCH_BYTES)."""
        for batch in chunks(entries, self.settings.batch_size):
            value = self.serde.encode_record(self.accepted_topic, EVENT_BATCH, {"events": batch})
            self.producer.produce(self.accepted_topic, value=value, on_delivery=self._delivered)
            self.accepted += len(batch)

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._failed.append(error.name() if hasattr(error, "name") else str(error))

    # -- batches -------------------------------------------------------------------------------
    def step(self) -> int:
        """Consume one batch (batch_size records, waiting at most batch_wait_ms), handle it,
        forward the accepted events as batch records, flush, commit. Returns the records
        handled."""
        from confluent_kafka import TopicPartition

        wait_s = self.settings.batch_wait_ms / 1000
        messages = [
            m for m in self.consumer.consume(self.settings.batch_size, wait_s) if not m.error()
        ]
        if not messages:
            return 0
        started, accepted_at_start = time.monotonic(), self.accepted
        delay = 0.5
        while True:
            self._failed.clear()
            accepted_before = self.accepted
            try:
                self.prefetch(messages)
                entries = [entry for entry in map(self.handle, messages) if entry is not None]
                self.forward(entries)
                break
            except (RegistryUnavailableError, VaultUnavailableError) as exc:
                # Not the records' fault: wait, then hand the whole batch over again (what
                # was produced already is repeated, harmless downstream).
                log.warning("registry or vault unavailable, retrying in %.1fs: %s", delay, exc)
                self.accepted = accepted_before
                self.producer.flush()
                time.sleep(delay)
                delay = min(delay * 2, REGISTRY_RETRY_MAX_S)
        remaining = self.producer.flush(self.settings.delivery_timeout_s)
        if remaining or self._failed:
            # Not all delivered: consume the batch again from its first offsets.
            log.warning(
                "intake: %d deliveries failed or pending (%s); the batch is read again",
                remaining + len(self._failed),
                ", ".join(sorted(set(self._failed))) or "timeout",
            )
            firsts: dict[tuple[str, int], int] = {}
            for m in messages:
                firsts.setdefault(_where(m), int(m.offset() or 0))
            for (topic, partition), offset in firsts.items():
                self.consumer.seek(TopicPartition(topic, partition, offset))
            time.sleep(1.0)
            return 0
        ends: dict[tuple[str, int], int] = {}
        for m in messages:
            ends[_where(m)] = int(m.offset() or 0) + 1
        self.consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()], asynchronous=False
        )
        metrics.RECORDS_IN.labels(STAGE).inc(len(messages))
        metrics.BATCH_SIZE.labels(STAGE).observe(len(messages))
        metrics.PROCESSING_SECONDS.labels(STAGE).observe(time.monotonic() - started)
        metrics.RECORDS_OUT.labels(STAGE, self.accepted_topic).inc(
            self.accepted - accepted_at_start
        )
        return len(messages)

    def observe_lag(self) -> None:
        """Records behind each assigned partition's end (from the consumer's cached ends)."""
        from confluent_kafka import TopicPartition

        for tp in self.consumer.position(self.consumer.assignment()):
            _low, high = self.consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), cached=True
            )
            if high >= 0 and tp.offset >= 0:
                behind = max(0, high - tp.offset)
                metrics.CONSUMER_LAG.labels(STAGE, tp.topic, str(tp.partition)).set(behind)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions without a commit of this group start at the earlier faust group's."""
        from confluent_kafka import Consumer

        committed = consumer.committed(partitions, timeout=10)
        fresh = [tp for tp in committed if tp.offset < 0]
        if fresh:
            legacy = Consumer(
                {**self.settings.kafka_security().librdkafka(), "group.id": self.settings.app_id}
            )
            try:
                earlier = {tp.partition: tp.offset for tp in legacy.committed(fresh, timeout=10)}
            finally:
                legacy.close()
            for tp in partitions:  # ``earlier`` holds the fresh partitions only
                if earlier.get(tp.partition, -1) >= 0:
                    tp.offset = earlier[tp.partition]
                    log.info(
                        "intake: partition %d starts at the earlier commit %d",
                        tp.partition,
                        tp.offset,
                    )
        consumer.assign(partitions)
        metrics.STAGE_READY.labels(STAGE).set(1)

    def run(self) -> None:
        """Until SIGTERM/SIGINT (or the parent worker is gone): batches, then a clean close."""
        self.consumer.subscribe([self.source, self.operations_topic], on_assign=self._on_assign)
        last_log = last_lag = time.monotonic()
        logged: tuple[Any, ...] = ()
        try:
            while self.running and self.alive():
                self.step()
                if time.monotonic() - last_lag >= LAG_INTERVAL_S:
                    last_lag = time.monotonic()
                    self.observe_lag()
                if time.monotonic() - last_log >= self.settings.stats_interval_s:
                    last_log = time.monotonic()
                    snapshot = (self.accepted, self.counts.as_dict(), self.processing_errors)
                    if snapshot != logged:
                        logged = snapshot
                        log.info(
                            "intake: accepted=%d dead_letters=%s processing_errors=%d",
                            *snapshot,
                        )
        finally:
            self.producer.flush(self.settings.delivery_timeout_s)
            self.consumer.close()

    def stop(self, *_args: Any) -> None:
        self.running = False


def _origin(message: Any) -> Origin:
    return Origin(str(message.topic()), int(message.partition() or 0), int(message.offset() or 0))


def _where(message: Any) -> tuple[str, int]:
    return str(message.topic()), int(message.partition() or 0)


def run_intake(settings: Settings, parent: int = 0) -> None:
    """``omnistitch intake``: the loop until stopped; with ``parent``, also until the worker
    process that started it is gone (so a SIGKILLed worker leaves nothing running)."""
    loop = IntakeLoop(settings, alive=parent_alive(parent) if parent else lambda: True)
    signal.signal(signal.SIGTERM, loop.stop)
    signal.signal(signal.SIGINT, loop.stop)
    log.info("intake: consuming %s as group %s", loop.source, group_id(settings.app_id))
    loop.run()
