"""File connectors: store (POS) and CRM exports, CSV or JSON lines, dropped into a folder.

``<drop_dir>/<kind>/<file>.csv|.jsonl`` is read with the column mapping of ``kind`` (defaults:
``pos`` and ``crm`` below; override or add kinds with OMNISTITCH_FILE_MAPPINGS). Rows are mapped
by the pure ``map_row``; rows that cannot be mapped go to the dead-letter topic with the reason,
the file and the line number, and their original bytes.

Exactly once per row, across crashes, without Kafka transactions: each file has a checkpoint
(``<checkpoint_dir>/<kind>/<file>.json``, written atomically) with the byte offset up to which
rows were acknowledged by Kafka. Before a batch is sent, the checkpoint records it as in flight,
with the end offsets of the events and dead-letter topics at that moment. If the process dies
with a batch in flight, the restart reads both topics from those offsets, finds which rows of
the batch already arrived (by event id, or by dead-letter origin) and sends only the rest.
Event ids are derived from the row (e.g. store + receipt id), so a re-exported row is also
recognised downstream as the same event.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.files.checkpoints import FINGERPRINT_BYTES, Checkpoint, CheckpointStore, fingerprint
from connectors.files.mappings import (
    FileMapping,
    load_mappings,
    map_row,
)
from connectors.files.reading import RawRow, csv_header, read_rows
from connectors.sink import EventSink, Outgoing, refusal
from pipeline.clock import Clock, system_clock
from pipeline.contract.dead_letters import HEADER_PREFIX, Rejection
from pipeline.contract.models import ChannelEvent
from pipeline.exceptions import DeliveryError, RegistryUnavailableError
from pipeline.settings import Settings
from pipeline.stream.transport import KafkaSecurity, kafka_conf

log = logging.getLogger("omnistitch.files")

CONNECTOR = "files"
SUFFIXES = (".csv", ".jsonl")


# -- reading files -----------------------------------------------------------------------------


# -- checkpoints -------------------------------------------------------------------------------


# -- the connector -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FileConnectorConfig:
    drop_dir: Path
    checkpoint_dir: Path
    mappings: Mapping[str, FileMapping]
    batch_rows: int = 500
    poll_interval_s: float = 1.0
    retry_backoff_s: float = 2.0


class TopicProbe:
    """End offsets before a batch, and what arrived since (for the recovery of a batch)."""

    def __init__(self, bootstrap_servers: str | KafkaSecurity) -> None:
        from confluent_kafka import Consumer

        self.consumer = Consumer(
            {
                **kafka_conf(bootstrap_servers),
                "group.id": f"omnistitch-files-probe-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )

    def ends(self, topic: str) -> dict[str, int]:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return {
                str(p): self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions
            }
        except KafkaException as exc:  # broker unreachable or leaders moving: retry later
            raise DeliveryError(f"end offsets of {topic}: {exc.args[0].str()}") from exc

    def arrived(self, topic: str, since: Mapping[str, int]) -> list[Any]:
        """Every message of ``topic`` from ``since`` to the current end."""
        from confluent_kafka import TopicPartition

        until = self.ends(topic)
        todo = {p: end for p, end in until.items() if end > since.get(p, 0)}
        if not todo:
            return []
        self.consumer.assign([TopicPartition(topic, int(p), since.get(p, 0)) for p in todo])
        got: list[Any] = []
        deadline = time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            for msg in self.consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                got.append(msg)
                if (msg.offset() or 0) + 1 >= todo.get(str(msg.partition()), 0):
                    todo.pop(str(msg.partition()), None)
        self.consumer.unassign()
        if todo:
            raise DeliveryError(f"could not read back {topic} to recover an in-flight batch")
        return got

    def close(self) -> None:
        self.consumer.close()


class FileConnector:
    def __init__(
        self,
        config: FileConnectorConfig,
        sink: EventSink,
        probe: TopicProbe,
        clock: Clock = system_clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.sink = sink
        self.probe = probe
        self.clock = clock
        self.sleep = sleep
        self.checkpoints = CheckpointStore(config.checkpoint_dir)
        self._warned: set[Path] = set()

    def files(self) -> list[tuple[str, Path]]:
        found: list[tuple[str, Path]] = []
        if not self.config.drop_dir.exists():
            return found
        for folder in sorted(p for p in self.config.drop_dir.iterdir() if p.is_dir()):
            for path in sorted(folder.iterdir()):
                if path.suffix not in SUFFIXES or not path.is_file():
                    continue
                if folder.name not in self.config.mappings:
                    if path not in self._warned:
                        self._warned.add(path)
                        log.warning(
                            "no mapping for kind %r: %s is not read (kinds: %s)",
                            folder.name,
                            path.name,
                            ", ".join(sorted(self.config.mappings)),
                        )
                    continue
                found.append((folder.name, path))
        return found

    def run(self, once: bool = False, stop: Callable[[], bool] = lambda: False) -> dict[str, int]:
        """Deliver every complete row of every file; ``once``: return when all are done."""
        totals = {"rows": 0, "dead_letters": 0}
        while not stop():
            progressed = False
            for kind, path in self.files():
                try:
                    rows, letters = self.deliver_file(kind, path)
                except (DeliveryError, RegistryUnavailableError) as exc:
                    log.warning("%s/%s: %s; retrying", kind, path.name, type(exc).__name__)
                    self.sleep(self.config.retry_backoff_s)
                    progressed = True
                    continue
                totals["rows"] += rows
                totals["dead_letters"] += letters
                progressed = progressed or bool(rows or letters)
            if once and not progressed:
                return totals
            if not progressed:
                self.sleep(self.config.poll_interval_s)
        return totals

    def _file_id(self, kind: str, path: Path, checkpoint: Checkpoint) -> str:
        return f"{kind}:{path.name}:{checkpoint.fingerprint[:12]}"

    def _start(self, kind: str, path: Path) -> Checkpoint | None:
        """The file's checkpoint, or a fresh one for a new or replaced file."""
        checkpoint = self.checkpoints.load(kind, path.name)
        size = path.stat().st_size
        length = min(size, FINGERPRINT_BYTES)
        if checkpoint.fingerprint_bytes and size >= checkpoint.fingerprint_bytes:
            same = fingerprint(path, checkpoint.fingerprint_bytes) == checkpoint.fingerprint
            if same and checkpoint.fingerprint_bytes >= length:
                return checkpoint
            if same:  # the file grew past what was fingerprinted: widen the fingerprint
                return checkpoint.model_copy(
                    update={"fingerprint": fingerprint(path, length), "fingerprint_bytes": length}
                )
        if checkpoint.fingerprint_bytes:
            log.warning("%s/%s was replaced: reading it from the start", kind, path.name)
        if length == 0:
            return None
        return Checkpoint(fingerprint=fingerprint(path, length), fingerprint_bytes=length)

    def deliver_file(self, kind: str, path: Path) -> tuple[int, int]:
        """Deliver the file's next batches; returns (events, dead letters) delivered now."""
        checkpoint = self._start(kind, path)
        if checkpoint is None:
            return 0, 0
        header: list[str] | None = None
        if path.suffix == ".csv":
            found = csv_header(path)
            if found is None:
                return 0, 0
            header, after_header = found
            if checkpoint.offset < after_header:
                checkpoint = checkpoint.model_copy(update={"offset": after_header, "line": 2})
        delivered = letters = 0
        if checkpoint.inflight is not None:
            checkpoint, rows, dead = self._recover(kind, path, header, checkpoint)
            delivered, letters = delivered + rows, letters + dead
        while True:
            batch = read_rows(
                path, checkpoint.offset, checkpoint.line, header, self.config.batch_rows
            )
            if not batch:
                return delivered, letters
            checkpoint, rows, dead = self._send(kind, path, checkpoint, batch, skip=None)
            delivered, letters = delivered + rows, letters + dead

    def _outgoing(
        self, kind: str, path: Path, checkpoint: Checkpoint, row: RawRow
    ) -> tuple[Outgoing, str]:
        """The row's event or dead letter, and its key for recovery."""
        now = self.clock()
        where = f"{kind}/{path.name}"
        parsed = row.parsed
        result: ChannelEvent | Rejection | None = parsed if isinstance(parsed, Rejection) else None
        if isinstance(parsed, dict):
            result = map_row(
                parsed,
                self.config.mappings[kind],
                file_id=self._file_id(kind, path, checkpoint),
                line=row.line,
                received_at=now,
            )
        if isinstance(result, ChannelEvent):
            return result, f"event:{result.event_id}"
        assert result is not None
        return refusal(CONNECTOR, where, result, row.raw, now, row.line), f"line:{row.line}"

    def _send(
        self,
        kind: str,
        path: Path,
        checkpoint: Checkpoint,
        batch: list[RawRow],
        skip: set[str] | None,
    ) -> tuple[Checkpoint, int, int]:
        records = [self._outgoing(kind, path, checkpoint, row) for row in batch]
        if skip is None:
            inflight = {
                "count": len(batch),
                "end": batch[-1].end,
                "end_line": batch[-1].line + batch[-1].raw.count(b"\n"),
                "events": self.probe.ends(self.sink.events_topic),
                "dead_letters": self.probe.ends(self.sink.dead_letters_topic),
            }
            self.checkpoints.save(
                kind, path.name, checkpoint.model_copy(update={"inflight": inflight})
            )
        todo = [record for record, key in records if skip is None or key not in skip]
        self.sink.deliver(todo)
        events = sum(isinstance(record, ChannelEvent) for record in todo)
        done = checkpoint.model_copy(
            update={
                "offset": batch[-1].end,
                "line": batch[-1].line + batch[-1].raw.count(b"\n"),
                "rows": checkpoint.rows + events,
                "dead_letters": checkpoint.dead_letters + len(todo) - events,
                "inflight": None,
            }
        )
        self.checkpoints.save(kind, path.name, done)
        return done, events, len(todo) - events

    def _recover(
        self, kind: str, path: Path, header: list[str] | None, checkpoint: Checkpoint
    ) -> tuple[Checkpoint, int, int]:
        """Finish a batch that was in flight when the process stopped, without duplicates."""
        assert checkpoint.inflight is not None
        inflight = checkpoint.inflight
        arrived: set[str] = set()
        for msg in self.probe.arrived(self.sink.events_topic, inflight["events"]):
            if msg.key():
                arrived.add(f"event:{msg.key().decode()}")
        origin = f"{CONNECTOR}:{kind}/{path.name}"
        for msg in self.probe.arrived(self.sink.dead_letters_topic, inflight["dead_letters"]):
            headers = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
            if headers.get(f"{HEADER_PREFIX}origin.topic") == origin:
                arrived.add(f"line:{headers.get(f'{HEADER_PREFIX}origin.offset')}")
        batch = [
            row
            for row in read_rows(
                path, checkpoint.offset, checkpoint.line, header, int(inflight["count"])
            )
            if row.end <= inflight["end"]
        ]
        log.info(
            "%s/%s: recovering an in-flight batch of %d rows (%d already delivered)",
            kind,
            path.name,
            len(batch),
            len(arrived),
        )
        if not batch:
            done = checkpoint.model_copy(update={"inflight": None})
            self.checkpoints.save(kind, path.name, done)
            return done, 0, 0
        return self._send(kind, path, checkpoint, batch, skip=arrived)


def run_files(settings: Settings, once: bool, drop_dir: Path | None = None) -> dict[str, int]:
    """``omnistitch files``: watch the drop folder (``once``: deliver what is there, then stop)."""
    import signal

    config = FileConnectorConfig(
        drop_dir=drop_dir or settings.drop_dir,
        checkpoint_dir=settings.checkpoint_dir,
        mappings=load_mappings(settings.file_mappings),
        batch_rows=settings.file_batch_rows,
        poll_interval_s=settings.file_poll_interval_s,
    )
    for kind in config.mappings:
        (config.drop_dir / kind).mkdir(parents=True, exist_ok=True)
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    sink = EventSink.from_settings(settings, "omnistitch-files")
    probe = TopicProbe(settings.kafka_security())
    server = None
    if settings.metrics_port and not once:  # a long-running connector: /metrics and health
        from pipeline.metrics import probe_server

        server = probe_server(
            settings.metrics_port,
            lambda: not stopping,
            lambda: sink.connected(2.0),
            host=settings.metrics_host,
        )
    try:
        log.info("watching %s (kinds: %s)", config.drop_dir, ", ".join(sorted(config.mappings)))
        return FileConnector(config, sink, probe).run(once=once, stop=lambda: bool(stopping))
    finally:
        if server is not None:
            server.shutdown()
        sink.close()
        probe.close()
