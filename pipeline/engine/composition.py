"""What a customer is made of (pure): its atoms, their own identifiers and events, and the
evidence that joins them — what a split recomputes (pipeline.engine.splitting).

An *atom* is a customer id as linking created it. A merge keeps both ids: the survivor's record
lists every atom merged into it (``atoms``), and the merged-away atom's record keeps, beside its
forward pointer and the merge's evidence (``into``, ``why``), what was its own. Every atom
record (``c|<id>``) holds:

``own``   identifier values attached to this atom directly, by namespace (the namespace rule's
          limit; rolling namespaces keep the latest);
``evs``   its own events, ``[event_id, time_ms]``, the latest MAX_EVENTS (an event belongs to the
          atom of its highest-priority identifier, or to its customer when it has none);
``sup``   on a survivor: *support* edges, ``[atom, atom, event_id, source, rule]``: an event
          carried identifiers of two atoms of one customer (after a merge, no merge records
          it); the first MAX_PER_PAIR events per pair of atoms and source, at most MAX_SUPPORT.

Merge edges are the merged-away atoms' ``into`` and ``why``. Together: the customer's evidence
graph over its atoms, at most MAX_ATOMS of them; beyond that bound the oldest are no longer
listed (counted in ``atoms_dropped``) and the customer can no longer be split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_ATOMS = 200
MAX_EVENTS = 1000
MAX_SUPPORT = 200
MAX_PER_PAIR = 3


@dataclass(frozen=True)
class Edge:
    """Evidence joining two atoms of one customer."""

    kind: str  # "merged" (an atom merged into another) | "support"
    left: str
    right: str
    event_id: str
    source: str
    rule: str

    def joins(self, one: str, other: str) -> bool:
        return {self.left, self.right} == {one, other}


def keep_latest(values: list[Any], limit: int) -> int:
    """Drop the oldest entries beyond ``limit``; how many were dropped."""
    extra = len(values) - limit
    if extra > 0:
        del values[:extra]
        return extra
    return 0


def add_own(record: dict[str, Any], namespace: str, value: str, limit: int) -> None:
    own = record.setdefault("own", {}).setdefault(namespace, [])
    if value not in own:
        own.append(value)
        keep_latest(own, limit)


def add_event(record: dict[str, Any], event_id: str, at: int) -> None:
    events = record.setdefault("evs", [])
    events.append([event_id, at])
    record["evs_dropped"] = record.get("evs_dropped", 0) + keep_latest(events, MAX_EVENTS)


def add_support(
    record: dict[str, Any], left: str, right: str, event_id: str, source: str, rule: str
) -> bool:
    """A support edge on the survivor's record, unless the pair has MAX_PER_PAIR of the source
    (or this event's) already."""
    support = record.setdefault("sup", [])
    pair = {left, right}
    same = [e for a, b, e, s, _r in support if {a, b} == pair and s == source]
    if event_id in same or len(same) >= MAX_PER_PAIR:
        return False
    if len(support) >= MAX_SUPPORT:
        record["sup_dropped"] = record.get("sup_dropped", 0) + 1
        return False
    support.append([left, right, event_id, source, rule])
    return True


def absorb(kept: dict[str, Any], gone: dict[str, Any], loser: str) -> None:
    """A merge: the survivor's record lists the loser and the loser's atoms and support."""
    atoms = kept.setdefault("atoms", [])
    atoms.extend(a for a in [loser, *gone.get("atoms", [])] if a not in atoms)
    dropped = keep_latest(atoms, MAX_ATOMS) + gone.get("atoms_dropped", 0)
    if dropped:
        kept["atoms_dropped"] = kept.get("atoms_dropped", 0) + dropped
    for left, right, event_id, source, rule in gone.get("sup", []):
        add_support(kept, left, right, event_id, source, rule)


def forward_record(gone: dict[str, Any], winner: str, why: dict[str, Any]) -> dict[str, Any]:
    """The merged-away atom's record: the forward pointer, the merge's evidence and its own."""
    record: dict[str, Any] = {"fwd": winner, "into": winner, "why": why}
    for name in ("own", "evs", "evs_dropped"):
        if name in gone:
            record[name] = gone[name]
    return record


def edges(records: dict[str, dict[str, Any]], survivor: dict[str, Any]) -> list[Edge]:
    """The evidence graph of a customer: merge edges of its atoms, then support edges."""
    found = [
        Edge(
            "merged",
            atom,
            record["into"],
            str(record["why"].get("e", "")),
            str(record["why"].get("s", "")),
            str(record["why"].get("r", "")),
        )
        for atom, record in records.items()
        if "into" in record and "why" in record
    ]
    found += [Edge("support", a, b, e, s, r) for a, b, e, s, r in survivor.get("sup", [])]
    return found
