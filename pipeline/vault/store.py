"""The vault's state: data keys by id, an index of keys by tag, and marks of shredded ids.

One contract, two backends (memory for tests and replay, RocksDB for the service), run by the
same tests. Key scheme (only here):

``k|<key id>``          32 key bytes, then the key's tags joined by ``\\x00``
``t|<tag>|<key id>``    empty: the tag index (a tag is a keyed hash of a normalised identifier,
                        ``x|<hex>``, so the vault can find every key of a person without
                        holding a single identifier)
``s|<key id>``          empty: the id was shredded; it is never issued again (a resent erased
                        event cannot be sealed anew). Ids of table keys and profiles
                        (``REISSUABLE``) get a fresh key instead: what was sealed under the
                        shredded one stays unreadable, what comes after is sealed anew.

Size bounds: a key id at most ``MAX_ID_CHARS``, a tag at most ``MAX_TAG_CHARS``, at most
``MAX_TAGS`` tags per key: one ``k|`` value stays under 5 KiB.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from pipeline.compaction import purging_compaction
from pipeline.exceptions import VaultError

KEY_BYTES = 32
MAX_ID_CHARS = 200
MAX_TAG_CHARS = 80
MAX_TAGS = 50
MAX_IDS_PER_CALL = 5000

Issue = tuple[str, Sequence[str]]  # (key id, tags)
# Key ids whose shredding does not forbid a new key under the same id (pipeline.vault.tables).
REISSUABLE = ("t:",)


def _key(key_id: str) -> bytes:
    return b"k|" + key_id.encode()


def _tag(tag: str, key_id: str) -> bytes:
    return f"t|{tag}|{key_id}".encode()


def _shredded(key_id: str) -> bytes:
    return b"s|" + key_id.encode()


def check_id(key_id: str) -> None:
    if not key_id or len(key_id) > MAX_ID_CHARS or "|" in key_id:
        raise VaultError(f"a key id is empty, has '|' or exceeds {MAX_ID_CHARS} characters")


def check_tags(tags: Sequence[str]) -> None:
    if len(tags) > MAX_TAGS:
        raise VaultError(f"{len(tags)} tags on one key, the limit is {MAX_TAGS}")
    for tag in tags:
        if not tag or len(tag) > MAX_TAG_CHARS or "\x00" in tag or "|" in tag[2:]:
            raise VaultError(f"a tag is empty, malformed or exceeds {MAX_TAG_CHARS} characters")


def check_count(n: int) -> None:
    if n > MAX_IDS_PER_CALL:
        raise VaultError(f"{n} ids in one call, the limit is {MAX_IDS_PER_CALL}")


class Cells(Protocol):
    """The byte map a backend provides."""

    def get(self, key: bytes) -> bytes | None: ...

    def write(self, puts: dict[bytes, bytes], deletes: Sequence[bytes]) -> None: ...

    def scan(self, prefix: bytes) -> Iterator[bytes]: ...

    def purge(self) -> None: ...

    def close(self) -> None: ...


class MemoryCells:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def write(self, puts: dict[bytes, bytes], deletes: Sequence[bytes]) -> None:
        self.data.update(puts)
        for key in deletes:
            self.data.pop(key, None)

    def scan(self, prefix: bytes) -> Iterator[bytes]:
        return iter(sorted(k for k in self.data if k.startswith(prefix)))

    def purge(self) -> None:
        """Nothing lingers in a dict."""

    def close(self) -> None:
        self.data.clear()


class RocksCells:
    """RocksDB, every write synced (a key must be durable before the event it seals is
    produced); a shred is followed by a purging compaction so that deleted keys leave the files."""

    def __init__(self, path: Path, sync: bool = True) -> None:
        from rocksdict import Options, Rdict, WriteOptions

        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(8 * 1024 * 1024)
        options.set_max_write_buffer_number(2)
        self.db = Rdict(str(path), options)
        self.sync = WriteOptions()
        self.sync.sync = sync  # off where the data can be read again (the profile API's view)

    def get(self, key: bytes) -> bytes | None:
        value = self.db.get(key)
        return None if value is None else bytes(value)

    def write(self, puts: dict[bytes, bytes], deletes: Sequence[bytes]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in puts.items():
            batch.put(key, value)
        for key in deletes:
            batch.delete(key)
        self.db.write(batch, self.sync)

    def scan(self, prefix: bytes) -> Iterator[bytes]:
        for key in self.db.keys(from_key=prefix):
            found = key if isinstance(key, bytes) else str(key).encode()
            if not found.startswith(prefix):
                return
            yield found

    def purge(self) -> None:
        self.db.flush()
        self.db.flush_wal(True)
        self.db.compact_range(None, None, purging_compaction())

    def close(self) -> None:
        self.db.close()


class Staged:
    """Reads that see the writes of the batch being built; one atomic write at the end."""

    def __init__(self, cells: Cells) -> None:
        self.cells = cells
        self.puts: dict[bytes, bytes] = {}
        self.deletes: set[bytes] = set()

    def get(self, key: bytes) -> bytes | None:
        if key in self.deletes:
            return None
        return self.puts[key] if key in self.puts else self.cells.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.deletes.discard(key)
        self.puts[key] = value

    def delete(self, key: bytes) -> None:
        self.puts.pop(key, None)
        self.deletes.add(key)

    def scan(self, prefix: bytes) -> list[bytes]:
        found = set(self.cells.scan(prefix)) | {k for k in self.puts if k.startswith(prefix)}
        return sorted(found - self.deletes)

    def commit(self) -> None:
        if self.puts or self.deletes:
            self.cells.write(dict(self.puts), sorted(self.deletes))
        self.puts, self.deletes = {}, set()


class KeyStore:
    """Issue, fetch and shred data keys (thread-safe: one lock, calls are short)."""

    def __init__(self, cells: Cells) -> None:
        self.cells = cells
        self.lock = threading.Lock()

    def issue(self, requests: Sequence[Issue]) -> dict[str, bytes | None]:
        """The key of each id, made (with its tags) where none exists; None for an id that
        was shredded (it is not issued again)."""
        check_count(len(requests))
        for key_id, tags in requests:
            check_id(key_id)
            check_tags(tags)
        out: dict[str, bytes | None] = {}
        with self.lock:
            puts: dict[bytes, bytes] = {}
            for key_id, tags in requests:
                if key_id in out:
                    continue
                shredded = self.cells.get(_shredded(key_id)) is not None
                if shredded and not key_id.startswith(REISSUABLE):
                    out[key_id] = None
                    continue
                held = self.cells.get(_key(key_id))
                if held is not None:
                    out[key_id] = held[:KEY_BYTES]
                    continue
                key = os.urandom(KEY_BYTES)
                puts[_key(key_id)] = key + "\x00".join(tags).encode()
                puts.update({_tag(tag, key_id): b"" for tag in tags})
                out[key_id] = key
            if puts:
                self.cells.write(puts, ())
        return out

    def fetch(self, ids: Sequence[str]) -> dict[str, bytes | None]:
        """The key of each known id; None for a shredded one; unknown ids are left out."""
        check_count(len(ids))
        out: dict[str, bytes | None] = {}
        for key_id in ids:
            check_id(key_id)
            held = self.cells.get(_key(key_id))
            if held is not None:
                out[key_id] = held[:KEY_BYTES]
            elif key_id.startswith(REISSUABLE) or self.cells.get(_shredded(key_id)) is not None:
                out[key_id] = None  # a table key without a key: shredded (or never sealed)
        return out

    def shred(self, ids: Sequence[str], tags: Sequence[str]) -> int:
        """Delete the keys of ``ids`` and every key carrying one of ``tags``, mark them
        shredded, and purge the files. Returns how many keys were deleted."""
        check_count(len(ids) + len(tags))
        for key_id in ids:
            check_id(key_id)
        for tag in tags:
            check_tags([tag])
        with self.lock:
            victims = set(ids)
            for tag in tags:
                prefix = f"t|{tag}|".encode()
                victims.update(k[len(prefix) :].decode() for k in self.cells.scan(prefix))
            deletes: list[bytes] = []
            deleted = 0
            for key_id in sorted(victims):
                held = self.cells.get(_key(key_id))
                if held is not None:
                    deleted += 1
                    deletes.append(_key(key_id))
                    for tag in held[KEY_BYTES:].decode().split("\x00"):
                        if tag:
                            deletes.append(_tag(tag, key_id))
            marks = {_shredded(k): b"-" for k in victims if not k.startswith(REISSUABLE)}
            self.cells.write(marks, deletes)
            if deleted:
                self.cells.purge()
        return deleted

    def close(self) -> None:
        self.cells.close()


def memory_store() -> KeyStore:
    return KeyStore(MemoryCells())


def rocks_store(path: Path) -> KeyStore:
    return KeyStore(RocksCells(path))
