"""Store backends outside the pure core: a local RocksDB (rocksdict) with bounded memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rocksdict import Options, Rdict

from pipeline.compaction import purging_compaction


def bounded_options(write_buffer_mb: int = 16, max_write_buffers: int = 2) -> Options:
    """RocksDB options with a bounded memtable budget."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(write_buffer_mb * 1024 * 1024)
    options.set_max_write_buffer_number(max_write_buffers)
    return options


class RocksDBStore:
    """The Store contract on a local RocksDB; values are JSON, like a faust table's."""

    def __init__(self, path: Path, options: Options | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), options or bounded_options())

    def get(self, key: str) -> Any | None:
        raw = self.db.get(key.encode())
        return None if raw is None else json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self.db[key.encode()] = json.dumps(value, separators=(",", ":")).encode()

    def delete(self, key: str) -> None:
        del self.db[key.encode()]

    def purge(self) -> None:
        """Deleted values out of the files too: the memtable flushed, then every level
        compacted (an erase; RocksDB keeps deleted values in its log and tables until then)."""
        self.db.flush()
        self.db.compact_range(None, None, purging_compaction())

    def close(self) -> None:
        self.db.close()
