"""The activation stage's state: each customer's audiences and latest profile, in a byte map
(RocksDB in ``omnistitch activate``, a dict in tests; both run by the same tests), and what a
profile, a tombstone or the clock changes (pipeline.engine.audiences does the judging).

Rows and their key scheme (in this module only):

``m|<customer>``            MemberRow: the audiences the customer is in, the latest profile as
                            received (sealed when the vault is on), its version, when a time
                            window of an audience next turns for it
``t|<ms, 13 digits>|<customer>``  the same moment as an index: the timer looks at the customers
                            whose moment has come, not at every customer
``d|<audience>``            the fingerprint of the definition the memberships were built with
``o|<topic>|<partition>``   next offset to read (written with the rows of the same batch)
``r|bins``                  the population's RFM cut points (pipeline.engine.rfm), refreshed

A batch's changes are produced and acknowledged before its rows and offsets are written, so a
crash repeats work, never loses it: change ids are deterministic (customer, audience, entered,
profile version or evaluation time), and a repeated evaluation of the same profile yields the
same changes (at-least-once; consumers deduplicate by change_id).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from pipeline.contract.models import AudienceChange, AudienceMembership
from pipeline.engine import rfm
from pipeline.engine.audiences import Audience, changes, next_change
from pipeline.vault.store import Cells, Staged

# A profile as the audiences see it (opened), or None when it cannot be opened now (its key is
# gone: a newer version follows) — the memberships then stay as they are.
Opener = Callable[[dict[str, Any]], dict[str, Any] | None]


class MemberRow(msgspec.Struct, frozen=True):
    """One customer: bounded by the profile (< 1 MiB) and the number of audiences."""

    audiences: list[str]
    profile: dict[str, Any]
    version: int
    rfm: str | None = None  # the RFM score last published for the customer
    due: int | None = None  # epoch ms: a time window of an audience turns (``t|`` index too)


_rows = msgspec.msgpack.Decoder(MemberRow)
_encode = msgspec.msgpack.Encoder().encode


def _k(*parts: str) -> bytes:
    return "|".join(parts).encode("utf-8", "surrogatepass")


def member_key(customer: str) -> bytes:
    return _k("m", customer)


def due_key(ms: int, customer: str) -> bytes:
    return _k("t", f"{ms:013d}", customer)


def definition_key(audience_id: str) -> bytes:
    return _k("d", audience_id)


def offset_key(topic: str, partition: int) -> bytes:
    return _k("o", topic, str(partition))


def fingerprint(audience: Audience) -> bytes:
    body = json.dumps(
        {"condition": audience.condition, "purpose": audience.purpose}, sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()[:32].encode()


BINS_KEY = b"r|bins"


def change_id(customer: str, audience: str, entered: bool, basis: str) -> str:
    raw = f"{customer}|{audience}|{int(entered)}|{basis}"
    return "aud-" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass
class Outcome:
    """What to produce for a batch: audience changes, and membership records (None: a
    tombstone, the customer is in no audience because it is gone)."""

    changes: list[AudienceChange] = field(default_factory=list)
    memberships: dict[str, AudienceMembership | None] = field(default_factory=dict)


class Memberships:
    def __init__(
        self, cells: Cells, audiences: list[Audience], opener: Opener, currency: str = "EUR"
    ) -> None:
        self.cells = cells
        self.audiences = audiences
        self.opener = opener
        self.currency = currency
        raw = cells.get(BINS_KEY)
        self.bins = rfm.Bins(**json.loads(raw)) if raw else None

    def scored(self, profile: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """The profile with its RFM score (``rfm``: r, f, m, score) when it has orders and the
        population's bins are known."""
        found = rfm.measures(profile, now, self.currency)
        if found is None or self.bins is None:
            return dict(profile)
        return {**profile, "rfm": rfm.score(found, self.bins)}

    def refresh_bins(self, now: datetime, staged: Staged) -> int:
        """The population's RFM cut points from every stored profile; returns customers with
        orders."""
        found = [
            m
            for _customer, row in self.rows()
            if (profile := self.opener(row.profile)) is not None
            and (m := rfm.measures(profile, now, self.currency)) is not None
        ]
        self.bins = rfm.population_bins(found, self.currency)
        staged.put(BINS_KEY, json.dumps(vars(self.bins)).encode())
        return len(found)

    # ---- the stream ------------------------------------------------------------------------
    def on_profiles(
        self,
        items: list[tuple[str, dict[str, Any] | None]],
        now: datetime,
        staged: Staged,
        outcome: Outcome,
    ) -> None:
        """A batch of (customer id, profile record or None for a tombstone)."""
        for customer, record in items:
            raw = staged.get(member_key(customer))
            row = _rows.decode(raw) if raw is not None else None
            current = frozenset(row.audiences) if row else frozenset()
            if record is None:  # merged away or erased: out of everything, nothing kept
                self._judge(customer, None, current, now, "gone", outcome)
                staged.delete(member_key(customer))
                if row is not None and row.due is not None:
                    staged.delete(due_key(row.due, customer))
                outcome.memberships[customer] = None
                continue
            version = int(record.get("version") or 0)
            if row is not None and row.version > version:
                continue  # a redelivered older version
            opened = self.opener(record)
            members, score = current, row.rfm if row else None
            due = row.due if row else None
            if opened is not None:
                profile = self.scored(opened, now)
                score = (profile.get("rfm") or {}).get("score")
                members = self._judge(customer, profile, current, now, f"v{version}", outcome)
                due = self._due(profile, now)
            updated = MemberRow(sorted(members), record, version, score, due)
            self._put(staged, customer, updated, row)
            if members != current or row is None or score != row.rfm:
                outcome.memberships[customer] = AudienceMembership(
                    customer_id=customer, audiences=sorted(members), rfm=score, updated_at=now
                )

    def _judge(
        self,
        customer: str,
        profile: Mapping[str, Any] | None,
        current: frozenset[str],
        now: datetime,
        basis: str,
        outcome: Outcome,
        only: frozenset[str] | None = None,
    ) -> frozenset[str]:
        judged = (
            self.audiences if only is None else [a for a in self.audiences if a.audience_id in only]
        )
        keep = current if only is None else current - only
        found, moves = changes(judged, profile, current if only is None else current & only, now)
        purposes = {a.audience_id: a.purpose for a in self.audiences}
        version = int(profile.get("version") or 0) if profile is not None else -1
        for audience_id, entered, reason in moves:
            outcome.changes.append(
                AudienceChange(
                    change_id=change_id(customer, audience_id, entered, basis),
                    audience_id=audience_id,
                    customer_id=customer,
                    entered=entered,
                    reason=reason,
                    purpose=purposes.get(audience_id),
                    profile_version=version,
                    occurred_at=now,
                )
            )
        return (keep | found) if only is not None else found

    # ---- the clock and new definitions ------------------------------------------------------
    def stale_definitions(self) -> frozenset[str]:
        """Audiences whose definition is new or changed since the memberships were built, and
        those removed (their members must leave)."""
        known = {a.audience_id: fingerprint(a) for a in self.audiences}
        stored = {
            key.decode().split("|", 1)[1]: self.cells.get(key) for key in self.cells.scan(b"d|")
        }
        changed = {a for a, f in known.items() if stored.get(a) != f}
        removed = set(stored) - set(known)
        return frozenset(changed | removed)

    def _due(self, profile: Mapping[str, Any], now: datetime) -> int | None:
        """When a time window of any audience next turns for the profile (epoch ms)."""
        moments = [
            moment
            for audience in self.audiences
            if audience.time_based()
            and (moment := next_change(audience.condition, profile, now)) is not None
        ]
        return int(min(moments).timestamp() * 1000) if moments else None

    def _put(self, staged: Staged, customer: str, row: MemberRow, before: MemberRow | None) -> None:
        """The customer's row, and its place in the timer's index moved with it."""
        staged.put(member_key(customer), _encode(row))
        old = before.due if before is not None else None
        if old != row.due:
            if old is not None:
                staged.delete(due_key(old, customer))
            if row.due is not None:
                staged.put(due_key(row.due, customer), b"1")

    def _again(
        self,
        customer: str,
        row: MemberRow,
        only: frozenset[str],
        now: datetime,
        staged: Staged,
        outcome: Outcome,
    ) -> None:
        """Judge ``only`` these audiences again for a stored customer."""
        opened = self.opener(row.profile)
        if opened is None:
            return
        profile = self.scored(opened, now)
        score = (profile.get("rfm") or {}).get("score")
        current = frozenset(row.audiences)
        basis = f"v{row.version}"  # a repeated sweep repeats the same change ids
        members = self._judge(customer, profile, current, now, basis, outcome, only)
        known = {a.audience_id for a in self.audiences}
        members = frozenset(m for m in members if m in known)
        due = self._due(profile, now)
        if members != current or score != row.rfm or due != row.due:
            updated = MemberRow(sorted(members), row.profile, row.version, score, due)
            self._put(staged, customer, updated, row)
        if members != current or score != row.rfm:
            outcome.memberships[customer] = AudienceMembership(
                customer_id=customer, audiences=sorted(members), rfm=score, updated_at=now
            )

    def sweep_due(
        self, only: frozenset[str], now: datetime, staged: Staged, outcome: Outcome
    ) -> int:
        """The timer: judge ``only`` these (time-based) audiences again for the customers whose
        moment in the ``t|`` index has come, and no other. Returns customers seen."""
        seen, limit = 0, int(now.timestamp() * 1000)
        for key in self.cells.scan(b"t|"):
            _t, ms, customer = key.decode("utf-8", "surrogatepass").split("|", 2)
            if int(ms) > limit:
                break  # the index is in time order: nobody after this is due
            raw = self.cells.get(member_key(customer))
            row = _rows.decode(raw) if raw is not None else None
            if row is None or row.due != int(ms):
                staged.delete(key)  # left behind by an older row: not this customer's moment
                continue
            seen += 1
            self._again(customer, row, only, now, staged, outcome)
        return seen

    def sweep(self, only: frozenset[str], now: datetime, staged: Staged, outcome: Outcome) -> int:
        """Re-evaluate ``only`` these audiences for every stored customer (the RFM refresh; a
        new or changed definition's backfill; the start). Returns customers seen."""
        seen = 0
        for customer, row in self.rows():
            seen += 1
            self._again(customer, row, only, now, staged, outcome)
        # Only what this sweep judged is current now: a changed definition outside ``only``
        # stays stale for its own backfill.
        for audience in self.audiences:
            if audience.audience_id in only:
                staged.put(definition_key(audience.audience_id), fingerprint(audience))
        known = {a.audience_id for a in self.audiences}
        for key in self.cells.scan(b"d|"):
            audience_id = key.decode().split("|", 1)[1]
            if audience_id in only and audience_id not in known:
                staged.delete(key)
        return seen

    def rows(self) -> Iterator[tuple[str, MemberRow]]:
        for key in self.cells.scan(b"m|"):
            raw = self.cells.get(key)
            if raw is not None:
                yield key.decode("utf-8", "surrogatepass").split("|", 1)[1], _rows.decode(raw)

    def profile(self, customer: str) -> dict[str, Any] | None:
        """The customer's latest profile, opened (None: unknown, gone, or its key is gone)."""
        raw = self.cells.get(member_key(customer))
        return self.opener(_rows.decode(raw).profile) if raw is not None else None

    def members(self, customer: str) -> list[str]:
        raw = self.cells.get(member_key(customer))
        return list(_rows.decode(raw).audiences) if raw is not None else []

    def offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        return {p: int(self.cells.get(offset_key(topic, p)) or b"0") for p in partitions}
