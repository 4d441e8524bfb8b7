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

import csv
import hashlib
import io
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.mapping import (
    TRUTH_PROPERTY,
    MappingFailure,
    birth_date,
    identifiers,
    invalid_fields,
    parse_time,
    text,
    traits,
)
from connectors.sink import EventSink, Outgoing, SinkConfig, refusal
from pipeline.clock import Clock, system_clock
from pipeline.contract import Channel, ChannelEvent
from pipeline.dead_letters import HEADER_PREFIX, Reason, Rejection
from pipeline.exceptions import DeliveryError, MappingConfigError, RegistryUnavailableError
from pipeline.intake import admissible
from pipeline.settings import Settings
from pipeline.transport import KafkaSecurity, kafka_conf

log = logging.getLogger("omnistitch.files")

CONNECTOR = "files"
SUFFIXES = (".csv", ".jsonl")
FINGERPRINT_BYTES = 1024
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "ja", "j", "x"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "nein"})


class FileMapping(BaseModel):
    """How the columns of one kind of export become a ChannelEvent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    event_type: str
    source: str = Field(description="Source name; '{column}' placeholders are filled per row.")
    occurred_at: str = Field(description="Column with the time of the row.")
    event_id: list[str] = Field(
        description="Columns that identify the row; if one is blank, event_id_fallback; if "
        "one of those is blank too: the file's id and line."
    )
    event_id_fallback: list[str] = Field(default_factory=list)
    identifiers: dict[str, str] = Field(default_factory=dict, description="column → namespace")
    traits: dict[str, str] = Field(default_factory=dict, description="column → trait")
    properties: dict[str, str] = Field(default_factory=dict, description="column → property")
    consent: dict[str, str] = Field(default_factory=dict, description="column → purpose")


DEFAULT_MAPPINGS: dict[str, FileMapping] = {
    "pos": FileMapping(
        channel=Channel.store,
        event_type="purchase",
        source="pos-{store_id}",
        occurred_at="timestamp",
        event_id=["store_id", "receipt_id"],
        identifiers={"loyalty_card": "loyalty_id", "email": "email", "phone": "phone"},
        traits={"first_name": "first_name", "last_name": "last_name", "postal_code": "postal_code"},
        properties={
            "receipt_id": "receipt_id",
            "store_id": "store_id",
            "till_id": "till_id",
            "amount": "amount",
            "currency": "currency",
            "items": "items",
            "payment": "payment",
        },
    ),
    "crm": FileMapping(
        channel=Channel.crm,
        event_type="crm_record_updated",
        source="crm-export",
        occurred_at="updated_at",
        event_id=["customer_id", "updated_at"],
        # Records without a customer id yet (a paper sign-up at the till): the CRM's record id.
        event_id_fallback=["record_id"],
        identifiers={
            "customer_id": "customer_id",
            "email": "email",
            "phone": "phone",
            "loyalty_id": "loyalty_id",
        },
        traits={
            "first_name": "first_name",
            "last_name": "last_name",
            "birth_date": "birth_date",
            "street": "street",
            "house_number": "house_number",
            "postal_code": "postal_code",
            "city": "city",
            "country": "country",
        },
        consent={"consent_email": "email_marketing", "consent_sms": "sms_marketing"},
    ),
}


def load_mappings(overrides_json: str) -> dict[str, FileMapping]:
    """The default mappings, with kinds replaced or added by a JSON object (kind → mapping)."""
    mappings = dict(DEFAULT_MAPPINGS)
    if overrides_json.strip():
        try:
            raw = json.loads(overrides_json)
            if not isinstance(raw, dict):
                raise MappingConfigError("file mappings: a JSON object of kind → mapping")
            for kind, spec in raw.items():
                mappings[kind] = FileMapping.model_validate(spec)
        except (json.JSONDecodeError, ValidationError) as exc:
            raise MappingConfigError(f"file mappings: {exc}") from exc
    return mappings


def _consent(value: Any) -> bool | None:
    word = (text(value) or "").lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def map_row(
    row: Mapping[str, Any],
    mapping: FileMapping,
    *,
    file_id: str,
    line: int,
    received_at: datetime,
) -> ChannelEvent | Rejection:
    """One exported row as a ChannelEvent, or why not (column names only, never values)."""
    try:
        stamp = row.get(mapping.occurred_at)
        if text(stamp) is None:
            raise MappingFailure(f"{mapping.occurred_at}: missing")
        event_id = f"{file_id}:{line}"
        for columns in (mapping.event_id, mapping.event_id_fallback):
            id_parts = [text(row.get(column)) for column in columns]
            if columns and all(id_parts):
                event_id = f"{file_id.split(':')[0]}-" + "-".join(p or "" for p in id_parts)
                break
        values = {trait: row.get(column) for column, trait in mapping.traits.items()}
        if "birth_date" in values:
            values["birth_date"] = birth_date(values["birth_date"])
        properties = {
            name: value
            for column, name in mapping.properties.items()
            if (value := text(row.get(column))) is not None
        }
        truth = text(row.get(TRUTH_PROPERTY))
        if truth:
            properties[TRUTH_PROPERTY] = truth
        consent = {
            purpose: flag
            for column, purpose in mapping.consent.items()
            if (flag := _consent(row.get(column))) is not None
        }
        fill = {k: (text(v) or "unknown") for k, v in row.items() if isinstance(k, str)}
        try:
            source = mapping.source.format_map(_Default(fill))
        except (ValueError, IndexError) as exc:
            raise MappingConfigError(f"source template: {exc}") from exc
        return admissible(
            ChannelEvent(
                event_id=event_id,
                event_type=mapping.event_type,
                channel=mapping.channel,
                source=source,
                occurred_at=parse_time(stamp, mapping.occurred_at),
                received_at=received_at,
                identifiers=identifiers(
                    (namespace, row.get(column))
                    for column, namespace in mapping.identifiers.items()
                ),
                traits=traits(values),
                properties=properties,
                consent=consent or None,
            )
        )
    except MappingFailure as exc:
        return Rejection(Reason.unmappable_record, f"line {line}: {exc}")
    except ValidationError as exc:
        return Rejection(Reason.unmappable_record, f"line {line}: {invalid_fields(exc)}")


class _Default(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "unknown"


# -- reading files -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRow:
    line: int  # 1-based number of the row's first line in the file
    end: int  # byte offset just after the row
    raw: bytes
    parsed: dict[str, Any] | Rejection


def _records(data: bytes, start: int, first_line: int) -> Iterator[tuple[int, int, bytes]]:
    """Complete records from ``data`` (which begins at byte ``start``): a CSV record may span
    lines inside quotes; an unterminated last line is left for later."""
    line_no, offset, pending, pending_line, quotes = first_line, 0, b"", first_line, 0
    while True:
        nl = data.find(b"\n", offset)
        if nl < 0:
            return
        chunk = data[offset : nl + 1]
        offset = nl + 1
        if not pending:
            pending_line = line_no
        pending += chunk
        quotes += chunk.count(b'"')
        line_no += 1
        if quotes % 2 == 0:
            yield pending_line, start + offset, pending
            pending, quotes = b"", 0


def read_rows(
    path: Path, offset: int, first_line: int, header: list[str] | None, limit: int
) -> list[RawRow]:
    """Up to ``limit`` complete rows from ``offset``; CSV rows need the header's columns."""
    size = 1 << 20
    while True:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(size)
        rows: list[RawRow] = []
        for line, end, raw in _records(data, offset, first_line):
            if len(rows) >= limit:
                break
            rows.append(RawRow(line, end, raw, _parse(path, raw, header, line)))
        if len(rows) >= limit or len(data) < size:
            return rows
        size *= 2  # a chunk too small for ``limit`` rows: read more


def _parse(
    path: Path, raw: bytes, header: list[str] | None, line: int
) -> dict[str, Any] | Rejection:
    try:
        decoded = raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError:
        return Rejection(Reason.invalid_utf8, f"line {line}: not UTF-8")
    if not decoded.strip():
        return Rejection(Reason.empty_record, f"line {line}: blank")
    if path.suffix == ".jsonl":
        try:
            value = json.loads(decoded)
        except json.JSONDecodeError as exc:
            return Rejection(Reason.malformed_json, f"line {line}: {exc.msg}")
        if not isinstance(value, dict):
            return Rejection(Reason.malformed_json, f"line {line}: not a JSON object")
        return value
    assert header is not None
    cells = next(csv.reader(io.StringIO(decoded)), [])
    if len(cells) != len(header):
        return Rejection(
            Reason.unmappable_record,
            f"line {line}: {len(cells)} columns, the header has {len(header)}",
        )
    return dict(zip(header, cells, strict=True))


def csv_header(path: Path) -> tuple[list[str], int] | None:
    """The header's column names and the byte offset after it; None until it is complete."""
    with path.open("rb") as fh:
        first = fh.readline()
    if not first.endswith(b"\n"):
        return None
    names = next(csv.reader(io.StringIO(first.decode("utf-8-sig"))), [])
    return [name.strip() for name in names], len(first)


# -- checkpoints -------------------------------------------------------------------------------


class Checkpoint(BaseModel):
    """How far one file was delivered; ``inflight`` names a batch that may be half delivered."""

    fingerprint: str = ""
    fingerprint_bytes: int = 0
    offset: int = 0
    line: int = 1
    rows: int = 0
    dead_letters: int = 0
    inflight: dict[str, Any] | None = None


def fingerprint(path: Path, length: int) -> str:
    with path.open("rb") as fh:
        return hashlib.sha256(fh.read(length)).hexdigest()


class CheckpointStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: str, name: str) -> Path:
        return self.root / kind / f"{name}.json"

    def load(self, kind: str, name: str) -> Checkpoint:
        path = self._path(kind, name)
        return Checkpoint.model_validate_json(path.read_bytes()) if path.exists() else Checkpoint()

    def save(self, kind: str, name: str, checkpoint: Checkpoint) -> None:
        """Atomically: a crash leaves the old or the new checkpoint, never half of one."""
        path = self._path(kind, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        with tmp.open("wb") as fh:
            fh.write(checkpoint.model_dump_json().encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


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
    sink = EventSink(SinkConfig.from_settings(settings, "omnistitch-files"))
    probe = TopicProbe(settings.kafka_security())
    try:
        log.info("watching %s (kinds: %s)", config.drop_dir, ", ".join(sorted(config.mappings)))
        return FileConnector(config, sink, probe).run(once=once, stop=lambda: bool(stopping))
    finally:
        sink.close()
        probe.close()
