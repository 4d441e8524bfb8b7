"""The faust-streaming worker: thin glue between Kafka and the stages (pipeline.stream.stages).

    events (N partitions) ──intake──▶ events.accepted.v2 (1 partition, EventBatch records)
    ──link──▶ customer-ops.v2 (N partitions, OperationBatch records per partition)
    ──profile──▶ profiles (compacted), journeys;   link ──▶ identity-changes

1. intake (partitioned): decode and validate; invalid records go to the dead-letter topic. It
   runs on confluent-kafka in a process of its own (pipeline.stream.intake_loop), not in this app,
   and forwards accepted events in batches (pipeline.stream.batches).
2. link (one partition, so one writer): the customer graph (pipeline.engine.graph) in the ``graph``
   table; emits identity changes, folds for merges and every event routed to its customer.
3. profile (partitioned by customer id): the ``customers`` table (pipeline.engine.profile). An
   OperationBatch on partition p holds only customers whose id hashes to p, so every read and
   write of a customer's state happens while faust processes a record of that customer's
   partition: faust's RocksDB store and changelog pick the partition from the current event
   (faust-streaming #497), and here the current event is the batch record itself.

Each agent handles one batch record at a time (concurrency 1): the stage runs over the batch
and writes each changed key once, the outputs are sent with confluent-kafka and acknowledged
(pipeline.stream.delivery), and only then does the stream move on, so offsets are committed after a
batch was handled (at-least-once); repeats are recognised by event id (linking) and by the
customer's seen event ids (profiles, journeys).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import faust

from pipeline import metrics
from pipeline.clock import Clock, system_clock
from pipeline.configuration import stitch_config
from pipeline.contract.dead_letters import (
    DeadLetter,
    DeadLetterCounts,
    Origin,
    Reason,
    Rejection,
    log_processing_error,
    processing_error,
)
from pipeline.contract.models import CustomerProfile
from pipeline.contract.schemas import CUSTOMER_PROFILE
from pipeline.engine.graph import to_ms
from pipeline.engine.journey import Journal
from pipeline.exceptions import (
    DecodeError,
    RegistryUnavailableError,
    VaultError,
    VaultUnavailableError,
)
from pipeline.settings import Settings
from pipeline.stream import durability
from pipeline.stream.batches import EVENT_BATCH, OPERATION_BATCH
from pipeline.stream.delivery import Output, Sender
from pipeline.stream.observed import Observed
from pipeline.stream.purging import Purger
from pipeline.stream.readback import journey_tail, records_between
from pipeline.stream.serialization import RegistrySerde, Serde
from pipeline.stream.stages import LinkStage, ProfileStage, Topics, offset_key
from pipeline.stream.tables import TableStore
from pipeline.stream.topics import (
    ACCEPTED,
    CUSTOMER_OPS,
    DEAD_LETTERS,
    EVENTS,
    IDENTITY_CHANGES,
    JOURNEYS,
    OPERATION_RESULTS,
    PROFILES,
)
from pipeline.vault.client import VaultClient
from pipeline.vault.sealer import Sealer, shredder
from pipeline.vault.sealing import seal_profile
from pipeline.vault.tables import TableSeal
from pipeline.vault.tags import Tagger

T = TypeVar("T")
log = logging.getLogger("omnistitch.worker")

REGISTRY_RETRY_MAX_S = 30.0
ERASED = Rejection(Reason.erased, "the event carries an identifier of an erased person")


def broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap_servers.split(",") if host.strip()]


def stage_app_id(settings: Settings, stage: str) -> str:
    """The faust app id (consumer group, data folder) of a stateful stage: the linker keeps the
    deployment's app id (its graph table and changelog as before); the profile stage, a
    consumer group of its own since it runs in its own process, ``<app id>.profile``."""
    return settings.app_id if stage == "link" else f"{settings.app_id}.{stage}"


def changelog_name(settings: Settings, table: str) -> str:
    """A table's changelog topic, whatever app holds the table: ``<app id>-<table>-changelog``,
    faust's name when both stages ran in one app."""
    return f"{settings.app_id}-{table}-changelog"


class _NamedChangelogTable(faust.Table):  # type: ignore[type-arg]
    """A faust table whose changelog topic has a given name (not derived from its app id)."""

    changelog_name = ""

    def _changelog_topic_name(self) -> str:
        return self.changelog_name


def _table(app: faust.App, name: str, partitions: int, changelog: str, **options: Any) -> Any:
    table = _NamedChangelogTable(
        app, name=name, partitions=partitions, beacon=app.tables.beacon, options=options
    )
    table.changelog_name = changelog
    return app.tables.add(table)


def new_app(settings: Settings, app_id: str | None = None) -> faust.App:
    """A faust app with the worker's configuration (broker, RocksDB stores, commits at
    least once with durable table writes), no agents yet: the worker's and the benchmarks'."""
    durability.install()
    return faust.App(
        app_id or settings.app_id,
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


def build_app(
    settings: Settings,
    clock: Clock = system_clock,
    serde: Serde | None = None,
    stage: str = "link",
) -> faust.App:
    """The faust app of one stateful stage of the worker (``link`` or ``profile``)."""
    if stage not in ("link", "profile"):
        raise ValueError(f"no faust app for stage {stage!r}")
    codec = serde or RegistrySerde.from_access(settings.registry_access())
    stitch = stitch_config(settings)
    prefix = settings.topic_prefix
    app = new_app(settings, stage_app_id(settings, stage))
    rocks = {
        "block_cache_size": settings.rocksdb_block_cache_mb * 1024 * 1024,
        "block_cache_compressed_size": settings.rocksdb_block_cache_mb * 1024 * 1024 // 4,
        "write_buffer_size": settings.rocksdb_write_buffer_mb * 1024 * 1024,
        "max_write_buffer_number": 2,
    }

    accepted_topic = raw_topic(app, ACCEPTED.name(prefix), partitions=1)
    ops_topic = raw_topic(app, CUSTOMER_OPS.name(prefix), partitions=settings.partitions)
    dead_topic = raw_topic(app, DEAD_LETTERS.name(prefix))
    journal = Journal(int(settings.journey_window_s * 1000))
    tail_stale = [True]

    @app.on_partitions_assigned.connect
    def _assigned(_app: Any, /, *_args: Any, signal: Any, **_kwargs: Any) -> None:
        tail_stale[0] = True

    counts = DeadLetterCounts()
    stats = {"linked": 0, "profiled": 0, "processing_errors": 0}
    topics = Topics(
        events=EVENTS.name(prefix),
        operations=CUSTOMER_OPS.name(prefix),
        changes=IDENTITY_CHANGES.name(prefix),
        profiles=PROFILES.name(prefix),
        journeys=JOURNEYS.name(prefix),
        results=OPERATION_RESULTS.name(prefix),
    )
    # Only the table of this stage (no standby copies of the other's).
    table_name, table_partitions = (
        ("graph", 1) if stage == "link" else ("customers", settings.partitions)
    )
    vault = VaultClient.from_settings(settings)
    secret = settings.erasure_key.get_secret_value()
    seal = None if vault is None or not secret else TableSeal(vault, secret.encode(), table_name)
    if vault is not None and seal is None:
        log.warning("vault without OMNISTITCH_ERASURE_KEY: the %s table is not sealed", table_name)
    table = TableStore(
        _table(app, table_name, table_partitions, changelog_name(settings, table_name), **rocks),
        seal,
    )
    sealer = None if vault is None else Sealer(vault, Tagger.from_settings(settings))
    runner: LinkStage | ProfileStage
    if stage == "link":
        runner = LinkStage(
            table,
            codec,
            topics,
            clock,
            stitch,
            settings.partitions,
            settings.batch_size,
            keep_events=settings.keep_events,
            shred=None if vault is None else shredder(vault),
            seal_result=None
            if sealer is None
            else lambda op, result: sealer.seal_result(op.left, op.right, result),
        )
        avro_name, field = EVENT_BATCH, "events"
    else:
        runner = ProfileStage(
            table, codec, topics, clock, stitch, journal, settings.partitions, settings.batch_size
        )
        avro_name, field = OPERATION_BATCH, "operations"
    sender = Sender(settings)
    this = stage
    observed = Observed(codec, topics.changes)
    purger = Purger(settings.kafka_security())  # handled internal records deleted

    async def dead_letter(
        origin: Origin,
        key: bytes | None,
        value: bytes | None,
        rejection: Rejection,
        stage: str | None = None,
        error: str | None = None,
    ) -> None:
        letter = DeadLetter(
            origin, rejection, key, value, clock(), stage=stage, exception=error
        ).bounded()
        if sealer is not None and letter.value:  # a stage's record is opened data: sealed
            letter = await until_vault("a dead letter", sealer.seal_letter, letter, clock())
        await dead_topic.send(key=key, value=letter.value, headers=letter.headers())
        counts.add(rejection.reason)
        metrics.DEAD_LETTERS.labels(stage or this, rejection.reason.value).inc()
        log.info(
            "dead letter: reason=%s origin=%s/%d@%d",
            rejection.reason,
            origin.topic,
            origin.partition,
            origin.offset,
        )

    async def failed(
        stage: str, origin: Origin, key: bytes | None, value: bytes | None, exc: Exception
    ) -> None:
        stats["processing_errors"] += 1
        metrics.PROCESSING_ERRORS.labels(stage).inc()
        log_processing_error(log, stage, exc, origin)
        await dead_letter(
            origin, key, value, processing_error(stage, exc), stage, type(exc).__name__
        )

    async def handle_batch(message: Any) -> int:
        """One batch record, after any records of its partition that were never handled.

        The stage's table remembers the last offset it handled per input partition
        (``offset_key``), written with the batch's state. faust can commit an offset past
        records no stage handled (seen here when a second worker joined mid-stream: whole batch
        records of the partitions that moved were never handled), so a gap between that offset
        and this record is read back from Kafka and handled first. Returns records handled."""
        table.bind(message.partition)
        last = table.get(offset_key(message.topic, message.partition))
        handled = 0
        if last is not None and message.offset > last + 1:
            missed = await asyncio.get_running_loop().run_in_executor(
                None,
                records_between,
                settings,
                message.topic,
                message.partition,
                last + 1,
                message.offset,
            )
            log.warning(
                "%s: %d records of %s/%d before offset %d were never handled; handling them now",
                stage,
                len(missed),
                message.topic,
                message.partition,
                message.offset,
            )
            for record in missed:
                handled += await handle_record(record)
        return handled + await handle_record(message)

    async def handle_record(message: Any) -> int:
        """Decode, run the stage (its state committed), dead letters for the records that
        failed, then every output and the table's changelog sent and acknowledged; only then
        does the stream move on (and its offset become committable)."""
        origin = Origin(message.topic, message.partition, message.offset)
        started = time.monotonic()
        delay = 0.5
        table.bind(message.partition)
        outputs: list[Output] = []
        handled = 0
        while True:
            try:
                items = codec.decode_record(message.topic, message.value, avro_name)[field]
                outcome = runner.run(items)
            except (RegistryUnavailableError, VaultUnavailableError) as exc:
                runner.rollback()
                # Not the record's fault: wait and retry, the offset stays uncommitted.
                log.warning("registry or vault unavailable, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REGISTRY_RETRY_MAX_S)
                continue
            except DecodeError as exc:
                await dead_letter(origin, message.key, message.value, exc.rejection)
            except Exception as exc:
                runner.rollback()
                await failed(stage, origin, message.key, message.value, exc)
            else:
                if isinstance(runner, LinkStage):
                    for index in runner.erased:  # no key, no payload: only where it was
                        where = runner.origin(index)
                        await dead_letter(where, None, b"", ERASED)
                answers: list[Output] = []
                for index, error in outcome.failures:
                    if isinstance(runner, LinkStage):
                        where, key, value = runner.dead_letter(index)
                        answers += runner.failure_result(index, error)
                    else:
                        where, key, value = origin, message.key, runner.dead_letter(index)
                    await failed(stage, where, key, value, error)
                outputs = outcome.outputs + answers
                handled = len(items) - len(outcome.failures)
            break
        table.set(offset_key(message.topic, message.partition), message.offset)
        if runner.erasing:  # the batch erased a person: no copy left in the state files
            table.purge()
        changelog = await until_vault("the changelog", table.changelog, runner.forgetting)
        if seal is not None and isinstance(runner, ProfileStage):
            outputs = [sealed_profile(output) for output in outputs]
        delivered = await sender.send(changelog + outputs)
        if (changelog[0][0], message.partition) in delivered:
            table.persisted(delivered[(changelog[0][0], message.partition)])
        purger.mark(message.topic, message.partition, message.offset)
        observed.batch(this, handled, outputs, time.monotonic() - started)
        return handled

    async def until_vault(what: str, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)``, waiting while the vault cannot be reached or refuses: what needs it
        here is committed already (a stage's state, a dead letter) and must follow."""
        delay = 0.5
        while True:
            try:
                return call(*args)
            except (VaultUnavailableError, VaultError) as exc:
                log.warning("vault unavailable for %s, retrying in %.1fs: %s", what, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REGISTRY_RETRY_MAX_S)

    def sealed_profile(output: Output) -> Output:
        """A profile on the profiles topic sealed under the data key of its state's table key,
        so that what shreds the state's earlier versions shreds the profile's too."""
        topic, key, value, partition = output
        if topic != topics.profiles or value is None or key is None or seal is None:
            return output
        built = runner.built.get(key.decode()) if isinstance(runner, ProfileStage) else None
        record = built.to_avro() if built else codec.decode(topic, value, CustomerProfile)
        key_id, data_key = seal.data_key("p|" + key.decode())
        sealed = seal_profile(record, data_key, key_id)
        return topic, key, codec.encode_record(topic, CUSTOMER_PROFILE, sealed), partition

    async def link(stream: Any) -> None:
        metrics.STAGE_READY.labels(this).set(1)
        async for event in stream.events():
            stats["linked"] += await handle_batch(event.message)

    async def profile(stream: Any) -> None:
        metrics.STAGE_READY.labels(this).set(1)
        async for event in stream.events():
            if tail_stale[0]:
                tail_stale[0] = False
                now_ms = to_ms(clock())
                tail = await asyncio.get_running_loop().run_in_executor(
                    None, journey_tail, settings, codec, now_ms
                )
                journal.reset(tail, now_ms)
                log.info("journey tail read: %d journey events of the last window", len(tail))
            stats["profiled"] += await handle_batch(event.message)

    if stage == "link":
        app.agent(accepted_topic, name="link", concurrency=1)(link)
    else:
        app.agent(ops_topic, name="profile", concurrency=1)(profile)

    @app.timer(settings.internal_purge_interval_s)
    async def purge_internal() -> None:
        """Handled records of the internal input topic deleted (pipeline.stream.purging)."""
        await asyncio.get_running_loop().run_in_executor(None, purger.purge)
        lag = await asyncio.get_running_loop().run_in_executor(None, purger.lag)
        observed.lag(this, lag)
        await asyncio.get_running_loop().run_in_executor(
            None, observed.state_size, table_name, app.conf.tabledir
        )

    last_logged: list[tuple[Any, ...]] = []

    @app.timer(settings.stats_interval_s)
    async def log_counts() -> None:
        snapshot = (
            stats["linked"],
            stats["profiled"],
            counts.as_dict(),
            stats["processing_errors"],
            dict(runner.graph.stats) if isinstance(runner, LinkStage) else {},
        )
        if not last_logged or last_logged[-1] != snapshot:
            log.info(
                "stitching: linked=%d profile_messages=%d dead_letters=%s "
                "processing_errors=%d graph=%s",
                *snapshot,
            )
            last_logged[:] = [snapshot]

    return app
