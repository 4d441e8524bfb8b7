"""Erase (pure): a person's data out of the customer graph, and a suppression entry for each
of their identifiers so that a late or replayed event carrying one never brings them back
(GDPR Art. 17).

``erase(customer)`` removes, for the customer and every atom merged into it
(pipeline.engine.composition): the identifier nodes (``n|``, also those that rolled off, found
in the atoms' history), the linking decisions and kept bodies of their events (``e|``, ``v|``),
the history chunks (``h|``), the customer records (``c|``), the match features (``p|``) and the
customer's entries in the blocking index (``b|``; a block left empty goes). Each identifier
leaves a suppression entry ``x|<HMAC-SHA256(secret, namespace|value)>`` holding only the time and
the operation id: the value itself is never stored, and without the secret the entry cannot be
matched to a value. ``Graph.link`` checks every event's identifiers against them; an event
carrying one is dropped (the runner writes a dead letter ``erased`` without the payload).

Not reached from here (documented in docs/architecture.md): the append-only topics (events,
journeys, dead letters) and the history of compacted topics until compaction; term-frequency
counts (``f|``: hashed values, aggregated over customers); evidence in other customers'
records that names one of the person's identifiers (a refused link's conflict on another
person's event).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.engine import composition
from pipeline.engine.features import Features
from pipeline.engine.identifiers import Node
from pipeline.engine.state import Store

SUPPRESSIONS = "x|count"  # how many suppression entries exist (a cheap "any at all?")

# Crypto-shredding: (event ids, tags of identifiers) whose data keys are to be deleted; returns
# how many keys went.
Shred = Callable[[list[str], list[str]], int | None]


@dataclass(frozen=True)
class Suppression:
    """The keyed hash of erased identifiers (``OMNISTITCH_ERASURE_KEY``)."""

    secret: bytes

    def key(self, node_key: str) -> str:
        digest = hmac.new(self.secret, node_key.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return "x|" + digest.hexdigest()

    def erased(self, store: Store, nodes: list[Node]) -> bool:
        """Does the event carry an erased identifier? (Asked only once ``SUPPRESSIONS`` is
        non-zero.)"""
        return any(store.get(self.key(node.key)) is not None for node in nodes)


@dataclass
class Erasure:
    """What an erase removed, by kind (the erase report; no personal data)."""

    customer_id: str
    atoms: list[str] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, n: int = 1) -> None:
        if n:
            self.removed[kind] = self.removed.get(kind, 0) + n

    def report(self) -> str:
        return ", ".join(f"{kind} {n}" for kind, n in sorted(self.removed.items()))


def erase(
    store: Store,
    suppression: Suppression,
    customer: str,
    resolve: Callable[[str], str],
    blocking_keys: Callable[[Features], list[str]],
    event_nodes: Callable[[str], list[str]],
    operation_id: str,
    now_ms: int,
    shred: Shred | None = None,
) -> Erasure:
    """Erase ``customer`` (a live customer id) from the graph state; see the module doc.
    ``event_nodes``: the node keys of a kept event (every identifier was attached by one of the
    person's events, so with kept events no node is missed)."""
    survivor = store.get("c|" + customer)
    assert survivor is not None and "fwd" not in survivor
    atoms = [customer, *survivor.get("atoms", [])]
    done = Erasure(customer, atoms[1:])
    records = {atom: store.get("c|" + atom) or {} for atom in atoms}
    keys = {f"{ns}|{v}" for ns, values in survivor.get("ids", {}).items() for v in values}
    events: set[str] = set()
    for atom, record in records.items():
        history_events, rolled = composition.history(store, atom)
        keys.update(rolled)
        keys.update(f"{ns}|{v}" for ns, values in record.get("own", {}).items() for v in values)
        events.update(event_id for event_id, _at in history_events)
        for event_id, _at in history_events:
            keys.update(event_nodes(event_id))
        done.count("history chunks", composition.forget_history(store, atom))
    mine = []
    for key in sorted(keys):
        node = store.get("n|" + key)
        if node is None or resolve(node["c"]) != customer:
            continue  # not (any more) this person's: another customer's now
        mine.append(key)
    if shred is not None:
        # First the keys that open every sealed copy of the person's records on the topics
        # (pipeline.vault): if the vault cannot be reached this raises, and nothing is erased
        # yet; the operation is applied again.
        shredded = shred(sorted(events), [suppression.key(key) for key in mine])
        done.count("sealed records' keys shredded", int(shredded or 0))
    for key in mine:
        store.delete("n|" + key)
        store.set(suppression.key(key), {"t": now_ms, "op": operation_id})
        done.count("identifiers")
    store.set(SUPPRESSIONS, int(store.get(SUPPRESSIONS) or 0) + done.removed.get("identifiers", 0))
    for event_id in sorted(events):
        decision = store.get("e|" + event_id)
        if decision is None:
            continue
        for number in range(int(decision.get("b") or 0)):
            store.delete(f"v|{event_id}|{number}")
        store.delete("e|" + event_id)
        done.count("events")
    features: Features = store.get("p|" + customer) or {}
    for block_key in blocking_keys(features):
        block = store.get("b|" + block_key)
        if block is None or block.get("x"):
            continue
        left = [c for c in block["c"] if c not in records]
        if left:
            store.set("b|" + block_key, {**block, "c": left})
        else:
            store.delete("b|" + block_key)
        done.count("blocking entries")
    store.delete("p|" + customer)
    for atom in atoms:
        store.delete("c|" + atom)
        done.count("customer records")
    return done
