"""Crypto-shredding of the worker's tables and their changelog topics.

A table key names personal data (``n|email|ann@example.com``) and its values hold it (customer
records, match features, kept events, profiles). With a vault and an erasure key configured:

* every table key is stored and sent as its keyed BLAKE2b hash under a pepper derived (HMAC)
  from the erasure key and the table's name: lookups still work, nobody without the secret can tell
  which identifier a key (or a tombstone) is about;
* every changelog value is sealed under a data key of its own table key (vault id
  ``t:<hashed key>``), so that all versions of one key in the changelog share one data key;
* a batch that forgets (an erase, a split, a profile's reset) shreds the data keys of every
  table key it wrote or deleted *before* its changelog is sealed: every earlier version of
  those keys, wherever a copy of the changelog is, becomes unreadable at once; the new values
  are sealed under fresh keys (``t:`` ids are re-issued, pipeline.vault.store).

The local RocksDB keeps plain values (it is purged after an erase); values restored from the
changelog arrive sealed and are opened on first read, then written back plain. A value whose
key was shredded is superseded by a later record of the same key (the batch that shredded it
wrote one), so it reads as absent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.exceptions import SealError
from pipeline.vault.client import Vault

# A sealed value is a JSON string (faust's recovery decodes changelog values as JSON before it
# stores their bytes): this prefix, then base64 of key id length, key id, nonce, ciphertext.
TABLE_MAGIC = b'"OST1:'

_NONCE = 12
MAX_CACHED_KEYS = 200_000  # ~40 MB at most: data keys of recently used table keys


class TableSeal:
    def __init__(self, vault: Vault, secret: bytes, table: str) -> None:
        self.vault = vault
        self.pepper = hmac.new(
            secret, b"omnistitch/table-keys/" + table.encode(), "sha256"
        ).digest()
        self.cache: dict[str, bytes] = {}
        self.ciphers: dict[str, AESGCM] = {}  # per data key id, beside ``cache``
        self.hashed: dict[str, bytes] = {}  # table key -> stored key (a hot path: memoised)

    # -- keys ------------------------------------------------------------------------------
    def table_key(self, key: str) -> bytes:
        """The stored key: the keyed hash, as a JSON string (faust's key format)."""
        found = self.hashed.get(key)
        if found is None:
            if len(self.hashed) >= MAX_CACHED_KEYS:
                self.hashed.clear()
            # Keyed BLAKE2b: a PRF like HMAC-SHA256, at a third of its cost per call.
            digest = hashlib.blake2b(
                key.encode("utf-8", "surrogatepass"), key=self.pepper, digest_size=24
            )
            found = self.hashed[key] = encode_basestring_ascii(digest.hexdigest()).encode()
        return found

    @staticmethod
    def key_id(table_key: bytes) -> str:
        return "t:" + table_key.decode()[1:-1]

    def _remember(self, keys: dict[str, bytes | None]) -> None:
        if len(self.cache) + len(keys) > MAX_CACHED_KEYS:
            for old in list(self.cache)[: len(self.cache) // 2 + len(keys)]:
                del self.cache[old]
                self.ciphers.pop(old, None)
        self.cache.update({k: v for k, v in keys.items() if v is not None})

    def _cipher(self, key_id: str, data_key: bytes) -> AESGCM:
        cipher = self.ciphers.get(key_id)
        if cipher is None:
            cipher = self.ciphers[key_id] = AESGCM(data_key)
        return cipher

    # -- values ----------------------------------------------------------------------------
    def seal(
        self, pending: Iterable[tuple[bytes, bytes | None]]
    ) -> list[tuple[bytes, bytes | None]]:
        """Changelog records with their values sealed (one vault call for the new keys)."""
        records = list(pending)
        missing = sorted({self.key_id(k) for k, v in records if v is not None} - self.cache.keys())
        if missing:
            self._remember(self.vault.issue([(key_id, ()) for key_id in missing]))
        out: list[tuple[bytes, bytes | None]] = []
        for key, value in records:
            if value is None:
                out.append((key, None))
                continue
            key_id = self.key_id(key)
            data_key = self.cache.get(key_id)
            if data_key is None:  # issued and evicted in one call: ask again
                data_key = self.vault.issue([(key_id, ())])[key_id]
                if data_key is None:
                    raise SealError("the vault refused a table key")
            nonce = os.urandom(_NONCE)
            sealed = self._cipher(key_id, data_key).encrypt(nonce, value, key_id.encode())
            ident = key_id.encode()
            packed = base64.b64encode(bytes([len(ident)]) + ident + nonce + sealed)
            out.append((key, TABLE_MAGIC + packed + b'"'))
        return out

    def data_key(self, key: str) -> tuple[str, bytes]:
        """The vault id and data key of a table key (issued when it has none)."""
        key_id = self.key_id(self.table_key(key))
        found = self.cache.get(key_id)
        if found is None:
            issued = self.vault.issue([(key_id, ())])[key_id]
            if issued is None:
                raise SealError("the vault refused a table key")
            self._remember({key_id: issued})
            found = issued
        return key_id, found

    @staticmethod
    def is_sealed(value: bytes) -> bool:
        return value.startswith(TABLE_MAGIC)

    def open(self, value: bytes) -> bytes | None:
        """A sealed table value opened; None when its key was shredded (superseded)."""
        try:
            value = base64.b64decode(value[len(TABLE_MAGIC) : -1], validate=True)
        except ValueError:
            raise SealError("a sealed table value that is not base64") from None
        size = value[0]
        start = 1
        key_id = value[start : start + size].decode()
        nonce = value[start + size : start + size + _NONCE]
        body = value[start + size + _NONCE :]
        data_key = self.cache.get(key_id)
        if data_key is None:
            found = self.vault.fetch([key_id]).get(key_id)
            if found is None:
                return None
            self._remember({key_id: found})
            data_key = found
        try:
            return self._cipher(key_id, data_key).decrypt(nonce, body, key_id.encode())
        except InvalidTag:
            return None  # sealed under an earlier key of this id, shredded since

    def shred(self, table_keys: Iterable[bytes]) -> None:
        """The data keys of these stored keys deleted (their every changelog version dark)."""
        ids = sorted({self.key_id(k) for k in table_keys})
        for key_id in ids:
            self.cache.pop(key_id, None)
            self.ciphers.pop(key_id, None)
        if ids:
            self.vault.shred(ids, [])
