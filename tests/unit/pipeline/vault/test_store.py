"""The vault's key store contract, on both backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.exceptions import VaultError
from pipeline.vault.store import (
    KEY_BYTES,
    MAX_IDS_PER_CALL,
    MAX_TAGS,
    KeyStore,
    memory_store,
    rocks_store,
)


@pytest.fixture(params=["memory", "rocksdb"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], KeyStore]]:
    made: list[KeyStore] = []

    def make() -> KeyStore:
        store = memory_store() if request.param == "memory" else rocks_store(tmp_path / "vault")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def test_issue_makes_a_key_once_and_fetch_returns_it(make_store: Callable[[], KeyStore]) -> None:
    store = make_store()
    first = store.issue([("e:1", ["x|aa"]), ("e:2", [])])
    again = store.issue([("e:1", ["x|bb"])])
    assert len(first["e:1"] or b"") == KEY_BYTES
    assert first["e:1"] != first["e:2"]
    assert again["e:1"] == first["e:1"]  # a resent record is sealed under the same key
    assert store.fetch(["e:1", "e:2", "e:unknown"]) == {"e:1": first["e:1"], "e:2": first["e:2"]}


def test_shred_by_id_and_by_tag_and_never_issues_again(make_store: Callable[[], KeyStore]) -> None:
    store = make_store()
    store.issue([("e:1", ["x|alice"]), ("d:9", ["x|alice", "x|other"]), ("e:2", ["x|bob"])])
    store.issue([("e:3", [])])
    assert store.shred(["e:3"], ["x|alice"]) == 3
    assert store.fetch(["e:1", "d:9", "e:3", "e:2"]) == {
        "e:1": None,
        "d:9": None,
        "e:3": None,
        "e:2": store.fetch(["e:2"])["e:2"],
    }
    assert store.issue([("e:1", [])]) == {"e:1": None}  # an erased event is not sealed anew
    assert store.shred([], ["x|other"]) == 0  # its tag went with the key
    assert store.shred(["e:3"], []) == 0  # repeating a shred is harmless


def test_shredded_keys_leave_the_rocksdb_files(tmp_path: Path) -> None:
    store = rocks_store(tmp_path / "vault")
    key = store.issue([("e:1", ["x|alice"])])["e:1"]
    assert key is not None
    store.shred(["e:1"], [])
    store.close()
    contents = b"".join(p.read_bytes() for p in (tmp_path / "vault").rglob("*") if p.is_file())
    assert key not in contents
    reopened = rocks_store(tmp_path / "vault")
    assert reopened.fetch(["e:1"]) == {"e:1": None}
    reopened.close()


def test_limits_are_refused(make_store: Callable[[], KeyStore]) -> None:
    store = make_store()
    with pytest.raises(VaultError):
        store.issue([("", [])])
    with pytest.raises(VaultError):
        store.issue([("e:a|b", [])])
    with pytest.raises(VaultError):
        store.issue([("e:1", [f"x|{n}" for n in range(MAX_TAGS + 1)])])
    with pytest.raises(VaultError):
        store.fetch([f"e:{n}" for n in range(MAX_IDS_PER_CALL + 1)])
    assert store.issue([("e:1", [f"x|{n}" for n in range(MAX_TAGS)])])["e:1"] is not None
    assert store.fetch(["e:1"])["e:1"] is not None
