"""Split (pure): remove evidence from a customer and recompute it into connected parts.

An operator removes evidence — every edge between two atoms (``unlink``), everything one event
or one source said (``split``) — from a customer's evidence graph (pipeline.engine.composition:
atoms joined by merge and support edges). The atoms that remain connected form the parts. The
part holding the customer's own atom (the survivor of every merge, so the oldest evidence)
keeps the id; every other part gets a new id, stable for the operation (the same operation
gives the same ids in the worker and in replay). Each part's record is rebuilt from its atoms'
own identifiers and events, its match features from its own events, and all parts become
do-not-link to each other, so neither a later event with the removed identifiers nor
probabilistic matching joins them again (an operator's ``link`` can).

What the parts need from the profile stage — reset, then their own events again in time order,
moved ones with a ``corrects`` reference — is returned as ``Rebuild``s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.contract.models import ChannelEvent
from pipeline.engine import composition
from pipeline.engine.composition import Edge
from pipeline.engine.features import Features, features_of, merge_features
from pipeline.engine.graph import MAX_DO_NOT_LINK, Graph, new_customer_id
from pipeline.engine.identifiers import Node, Normaliser
from pipeline.engine.state import Store


@dataclass(frozen=True)
class Rebuild:
    """One part for the profile stage: reset ``customer_id``, then replay ``events`` (the
    event, its identifiers of this part, and the customer it was under when it moved)."""

    customer_id: str
    merged: list[str]
    events: list[tuple[ChannelEvent, list[Node], str | None]]
    atoms: list[str] = field(default_factory=list)  # the part's atoms (its id too, if one)


@dataclass
class Division:
    """A split's result: the parts (the kept one first) or why there is none."""

    refused: str | None = None
    parts: list[list[str]] = field(default_factory=list)  # atoms per part
    ids: list[str] = field(default_factory=list)  # customer id per part
    removed: list[Edge] = field(default_factory=list)
    rebuilds: list[Rebuild] = field(default_factory=list)


def _components(atoms: list[str], edges: list[Edge]) -> list[list[str]]:
    parent = {atom: atom for atom in atoms}

    def root(atom: str) -> str:
        while parent[atom] != atom:
            parent[atom] = parent[parent[atom]]
            atom = parent[atom]
        return atom

    for edge in edges:
        a, b = root(edge.left), root(edge.right)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for atom in atoms:
        groups.setdefault(root(atom), []).append(atom)
    return list(groups.values())


# An atom's events, ``[event_id, time_ms]``, read once per split (composition.history).
Histories = dict[str, list[Any]]


def _times(part: list[str], histories: Histories) -> list[int]:
    return [at for atom in part for _e, at in histories[atom]]


def _histories(store: Store, atoms: list[str]) -> Histories:
    return {atom: composition.history(store, atom)[0] for atom in atoms}


class Splitter:
    def __init__(
        self, graph: Graph, normaliser: Normaliser, read: Callable[[str], ChannelEvent]
    ) -> None:
        """``read``: an event body as ``Graph.link`` kept it back to the event."""
        self.graph = graph
        self.normaliser = normaliser
        self.read = read

    def split(
        self,
        customer: str,
        remove: Callable[[Edge], bool],
        operation_id: str,
        leaving: Node | None = None,
    ) -> Division:
        """Remove the evidence ``remove`` selects and recompute the parts. ``leaving``: an
        identifier that leaves the customer (junk, or not this person's): it is no part's, and
        the customer is rebuilt even when its evidence stays connected without it."""
        store = self.graph.store
        survivor = store.get("c|" + customer)
        assert survivor is not None and "fwd" not in survivor
        if survivor.get("atoms_dropped") or survivor.get("sup_dropped"):
            return Division("more evidence than a split can follow (pipeline.engine.composition)")
        others = survivor.get("atoms", [])
        records = {atom: store.get("c|" + atom) or {} for atom in others}
        if any("v" not in record for record in [*records.values(), survivor]):
            return Division("formed before this version kept what a split needs")
        own = composition.own_of(survivor, list(records.values()))
        records[customer] = {**survivor, "own": own}
        # A part a split made holds evidence only once events or identifiers came to it.
        histories = _histories(store, [customer, *others])
        real = not survivor.get("made") or histories[customer] or own
        atoms = [*([customer] if real else []), *others]
        if leaving is not None:
            for record in records.values():
                own = record.get("own", {})
                if leaving.value in own.get(leaving.namespace, []):
                    values = [v for v in own[leaving.namespace] if v != leaving.value]
                    record["own"] = {**own, leaving.namespace: values}
        every = [e for e in composition.edges(records, survivor) if e.left in records]
        every = [e for e in every if e.right in records]
        removed = [e for e in every if remove(e)]
        if not removed and leaving is None:
            return Division("no such evidence in this customer")
        kept_edges = [e for e in every if not remove(e)]
        parts = sorted(
            _components(atoms, kept_edges),
            # For a part a split made: the part with the oldest events keeps its id.
            key=lambda part: (customer not in part, min(_times(part, histories), default=2**62)),
        )
        if len(parts) == 1 and leaving is None:
            joining = sorted({e.event_id for e in kept_edges})[:5]
            return Division(
                "other evidence still joins them (events "
                + ", ".join(joining)
                + "): remove it too",
                removed=removed,
            )
        ids = [customer] + [
            new_customer_id(f"split|{operation_id}|{min(part)}") for part in parts[1:]
        ]
        division = Division(None, parts, ids, removed)
        for part, part_id in zip(parts, ids, strict=True):
            others = [i for i in ids if i != part_id]
            times = _times(part, histories)
            self._write(part, part_id, records, kept_edges, survivor, others, times)
        for part, part_id in zip(parts, ids, strict=True):  # every atom forwards to its part
            division.rebuilds.append(self._rebuild(part, part_id, histories, customer, leaving))
        return division

    def _write(
        self,
        part: list[str],
        part_id: str,
        records: dict[str, dict[str, Any]],
        kept_edges: list[Edge],
        survivor: dict[str, Any],
        others: list[str],
        times: list[int],
    ) -> None:
        store, rules = self.graph.store, self.graph.rules
        inside = set(part)
        ids: dict[str, list[str]] = {}
        for atom in part:
            for namespace, values in records[atom].get("own", {}).items():
                merged = ids.setdefault(namespace, [])
                merged.extend(v for v in values if v not in merged)
                composition.keep_latest(merged, rules.rule(namespace).limit)
        mine = records.get(part_id, {})
        record = {k: v for k, v in mine.items() if k in ("v", "made")}
        if part_id not in records:  # a new part: its atoms hold the events and identifiers
            record |= {"v": composition.VERSION, "made": 1}
        record |= {
            "ids": ids,
            "first": min(times) if times else survivor["first"],
            "atoms": [a for a in part if a != part_id],
            "sup": [
                [e.left, e.right, e.event_id, e.source, e.rule]
                for e in kept_edges
                if e.kind == "support" and e.left in inside
            ],
            "dnl": sorted(set(survivor.get("dnl", [])) | set(others))[:MAX_DO_NOT_LINK],
        }
        store.set("c|" + part_id, record)
        for atom in part:
            if atom == part_id:
                continue
            atom_record = dict(records[atom])
            atom_record["fwd"] = part_id
            if atom_record.get("into") not in inside:  # its merge now joins two parts
                atom_record.pop("into", None)
                atom_record.pop("why", None)
            store.set("c|" + atom, atom_record)

    def _member(self, node: Node, leaving: Node | None) -> str | None:
        """The customer of an identifier that still links (not quarantined, not leaving)."""
        record = self.graph.store.get("n|" + node.key)
        if record is None or record.get("q") or node == leaving:
            return None
        return self.graph.resolve(record["c"])

    def _rebuild(
        self,
        part: list[str],
        part_id: str,
        histories: Histories,
        before: str,
        leaving: Node | None,
    ) -> Rebuild:
        """The part's events in time order, read back; its match features from them."""
        found: Features = {}
        events: list[tuple[ChannelEvent, list[Node], str | None]] = []
        entries = sorted((at, e) for atom in part for e, at in histories[atom])
        for _at, event_id in entries:
            decision = self.graph.store.get("e|" + event_id)
            body = None
            if decision is not None and "b" in decision:
                body = composition.body_of(self.graph.store, event_id, decision["b"])
            if body is None:
                continue  # kept without its body: the part's profile cannot show it
            event = self.read(body)
            nodes, _dropped = self.normaliser.nodes(event.identifiers, event.traits)
            mine = [n for n in nodes if self._member(n, leaving) == part_id]
            moved = before if part_id != before else None
            events.append((event, mine, moved))
            found = merge_features(found, features_of(event.traits, mine))
        if self.graph.matcher is not None:
            self.graph.matcher.rebuild(part_id, found)
        return Rebuild(part_id, [a for a in part if a != part_id], events, list(part))

    def again(self, parts: list[tuple[str, list[str]]], before: str) -> list[Rebuild]:
        """The rebuilds of a split applied before (an operation repeated after a crash that
        may have lost them): read back from the parts' atoms."""
        atoms = [atom for _id, part in parts for atom in part]
        histories = _histories(self.graph.store, atoms)
        return [self._rebuild(part, part_id, histories, before, None) for part_id, part in parts]
