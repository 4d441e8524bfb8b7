"""The faust-streaming worker: thin glue between Kafka and the pure pipeline stages.

    events (N partitions) ──intake──▶ events.accepted (1 partition) ──link──▶ customer-ops
    (N partitions, key = customer id) ──profile──▶ profiles (compacted), journeys
                                 └─────────────────────────────▶ identity-changes

1. intake (partitioned): decode and validate; invalid records go to the dead-letter topic. It
   runs on confluent-kafka in a process of its own (pipeline.intake_loop), not in this app.
2. link (one partition, so one writer): the customer graph (pipeline.graph) in the ``graph``
   table; emits identity changes, folds for merges and every event routed to its customer.
3. profile (partitioned by customer id): the ``customers`` table (pipeline.profile); every
   read and write of a customer's state happens while processing a message keyed by that id.

Offsets are committed after a record was handled (at-least-once); repeated records are
recognised by event id (linking) and by the customer's seen event ids (profiles, journeys).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import faust

from pipeline import durability
from pipeline.clock import Clock, system_clock
from pipeline.contract import ChannelEvent, JourneyEvent
from pipeline.dead_letters import (
    DeadLetter,
    DeadLetterCounts,
    Origin,
    Rejection,
    log_processing_error,
    processing_error,
)
from pipeline.exceptions import DecodeError, OutputTooLargeError, RegistryUnavailableError
from pipeline.graph import Graph, to_ms
from pipeline.profile import (
    Journal,
    ProfileBook,
    fold_message,
    possible_message,
    route_message,
)
from pipeline.serialization import RegistrySerde, Serde
from pipeline.settings import Settings
from pipeline.state import StagedStore
from pipeline.topics import (
    ACCEPTED,
    CUSTOMER_OPS,
    DEAD_LETTERS,
    IDENTITY_CHANGES,
    JOURNEYS,
    PROFILES,
)

log = logging.getLogger("omnistitch.worker")

REGISTRY_RETRY_MAX_S = 30.0
# Far below Kafka's default 1 MiB message size: a table value (changelog record) or an output
# larger than this is refused before anything is written (limits make it unreachable).
MAX_STATE_VALUE_BYTES = 512 * 1024
MAX_OUTPUT_BYTES = 900 * 1024


def broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap_servers.split(",") if host.strip()]


class TableStore:
    """The Store contract on a faust table (values JSON, like the table's changelog)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> Any | None:
        return self.table.get(key)

    def set(self, key: str, value: Any) -> None:
        self.table[key] = value

    def delete(self, key: str) -> None:
        if key in self.table:
            del self.table[key]


def new_app(settings: Settings) -> faust.App:
    """A faust app with the worker's configuration (broker, RocksDB stores, commits at
    least once with durable table writes), no agents yet: the worker's and the benchmarks'."""
    durability.install()
    return faust.App(
        settings.app_id,
        broker=broker_urls(settings.bootstrap_servers),
        broker_credentials=settings.kafka_security().faust(),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 4),
    )


def raw_topic(app: faust.App, name: str, partitions: int | None = None) -> Any:
    """A topic of bytes keys and values: the stages (de)serialise records themselves."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def build_app(
    settings: Settings, clock: Clock = system_clock, serde: Serde | None = None
) -> faust.App:
    """The worker's faust app, configured from settings."""
    codec = serde or RegistrySerde.from_access(settings.registry_access())
    stitch = settings.stitch_config()
    prefix = settings.topic_prefix
    app = new_app(settings)
    rocks = {
        "block_cache_size": settings.rocksdb_block_cache_mb * 1024 * 1024,
        "block_cache_compressed_size": settings.rocksdb_block_cache_mb * 1024 * 1024 // 4,
        "write_buffer_size": settings.rocksdb_write_buffer_mb * 1024 * 1024,
        "max_write_buffer_number": 2,
    }

    accepted_topic = raw_topic(app, ACCEPTED.name(prefix), partitions=1)
    ops_topic = raw_topic(app, CUSTOMER_OPS.name(prefix), partitions=settings.partitions)
    dead_topic = raw_topic(app, DEAD_LETTERS.name(prefix))
    profiles_topic = raw_topic(app, PROFILES.name(prefix))
    journeys_topic = raw_topic(app, JOURNEYS.name(prefix))
    changes_topic = raw_topic(app, IDENTITY_CHANGES.name(prefix))
    graph_table = app.Table("graph", partitions=1, options=rocks)
    customers_table = app.Table("customers", partitions=settings.partitions, options=rocks)
    # Every record's table writes are staged and committed only when it was handled whole.
    graph_state = StagedStore(TableStore(graph_table), MAX_STATE_VALUE_BYTES)
    customers_state = StagedStore(TableStore(customers_table), MAX_STATE_VALUE_BYTES)
    graph = Graph(graph_state, stitch.rules, stitch.matching)
    journal = Journal(int(settings.journey_window_s * 1000))
    book = ProfileBook(customers_state, stitch.survivorship, journal=journal, rules=stitch.rules)
    tail_stale = [True]

    @app.on_partitions_assigned.connect
    def _assigned(_app: Any, /, *_args: Any, signal: Any, **_kwargs: Any) -> None:
        tail_stale[0] = True

    def read_journey_tail(now_ms: int) -> dict[str, int]:
        """Event ids (and record times) of the journey events written in the last window:
        what reached Kafka, whatever the state says (see pipeline.profile.Journal)."""
        from confluent_kafka import Consumer, TopicPartition

        topic = JOURNEYS.name(prefix)
        consumer = Consumer(
            {
                **settings.kafka_security().librdkafka(),
                "group.id": f"{settings.app_id}-journey-tail",
                "enable.auto.commit": False,
            }
        )
        found: dict[str, int] = {}
        since = now_ms - int(settings.journey_window_s * 1000)
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            wanted = [TopicPartition(topic, p, since) for p in metadata.partitions]
            ends = []
            for tp in consumer.offsets_for_times(wanted, timeout=10):
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, tp.partition), timeout=10
                )
                if tp.offset >= 0 and high > tp.offset:
                    ends.append((tp, high))
            consumer.assign([tp for tp, _ in ends])
            remaining = {tp.partition: high for tp, high in ends}
            while remaining:
                msg = consumer.poll(2.0)
                if msg is None:
                    break
                value, offset, partition = msg.value(), msg.offset(), msg.partition()
                if msg.error() or value is None or offset is None or partition is None:
                    continue
                record = codec.decode(topic, value, JourneyEvent)
                found[record["event"]["event_id"]] = msg.timestamp()[1]
                if offset + 1 >= remaining.get(partition, 0):
                    remaining.pop(partition, None)
        finally:
            consumer.close()
        return found

    counts = DeadLetterCounts()
    stats = {"linked": 0, "profiled": 0, "processing_errors": 0}
    # (topic, key, value): what handling one record sends, once its state is committed.
    Outputs = list[tuple[Any, bytes, bytes | None]]

    async def dead_letter(
        message: Any, rejection: Rejection, stage: str | None = None, error: str | None = None
    ) -> None:
        letter = DeadLetter(
            Origin(message.topic, message.partition, message.offset),
            rejection,
            message.key,
            message.value,
            clock(),
            stage=stage,
            exception=error,
        ).bounded()
        await dead_topic.send(key=message.key, value=letter.value, headers=letter.headers())
        counts.add(rejection.reason)
        log.info(
            "dead letter: reason=%s origin=%s/%d@%d",
            rejection.reason,
            message.topic,
            message.partition,
            message.offset,
        )

    async def guarded(
        stage: str,
        message: Any,
        work: Callable[[Any], Outputs | Rejection],
        states: tuple[StagedStore, ...] = (),
    ) -> bool:
        """Handle one record: its state changes are committed and its outputs sent, or (when
        handling raised) nothing is written and the record becomes a dead letter with reason
        processing_error. A schema registry that cannot be reached is waited for instead."""
        delay = 0.5
        while True:
            try:
                outcome = work(message)
                if isinstance(outcome, list):
                    for _topic, _key, value in outcome:
                        if value is not None and len(value) > MAX_OUTPUT_BYTES:
                            raise OutputTooLargeError(f"{len(value)} bytes")
                    for state in states:
                        state.commit()
                break
            except RegistryUnavailableError as exc:
                for state in states:
                    state.rollback()
                # Not the record's fault: wait and retry, the offset stays uncommitted.
                log.warning("schema registry unavailable, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REGISTRY_RETRY_MAX_S)
            except DecodeError as exc:
                for state in states:
                    state.rollback()
                outcome = exc.rejection
                break
            except Exception as exc:
                for state in states:
                    state.rollback()
                await _failed(stage, message, exc)
                return False
        if isinstance(outcome, Rejection):
            await dead_letter(message, outcome)
            return False
        try:
            for topic, key, value in outcome:
                await topic.send(key=key, value=value)
        except Exception as exc:
            await _failed(f"{stage}.send", message, exc)
            return False
        return True

    async def _failed(stage: str, message: Any, exc: Exception) -> None:
        stats["processing_errors"] += 1
        log_processing_error(
            log, stage, exc, Origin(message.topic, message.partition, message.offset)
        )
        await dead_letter(message, processing_error(stage, exc), stage, type(exc).__name__)

    def decode_event(topic: str, data: bytes) -> dict[str, Any]:
        return codec.decode(topic, data, ChannelEvent)

    def linking(message: Any) -> Outputs:
        accepted = ChannelEvent.from_avro(decode_event(ACCEPTED.name(prefix), message.value))
        now = clock()
        nodes, _dropped = stitch.normaliser.nodes(accepted.identifiers, accepted.traits)
        linked = graph.link(accepted, nodes, now)
        out: Outputs = [
            (
                changes_topic,
                change.customer_id.encode(),
                codec.encode(IDENTITY_CHANGES.name(prefix), change),
            )
            for change in linked.changes
        ]
        out += [
            (ops_topic, fold.loser.encode(), _json(fold_message(fold.winner)))
            for fold in linked.folds
        ]
        for a, b in linked.possible:
            out.append((ops_topic, a.encode(), _json(possible_message(b))))
            out.append((ops_topic, b.encode(), _json(possible_message(a))))
        route = route_message(accepted, linked.nodes, linked.duplicate)
        out.append((ops_topic, linked.customer_id.encode(), _json(route)))
        return out

    @app.agent(accepted_topic, concurrency=1)
    async def link(stream: Any) -> None:
        async for event in stream.events():
            if await guarded("link", event.message, linking, (graph_state,)):
                stats["linked"] += 1

    def profiling(message: Any) -> Outputs:
        customer_id = message.key.decode()
        produced = book.handle(customer_id, json.loads(message.value), clock())
        out: Outputs = [(profiles_topic, gone.encode(), None) for gone in produced.tombstones]
        out += [
            (
                profiles_topic,
                snapshot.customer_id.encode(),
                codec.encode(PROFILES.name(prefix), snapshot),
            )
            for snapshot in produced.profiles
        ]
        out += [
            (
                journeys_topic,
                journey.customer_id.encode(),
                codec.encode(JOURNEYS.name(prefix), journey),
            )
            for journey in produced.journeys
        ]
        out += [
            (ops_topic, target.encode(), _json(forward)) for target, forward in produced.forwards
        ]
        return out

    @app.agent(ops_topic, concurrency=1)
    async def profile(stream: Any) -> None:
        async for event in stream.events():
            if tail_stale[0]:
                tail_stale[0] = False
                now_ms = to_ms(clock())
                tail = await asyncio.get_running_loop().run_in_executor(
                    None, read_journey_tail, now_ms
                )
                journal.reset(tail, now_ms)
                log.info("journey tail read: %d journey events of the last window", len(tail))
            if await guarded("profile", event.message, profiling, (customers_state,)):
                stats["profiled"] += 1

    last_logged: list[tuple[Any, ...]] = []

    @app.timer(settings.stats_interval_s)
    async def log_counts() -> None:
        snapshot = (
            stats["linked"],
            stats["profiled"],
            counts.as_dict(),
            stats["processing_errors"],
            dict(graph.stats),
        )
        if not last_logged or last_logged[-1] != snapshot:
            log.info(
                "stitching: linked=%d profile_messages=%d dead_letters=%s "
                "processing_errors=%d graph=%s",
                *snapshot,
            )
            last_logged[:] = [snapshot]

    return app
