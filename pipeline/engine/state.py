"""The state contract of the pure stitching stages: a small key-value interface.

The stages only ever call ``get``, ``set`` and ``delete`` with string keys and JSON-like values,
so the same logic runs over a dict (unit tests, in-memory replay), a local RocksDB (replay with
``--store rocksdb``, see pipeline.replay.stores) and a faust table (the worker, see
pipeline.stream.app).
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import msgspec

from pipeline.exceptions import StateValueTooLargeError


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
    """Writes of one unit of work (a record) held back until ``commit``; ``rollback`` forgets
    them. A record whose handling raises leaves no half-written state behind.

    The inner store must hand out fresh values on ``get`` (RocksDB stores and faust's RocksDB
    tables decode a new object per read); with a shared-object store such as MemoryStore, pass
    ``copy_reads=True``. ``commit`` refuses a value whose JSON form exceeds ``max_value_bytes``
    before anything is written.
    """

    def __init__(self, inner: Store, max_value_bytes: int, copy_reads: bool = False) -> None:
        self.inner = inner
        self.max_value_bytes = max_value_bytes
        self.copy_reads = copy_reads
        self._pending: dict[str, Any] = {}
        # Keys written since ``begin``: what one record of a batch wrote (see check_recent).
        self._recent: set[str] = set()

    def get(self, key: str) -> Any | None:
        if key in self._pending:
            value = self._pending[key]
            return None if value is _DELETED else value
        value = self.inner.get(key)
        return copy.deepcopy(value) if self.copy_reads and value is not None else value

    def set(self, key: str, value: Any) -> None:
        self._pending[key] = value
        self._recent.add(key)

    def delete(self, key: str) -> None:
        self._pending[key] = _DELETED
        self._recent.add(key)

    def begin(self) -> None:
        """A new record of a batch starts: ``check_recent`` looks at its writes only."""
        self._recent.clear()

    def check_recent(self) -> None:
        """Raise StateValueTooLargeError if a value written since ``begin`` is too large."""
        for key in self._recent:
            self._check(key, self._pending[key])

    def _check(self, key: str, value: Any) -> None:
        if value is not _DELETED:
            size = len(msgspec.json.encode(value))
            if size > self.max_value_bytes:
                raise StateValueTooLargeError(
                    f"a {key.split('|', 1)[0]} record of {size} bytes "
                    f"(bound {self.max_value_bytes})"
                )

    def commit(self) -> None:
        """Write every pending key once; nothing at all when a value is too large."""
        try:
            for key, value in self._pending.items():
                self._check(key, value)
        except StateValueTooLargeError:
            self.rollback()
            raise
        for key, value in self._pending.items():
            if value is _DELETED:
                self.inner.delete(key)
            else:
                self.inner.set(key, value)
        self._pending.clear()
        self._recent.clear()

    def rollback(self) -> None:
        self._pending.clear()
        self._recent.clear()
