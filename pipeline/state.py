"""The state contract of the pure stitching stages: a small key-value interface.

The stages only ever call ``get``, ``set`` and ``delete`` with string keys and JSON-like values,
so the same logic runs over a dict (unit tests, in-memory replay), a local RocksDB (replay with
``--store rocksdb``, see pipeline.stores) and a faust table (the worker, see pipeline.app).
"""

from __future__ import annotations

from typing import Any, Protocol


class Store(Protocol):
    def get(self, key: str) -> Any | None: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryStore:
    """A dict behind the Store contract."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any | None:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def __len__(self) -> int:
        return len(self.data)
