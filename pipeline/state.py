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


_DELETED = object()


class StagedStore:
    """Writes held back until ``commit()``: a stage sends its outputs, waits until Kafka has
    them, and only then makes the state change that says they were sent."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: dict[str, Any] = {}

    def get(self, key: str) -> Any | None:
        if key in self.pending:
            value = self.pending[key]
            return None if value is _DELETED else value
        return self.store.get(key)

    def set(self, key: str, value: Any) -> None:
        self.pending[key] = value

    def delete(self, key: str) -> None:
        self.pending[key] = _DELETED

    def commit(self) -> None:
        for key, value in self.pending.items():
            if value is _DELETED:
                self.store.delete(key)
            else:
                self.store.set(key, value)
        self.pending.clear()
