"""A customer's identity graph as the viewer draws it, built from what the output topics say
(pure): identifiers and customers as nodes, evidence as edges.

- An identifier node per identifier of the profile (labelled with its value when the profile is
  open) and per identifier the journey's events or the identity changes carried (their public
  ``sha256:`` form: labelled by namespace and a short hash).
- ``event`` edges: identifiers one event carried together (the deterministic evidence that
  joined them; rule ``shared_identifier``), with the events (up to ``MAX_EVIDENCE`` per edge).
- ``attached`` edges: an identifier to the customer its first event was stitched to.
- ``merged`` edges: an old customer into the one that absorbed it, with the rule
  (``shared_identifier``, ``probabilistic`` with its score and comparison levels, ``operator``).
- ``refused`` edges: a conflict or an operator's do-not-link; ``possible_match`` edges: found
  similar, not merged; ``split`` edges: parts an operator's split made. Quarantined identifiers
  are flagged on their node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pipeline.engine.identifiers import HASH_PREFIX, hashed_identifier

MAX_EVIDENCE = 10
MAX_NODES = 500  # a drawable graph; the profile bounds its identifiers too

_CHANGE_EDGES = {
    "merged": "merged",
    "conflict": "refused",
    "other": "refused",
    "possible_match": "possible_match",
    "split": "split",
}


def _when(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _public(namespace: str, value: str) -> str:
    hashed = value if value.startswith(HASH_PREFIX) else hashed_identifier(namespace, value).value
    return f"{namespace}|{hashed}"


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[tuple[str, str, str], dict[str, Any]] = {}

    def identifier(self, namespace: str, value: str, label: str | None = None) -> str:
        node_id = _public(namespace, value)
        node = self.nodes.get(node_id)
        if node is None:
            if len(self.nodes) >= MAX_NODES:
                return node_id
            shown = label or f"{namespace}:{node_id.split('|', 1)[1][len(HASH_PREFIX) :][:10]}…"
            node = {"id": node_id, "kind": "identifier", "namespace": namespace, "label": shown}
            node |= {"held": False, "quarantined": False}
            self.nodes[node_id] = node
        elif label:
            node["label"] = label
        return node_id

    def customer(self, customer: str, role: str) -> str:
        node_id = f"customer|{customer}"
        node = self.nodes.setdefault(
            node_id, {"id": node_id, "kind": "customer", "label": customer, "role": role}
        )
        if role == "current":
            node["role"] = role
        return node_id

    def edge(
        self, kind: str, source: str, target: str, rule: str | None, evidence: dict[str, Any]
    ) -> None:
        if source not in self.nodes or target not in self.nodes or source == target:
            return
        a, b = sorted((source, target))
        edge = self.edges.setdefault(
            (kind, a, b),
            {"kind": kind, "source": a, "target": b, "rule": rule, "score": None, "count": 0},
        )
        edge["count"] += 1
        if evidence.get("score") is not None:
            edge["score"] = evidence["score"]
        kept = edge.setdefault("evidence", [])
        if len(kept) < MAX_EVIDENCE:
            kept.append(evidence)


def identity_graph(
    customer: str,
    identifiers: Mapping[str, list[str]],
    merged_ids: Iterable[str],
    journeys: Iterable[Mapping[str, Any]],
    changes: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """The graph of ``customer``: its opened ``identifiers`` (namespace → values), the ids
    merged into it, its journey records and identity-change records (decoded Avro)."""
    graph = _Builder()
    me = graph.customer(customer, "current")
    for namespace, values in sorted(identifiers.items()):
        for value in values:
            graph.nodes.get(graph.identifier(namespace, value, f"{namespace}:{value}"), {})[
                "held"
            ] = True
    for old in merged_ids:
        graph.customer(old, "merged")
    attached: set[str] = set()
    for journey in journeys:
        event = journey["event"]
        ids = [graph.identifier(i["namespace"], i["value"]) for i in event.get("identifiers") or []]
        evidence = {
            "event_id": event["event_id"],
            "channel": event.get("channel"),
            "source": event.get("source"),
            "event_type": event.get("event_type"),
            "occurred_at": _when(event.get("occurred_at")),
            "customer": journey["customer_id"],
        }
        stitched = graph.customer(str(journey["customer_id"]), "merged")
        for node_id in ids:
            if node_id not in attached:
                attached.add(node_id)
                graph.edge("attached", node_id, stitched, "first_seen", evidence)
        for other in ids[1:]:
            graph.edge("event", ids[0], other, "shared_identifier", evidence)
    for change in changes:
        kind = str(change["change_type"])
        for item in change.get("evidence") or []:
            for identifier in item.get("identifiers") or []:
                node_id = graph.identifier(identifier["namespace"], identifier["value"])
                if kind == "quarantined" and node_id in graph.nodes:
                    graph.nodes[node_id]["quarantined"] = True
        edge_kind = _CHANGE_EDGES.get(kind)
        if edge_kind is None:
            continue
        first = (change.get("evidence") or [{}])[0]
        evidence = {
            "change_id": change["change_id"],
            "change_type": kind,
            "reason": change.get("reason", ""),
            "event_id": first.get("event_id"),
            "source": first.get("source"),
            "occurred_at": _when(change.get("occurred_at")),
            "score": first.get("score"),
            "details": dict(first.get("details") or {}),
        }
        target = graph.customer(str(change["customer_id"]), "other")
        for old in change.get("old_customer_ids") or []:
            role = "merged" if kind == "merged" else "other"
            graph.edge(edge_kind, graph.customer(old, role), target, first.get("rule"), evidence)
    return {
        "customer_id": customer,
        "root": me,
        "nodes": list(graph.nodes.values()),
        "edges": list(graph.edges.values()),
    }
