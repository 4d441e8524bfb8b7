"""What a customer is made of (pure): its atoms, their own identifiers and events, and the
evidence that joins them — what a split recomputes (pipeline.engine.splitting).

An *atom* is a customer id as linking created it. A merge keeps both ids: the survivor's record
lists every atom merged into it (``atoms``), and the merged-away atom's record keeps, beside its
forward pointer and the merge's evidence (``into``, ``why``), what was its own. Every atom
record (``c|<id>``) holds:

``own``   on a merged-away atom: identifier values attached to it directly, by namespace (a
          survivor's own are its ``ids`` less its atoms' own: identifiers belong to one atom);
``v``     the composition version (VERSION): records without it were made before atoms kept
          what a split or an erase needs;
``sup``   on a survivor: *support* edges, ``[atom, atom, event_id, source, rule, key, key]``
          (the keys: an identifier of the event in each atom): an event
          carried identifiers of two atoms of one customer (after a merge, no merge records
          it); the first MAX_PER_PAIR events per pair of atoms and source, at most MAX_SUPPORT.

Beside the record, an atom's *history*: its events (``[event_id, time_ms]``; an event belongs
to the atom of its highest-priority identifier, or to its customer when it has none) and the
keys of identifiers that rolled off, in chunks of CHUNK entries (``h|<atom>|<n>``, their number
in ``h|<atom>``): a split and an erase see every event and node of an atom, and an event costs
a small write, not one of the customer's record.

Merge edges are the merged-away atoms' ``into`` and ``why``. Together: the customer's evidence
graph over its atoms, at most MAX_ATOMS of them; beyond that bound the oldest are no longer
listed (counted in ``atoms_dropped``) and the customer can no longer be split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.engine.state import Store

MAX_ATOMS = 200
CHUNK = 25  # entries per history chunk (a write per event and atom: keep it small)
VERSION = 2  # ``v`` on customer records made by this version (see the module doc)
MAX_SUPPORT = 64
MAX_PER_PAIR = 3
SHARED = "shared_identifier"  # pipeline.engine.graph.SHARED_IDENTIFIER
# An event kept for splits is stored in chunks of this many characters (``v|<event id>|<n>``),
# each far below the state bound whatever the record limit (base64 of 512 KiB is 683 KiB).
BODY_CHUNK_CHARS = 192 * 1024


@dataclass(frozen=True)
class Edge:
    """Evidence joining two atoms of one customer."""

    kind: str  # "merged" (an atom merged into another) | "support"
    left: str
    right: str
    event_id: str
    source: str
    rule: str
    keys: tuple[str, ...] = ()  # node keys of the identifiers the evidence linked through

    def joins(self, one: str, other: str) -> bool:
        return {self.left, self.right} == {one, other}


def keep_latest(values: list[Any], limit: int) -> int:
    """Drop the oldest entries beyond ``limit``; how many were dropped."""
    extra = len(values) - limit
    if extra > 0:
        del values[:extra]
        return extra
    return 0


def own_of(record: dict[str, Any], atoms: list[dict[str, Any]]) -> dict[str, list[str]]:
    """An atom's own identifiers: kept on a merged-away atom; a live customer's are its
    ``ids`` less those of the atoms merged into it."""
    if "fwd" in record:
        return dict(record.get("own", {}))
    theirs = {(ns, v) for atom in atoms for ns, vs in atom.get("own", {}).items() for v in vs}
    own = {ns: [v for v in values if (ns, v) not in theirs] for ns, values in record["ids"].items()}
    return {ns: values for ns, values in own.items() if values}


def place(
    store: Store,
    resolve: Callable[[str], str],
    event_id: str,
    source: str,
    rule: str,
    keys: list[str],
    customer: str,
    at: int,
) -> str:
    """An event's atom: that of its highest-priority identifier (``keys``, in priority order)
    of ``customer``, else the customer; it records the event, and the customer's record a
    support edge to every other atom the event's identifiers are in."""
    atoms: dict[str, str] = {}  # atom → the key of the event's first identifier in it
    for key in keys:
        record = store.get("n|" + key)
        if record is None or record["c"] in atoms:
            continue
        if record["c"] == customer or resolve(record["c"]) == customer:
            atoms[record["c"]] = key
    atom = next(iter(atoms), customer)
    add_event(store, atom, event_id, at)
    if len(atoms) > 1:
        survivor = store.get("c|" + customer)
        assert survivor is not None
        changed = False
        for other in list(atoms)[1:]:
            keys_pair = (atoms[atom], atoms[other])
            changed |= add_support(survivor, atom, other, event_id, source, rule, keys_pair)
        if changed:
            store.set("c|" + customer, survivor)
    return atom


def add_event(store: Store, atom: str, event_id: str, at: int) -> None:
    """An event of the atom, appended to its history."""
    _append(store, atom, "e", [event_id, at])


def add_rolled(store: Store, atom: str, keys: list[str]) -> None:
    """Identifiers that rolled off the atom's record (their nodes still point to it), noted in
    its history, so that an erase finds every node of the customer."""
    for key in keys:
        _append(store, atom, "n", key)


def _append(store: Store, atom: str, kind: str, entry: Any) -> None:
    """One entry to the atom's open history chunk (``h|<atom>|<n>``, CHUNK entries at most; the
    number of chunks in ``h|<atom>``): a small read and write per event, whatever the size of
    the customer."""
    count = int((store.get(f"h|{atom}") or {}).get("n", 0))
    chunk = store.get(f"h|{atom}|{count - 1}") if count else None
    if chunk is None or len(chunk["e"]) + len(chunk["n"]) >= CHUNK:
        chunk, count = {"e": [], "n": []}, count + 1
        store.set(f"h|{atom}", {"n": count})
    chunk[kind].append(entry)
    store.set(f"h|{atom}|{count - 1}", chunk)


def history(store: Store, atom: str) -> tuple[list[Any], list[str]]:
    """Every event (``[event_id, time_ms]``) and rolled-off node key of an atom, oldest first."""
    events: list[Any] = []
    nodes: list[str] = []
    count = int((store.get(f"h|{atom}") or {}).get("n", 0))
    for number in range(count):
        chunk = store.get(f"h|{atom}|{number}") or {}
        events += chunk.get("e", [])
        nodes += chunk.get("n", [])
    return events, nodes


def forget_history(store: Store, atom: str) -> int:
    """Delete an atom's history (an erase); how many chunks went."""
    count = int((store.get(f"h|{atom}") or {}).get("n", 0))
    for number in range(count):
        store.delete(f"h|{atom}|{number}")
    store.delete(f"h|{atom}")
    return count


def add_support(
    record: dict[str, Any],
    left: str,
    right: str,
    event_id: str,
    source: str,
    rule: str,
    keys: tuple[str, str] = ("", ""),
) -> bool:
    """A support edge on the survivor's record, unless the pair has MAX_PER_PAIR of the source
    (or this event's) already."""
    support = record.setdefault("sup", [])
    pair = {left, right}
    same = [e[2] for e in support if {e[0], e[1]} == pair and e[3] == source]
    if event_id in same or len(same) >= MAX_PER_PAIR:
        return False
    if len(support) >= MAX_SUPPORT:
        record["sup_dropped"] = record.get("sup_dropped", 0) + 1
        return False
    support.append([left, right, event_id, source, rule, *keys])
    return True


def absorb(kept: dict[str, Any], gone: dict[str, Any], loser: str) -> None:
    """A merge: the survivor's record lists the loser and the loser's atoms and support."""
    atoms = kept.setdefault("atoms", [])
    atoms.extend(a for a in [loser, *gone.get("atoms", [])] if a not in atoms)
    dropped = keep_latest(atoms, MAX_ATOMS) + gone.get("atoms_dropped", 0)
    if dropped:
        kept["atoms_dropped"] = kept.get("atoms_dropped", 0) + dropped
    for e in gone.get("sup", []):
        keys = (e[5], e[6]) if len(e) > 6 else ("", "")
        add_support(kept, e[0], e[1], e[2], e[3], e[4], keys)


def forward_record(
    gone: dict[str, Any], own: dict[str, list[str]], winner: str, why: dict[str, Any]
) -> dict[str, Any]:
    """The merged-away atom's record: the forward pointer, the merge's evidence and its own
    identifiers (``own_of``); its history stays under its id."""
    return {"fwd": winner, "into": winner, "why": why, "own": own, "v": gone.get("v")}


def edges(records: dict[str, dict[str, Any]], survivor: dict[str, Any]) -> list[Edge]:
    """The evidence graph of a customer: merge edges of its atoms, then support edges. A merge
    through a shared identifier is represented by the support edge its event left between the
    two atoms that hold its identifiers (``place``), not by the forward pointer, which joins
    the loser to whatever survived on the other side."""
    found = [
        Edge(
            "merged",
            atom,
            record["into"],
            str(record["why"].get("e", "")),
            str(record["why"].get("s", "")),
            str(record["why"].get("r", "")),
            tuple(record["why"].get("n", [])),
        )
        for atom, record in records.items()
        if "into" in record and "why" in record and record["why"].get("r") != SHARED
    ]
    found += [
        Edge("support", e[0], e[1], e[2], e[3], e[4], tuple(k for k in e[5:] if k))
        for e in survivor.get("sup", [])
    ]
    return found


def keep_body(store: Store, event_id: str, body: str) -> int:
    """Keep an event as its runner can read it back, in chunks; returns how many."""
    chunks = [body[i : i + BODY_CHUNK_CHARS] for i in range(0, len(body), BODY_CHUNK_CHARS)]
    for n, chunk in enumerate(chunks):
        store.set(f"v|{event_id}|{n}", chunk)
    return len(chunks)


def body_of(store: Store, event_id: str, chunks: int) -> str | None:
    """A kept event's body, or None when a chunk is missing."""
    parts = [store.get(f"v|{event_id}|{n}") for n in range(chunks)]
    if any(part is None for part in parts):
        return None
    return "".join(str(part) for part in parts)
