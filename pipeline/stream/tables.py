"""The Store contract on a faust table (pipeline.stream.app): the worker reads and writes the
RocksDB partition of the batch record it handles and sends the changelog itself."""

from __future__ import annotations

from json.encoder import encode_basestring_ascii
from typing import Any

import msgspec
from faust.types import TP

from pipeline.compaction import purging_compaction
from pipeline.stream.delivery import Output


def _table_key(key: str) -> bytes:
    """A table key as faust's JSON key serializer writes it (a JSON string, ASCII-escaped):
    recovery decodes changelog keys with it, and stores written by earlier versions hold
    these bytes."""
    return encode_basestring_ascii(key).encode()


class TableStore:
    """The Store contract on a faust table whose RocksDB partition and changelog the worker
    writes itself, for one batch record at a time (``bind``).

    ``table[key] = value`` would hand every changelog record to faust's producer buffer, which
    sends one record at a time: measured here, a batch stage writing a few thousand keys per
    second left 64,000 changelog records queued and linked 1,400 events/s. So reads and writes
    go to the RocksDB database of the batch record's partition (where faust keeps the keys of
    that partition) and the changelog records, the exact bytes written, are collected for
    ``changelog()``: the worker sends them with the batch's outputs and waits for every
    acknowledgement before the stream moves on, so a committed offset never precedes its
    state's changelog. Recovery and standbys read the changelog as faust would have written it
    (keys and values JSON).
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.partition = 0
        self.db: Any = None
        self.pending: list[tuple[bytes, bytes | None]] = []

    def bind(self, partition: int) -> None:
        """The batch record now handled is of this partition."""
        self.partition = partition
        self.db = self.table.data._db_for_partition(partition)
        self.pending = []

    def get(self, key: str) -> Any | None:
        found = self.db.get(_table_key(key))
        return None if found is None else msgspec.json.decode(found)

    def set(self, key: str, value: Any) -> None:
        key_bytes, value_bytes = _table_key(key), msgspec.json.encode(value)
        self.db.put(key_bytes, value_bytes)
        self.pending.append((key_bytes, value_bytes))

    def delete(self, key: str) -> None:
        key_bytes = _table_key(key)
        self.db.delete(key_bytes)
        self.pending.append((key_bytes, None))

    def changelog(self) -> list[Output]:
        """The changelog records of the writes since ``bind``."""
        topic = self.table.changelog_topic.get_topic_name()
        out: list[Output] = [(topic, k, v, self.partition) for k, v in self.pending]
        self.pending = []
        return out

    def purge(self) -> None:
        """After an erase: deleted values out of this partition's RocksDB files too (memtable
        flushed, every level compacted)."""
        self.db.flush()
        self.db.compact_range(None, None, purging_compaction())

    def persisted(self, offset: int) -> None:
        """Remember in RocksDB how far the changelog is reflected (as faust does after its own
        changelog sends), so that a restart reads only what follows."""
        topic = self.table.changelog_topic.get_topic_name()
        self.table.data.set_persisted_offset(TP(topic, self.partition), offset)
