"""The profile API's state: a materialised view of the output topics (profiles, journeys,
identity changes) in a byte map — RocksDB in a running ``omnistitch serve``, a dict in tests,
both run by the same tests (pipeline.vault.store.Cells).

Why a view of the topics and not faust's table routing to the worker: the worker's tables hold
the linking graph and the profiles by partition, sealed and keyed by keyed hashes; routing a
lookup by e-mail would need the key's partition, hence the worker's secret, and a worker
restoring a partition could not answer. The topics are the public contract consumers already
read; a view of them is consistent with them by construction, restarts from its own offsets
(written in the same atomic batch as the rows they produced), scales by running more ``serve``
processes and never slows the stitcher.

Rows and their key scheme (in this module only):

``o|<topic>|<partition>``        next offset to read (written with the rows of the same batch)
``p|<customer>``                 ProfileRow: the profile as received (sealed when the vault is
                                 on), its version, its identifier index keys and merged ids
``i|<namespace>|sha256:<hex>``   customer id holding that identifier (the public hash journeys
                                 and identity changes carry, never the value)
``m|<old customer>``             the customer it was merged into
``g|<customer>``                 erased (answers 410; later records of it are ignored)
``j|<customer>|<ms:013>|<event>`` a journey event as received
``n|<customer>``                 how many journey rows it has (bounded: ``max_journey``)
``x|<customer>|<ms:013>|<change>`` an identity change naming the customer (its own or as the
                                 other side of a conflict / possible match)

Nothing here imports Kafka: the follower (pipeline.serving.follower) hands decoded records in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pipeline.engine.identifiers import hashed_identifier
from pipeline.vault.store import Cells, Staged

# A profile is far below the broker's 1 MiB; a row adds its index keys (≤ the identifiers).
MAX_JOURNEY_DEFAULT = 5_000
MAX_PAGE = 500
# Merged ids a profile lists (the contract bounds merged_ids at 200).
MAX_MERGED = 200


class ProfileRow(msgspec.Struct, frozen=True):
    """One customer's latest profile as received, with what the view needs to maintain its
    indexes. Bounded by the profile (< 1 MiB) plus its identifier keys."""

    record: dict[str, Any]  # the decoded CustomerProfile, sealed fields as received
    version: int
    index: list[str]  # identifier keys "namespace|sha256:<hex>"
    merged: list[str]


class Row(msgspec.Struct, frozen=True):
    """A journey event or an identity change as received (decoded Avro)."""

    record: dict[str, Any]


_profiles = msgspec.msgpack.Decoder(ProfileRow)
_rows = msgspec.msgpack.Decoder(Row)
_encode = msgspec.msgpack.Encoder().encode


def _k(*parts: str) -> bytes:
    return "|".join(parts).encode("utf-8", "surrogatepass")


def offset_key(topic: str, partition: int) -> bytes:
    return _k("o", topic, str(partition))


def profile_key(customer: str) -> bytes:
    return _k("p", customer)


def identifier_key(namespace: str, hashed_value: str) -> bytes:
    return _k("i", namespace, hashed_value)


def merged_key(customer: str) -> bytes:
    return _k("m", customer)


def erased_key(customer: str) -> bytes:
    return _k("g", customer)


def journey_prefix(customer: str) -> bytes:
    return _k("j", customer, "")


def journey_key(customer: str, at_ms: int, event_id: str) -> bytes:
    return _k("j", customer, f"{max(0, at_ms):013d}", event_id)


def journey_count_key(customer: str) -> bytes:
    return _k("n", customer)


def change_prefix(customer: str) -> bytes:
    return _k("x", customer, "")


def change_key(customer: str, at_ms: int, change_id: str) -> bytes:
    return _k("x", customer, f"{max(0, at_ms):013d}", change_id)


def index_keys(identifiers: dict[str, list[str]]) -> list[str]:
    """The index keys of a profile's (opened) identifiers: namespace and public hash."""
    return sorted(
        {
            f"{namespace}|{hashed_identifier(namespace, value).value}"
            for namespace, values in identifiers.items()
            for value in values
        }
    )


@dataclass(frozen=True)
class Incoming:
    """One record of an output topic, decoded. ``identifiers`` are the profile's opened
    identifiers (empty when it stays sealed: its key was shredded)."""

    topic: str  # "profiles" | "journeys" | "changes"
    partition: int
    offset: int
    key: str
    record: dict[str, Any] | None  # None: a tombstone
    identifiers: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Applied:
    """What one batch did (counted for the metrics)."""

    profiles: int = 0
    tombstones: int = 0
    journeys: int = 0
    changes: int = 0
    erased: int = 0
    ignored: int = 0


class CustomerView:
    """Apply output-topic records; answer lookups. Writes happen on one thread (the follower);
    reads on any (RocksDB and dict reads are safe alongside one writer)."""

    def __init__(self, cells: Cells, max_journey: int = MAX_JOURNEY_DEFAULT) -> None:
        self.cells = cells
        self.max_journey = max_journey

    # ---- writing -------------------------------------------------------------------------
    def apply(self, batch: Sequence[Incoming], topic_names: dict[str, str]) -> Applied:
        """Apply a batch and store the next offsets with it in one write; an erase is written
        (and purged from the files) before the rest of the batch."""
        staged, applied = Staged(self.cells), Applied()
        purge = False
        for item in batch:
            if item.topic == "profiles":
                self._profile(staged, item, applied)
            elif item.topic == "journeys":
                self._journey(staged, item, applied)
            elif item.record is not None and item.record.get("change_type") == "erased":
                self._erase(staged, item.record["customer_id"])
                applied.erased += 1
                purge = True
            else:
                self._change(staged, item, applied)
            staged.put(
                offset_key(topic_names[item.topic], item.partition), b"%d" % (item.offset + 1)
            )
        staged.commit()
        if purge:
            self.cells.purge()
        return applied

    def _profile(self, staged: Staged, item: Incoming, applied: Applied) -> None:
        customer = item.key
        if staged.get(erased_key(customer)) is not None:
            applied.ignored += 1
            return
        old_raw = staged.get(profile_key(customer))
        old = _profiles.decode(old_raw) if old_raw is not None else None
        if item.record is None:  # merged away (or erased: the erased change does the rest)
            if old is not None:
                self._unindex(staged, customer, old.index)
                staged.delete(profile_key(customer))
            applied.tombstones += 1
            return
        version = int(item.record.get("version") or 0)
        if old is not None and old.version > version:
            applied.ignored += 1  # a redelivered older version
            return
        merged = list(item.record.get("merged_ids") or [])[:MAX_MERGED]
        # A sealed profile whose key is gone keeps the index of the version before it.
        index = index_keys(item.identifiers) if item.identifiers else (old.index if old else [])
        if old is not None:
            self._unindex(staged, customer, sorted(set(old.index) - set(index)))
        for key in index:
            namespace, _, hashed = key.partition("|")
            staged.put(identifier_key(namespace, hashed), customer.encode())
        for loser in merged:
            staged.put(merged_key(loser), customer.encode())
        staged.delete(merged_key(customer))  # alive under its own id (again, after a split)
        row = ProfileRow(item.record, version, index, merged)
        staged.put(profile_key(customer), _encode(row))
        applied.profiles += 1

    @staticmethod
    def _unindex(staged: Staged, customer: str, keys: Iterable[str]) -> None:
        for key in keys:
            namespace, _, hashed = key.partition("|")
            at = identifier_key(namespace, hashed)
            if staged.get(at) == customer.encode():  # another customer may hold it by now
                staged.delete(at)

    def _journey(self, staged: Staged, item: Incoming, applied: Applied) -> None:
        record = item.record
        if record is None:
            return
        customer = str(record["customer_id"])
        event = record["event"]
        at = _millis(event.get("occurred_at"))
        if staged.get(erased_key(customer)) is not None:
            applied.ignored += 1
            return
        moved_from = record.get("corrects")
        if moved_from and moved_from != customer:  # a split moved it: not the old one's anymore
            old = journey_key(moved_from, at, event["event_id"])
            if staged.get(old) is not None:
                staged.delete(old)
                self._count(staged, moved_from, -1)
        key = journey_key(customer, at, event["event_id"])
        if staged.get(key) is None and self._count(staged, customer, +1) > self.max_journey:
            oldest = staged.scan(journey_prefix(customer))[0]
            staged.delete(oldest)
            self._count(staged, customer, -1)
        staged.put(key, _encode(Row(record)))
        applied.journeys += 1

    @staticmethod
    def _count(staged: Staged, customer: str, delta: int) -> int:
        raw = staged.get(journey_count_key(customer))
        count = max(0, int(raw or b"0") + delta)
        staged.put(journey_count_key(customer), b"%d" % count)
        return count

    def _change(self, staged: Staged, item: Incoming, applied: Applied) -> None:
        record = item.record
        if record is None:
            return
        at = _millis(record.get("occurred_at"))
        row = _encode(Row(record))
        for customer in [record["customer_id"], *(record.get("old_customer_ids") or [])]:
            if staged.get(erased_key(customer)) is None:
                staged.put(change_key(customer, at, record["change_id"]), row)
        applied.changes += 1

    def _erase(self, staged: Staged, customer: str) -> None:
        """Everything the view holds of the customer and of the customers merged into it."""
        raw = staged.get(profile_key(customer))
        row = _profiles.decode(raw) if raw is not None else None
        ids = [customer, *(row.merged if row else [])]
        if row is not None:
            self._unindex(staged, customer, row.index)
        for gone in ids:
            staged.delete(profile_key(gone))
            staged.delete(journey_count_key(gone))
            for key in staged.scan(journey_prefix(gone)) + staged.scan(change_prefix(gone)):
                staged.delete(key)
            if gone != customer:
                staged.delete(merged_key(gone))
                staged.put(erased_key(gone), b"erased")
        staged.put(erased_key(customer), b"erased")

    def offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The next offset to read per partition (0 when nothing was read)."""
        return {p: int(self.cells.get(offset_key(topic, p)) or b"0") for p in partitions}

    # ---- reading -------------------------------------------------------------------------
    def resolve(self, customer: str) -> tuple[str, bool]:
        """(the customer now holding ``customer``'s history, whether it was merged away)."""
        current, seen = customer, set()
        while current not in seen:
            seen.add(current)
            into = self.cells.get(merged_key(current))
            if into is None:
                break
            current = into.decode()
        return current, current != customer

    def erased(self, customer: str) -> bool:
        return self.cells.get(erased_key(customer)) is not None

    def profile(self, customer: str) -> ProfileRow | None:
        raw = self.cells.get(profile_key(customer))
        return _profiles.decode(raw) if raw is not None else None

    def holder(self, namespace: str, normalised_value: str) -> str | None:
        """The customer holding an identifier (normalised as the stitcher does)."""
        hashed = hashed_identifier(namespace, normalised_value).value
        raw = self.cells.get(identifier_key(namespace, hashed))
        return raw.decode() if raw is not None else None

    def _ids(self, customer: str) -> list[str]:
        row = self.profile(customer)
        return [customer, *(row.merged if row else [])]

    def journey(
        self, customer: str, limit: int = 50, before: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The customer's journey newest first (its own and its merged-away ids' events), one
        page of ``limit``, and the cursor of the next page (None: the last page)."""
        limit = max(1, min(limit, MAX_PAGE))
        found: list[tuple[str, bytes]] = []
        for c in self._ids(customer):
            prefix = journey_prefix(c)
            for key in self.cells.scan(prefix):
                cursor = key[len(prefix) :].decode("utf-8", "surrogatepass")
                if before is None or cursor < before:
                    found.append((cursor, key))
        found.sort(reverse=True)
        page = found[:limit]
        records = []
        for _cursor, key in page:
            raw = self.cells.get(key)
            if raw is not None:
                records.append(_rows.decode(raw).record)
        more = len(found) > limit
        return records, (page[-1][0] if more and page else None)

    def changes(self, customer: str) -> list[dict[str, Any]]:
        """Identity changes naming the customer or a customer merged into it, oldest first."""
        found: dict[str, dict[str, Any]] = {}
        for c in self._ids(customer):
            for key in self.cells.scan(change_prefix(c)):
                raw = self.cells.get(key)
                if raw is not None:
                    record = _rows.decode(raw).record
                    found[record["change_id"]] = record
        return sorted(found.values(), key=lambda r: (_millis(r.get("occurred_at")), r["change_id"]))

    def journey_records(self) -> Iterator[dict[str, Any]]:
        """Every journey row (for the KPIs)."""
        for key in self.cells.scan(b"j|"):
            raw = self.cells.get(key)
            if raw is not None:
                yield _rows.decode(raw).record


def _millis(value: Any) -> int:
    """Avro timestamp-millis as fastavro decodes it (a datetime) or as an int."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)
