"""Fixtures shared by unit and integration tests. Fixtures are factories."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.engine.state import Store

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Factory of names no other test uses: topics, group ids, prefixes."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture(params=["memory", "rocksdb"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Factory of empty stores; every test using it runs over both backends."""
    from pipeline.engine.state import MemoryStore
    from pipeline.replay.stores import RocksDBStore

    opened: list[RocksDBStore] = []

    def make() -> Store:
        if request.param == "memory":
            return MemoryStore()
        store = RocksDBStore(tmp_path / f"rocks-{len(opened)}")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
