"""Operator decisions on the customer graph (pure): link, accept, reject.

- ``link``: two identifiers (``namespace:value``) or customers (``cus-…``) are one person;
  their customers merge with the operator's evidence. It lifts a do-not-link between them.
  Unique namespaces still hold: two different CRM ids stay apart (the operation is refused).
- ``accept``: a possible match is right — the same as ``link``, named for review.
- ``reject``: a possible match is wrong — a permanent do-not-link between the two customers:
  neither probabilistic matching nor a shared identifier joins them again (a conflict instead),
  and they are not reported as a possible match again.

Every operation carries its id, who asked and why (no personal data), and is idempotent by id:
a repeat gives the first result again and changes nothing. Its IdentityChange has evidence with
rule ``operator``, source ``operator:<who>``, the operation id as event id and the reason in
``details``. The linking stage is the single writer of the graph, so operations are applied
there, ordered with events: the worker reads them from the operations topic (intake forwards
them with the events it reads, pipeline.stream.intake_loop) and answers each on the
operation-results topic; replay reads them from its input.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pipeline.contract.models import (
    ChangeType,
    ChannelEvent,
    Evidence,
    IdentityChange,
)
from pipeline.engine import composition, erasure
from pipeline.engine.composition import Edge
from pipeline.engine.explanation import explain_references
from pipeline.engine.graph import MAX_DO_NOT_LINK, Graph, new_customer_id, to_ms
from pipeline.engine.identifiers import Node, Normaliser
from pipeline.engine.links import Fold, Linked, change_id
from pipeline.engine.matching import blocking_keys
from pipeline.engine.splitting import Rebuild, Splitter
from pipeline.exceptions import ConfigurationError

OPERATOR = "operator"
KINDS = ("link", "accept", "reject", "unlink", "split", "junk", "remove", "erase", "explain")
# Kinds naming one identifier (``left``) only: it is junk (a shared tablet, a till's default
# e-mail) and stops linking, or it is not this person's and becomes a customer of its own.
SINGLE = ("junk", "remove", "erase")
# What ``split`` removes from the customer named by ``left``: ``right`` is one of these.
EVENT_SELECTOR, SOURCE_SELECTOR = "event:", "source:"
Status = Literal["done", "refused", "unknown", "repeat"]
MAX_TEXT = 256  # operator, reason: short texts, never personal data
MAX_REFERENCE = 64 + 1 + 256  # namespace:value at the contract's identifier limits


@dataclass(frozen=True)
class Operation:
    operation_id: str
    kind: str
    left: str
    right: str
    operator: str
    reason: str
    requested_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Operation:
        """An operation from its JSON form; a clear ConfigurationError when it is not one."""
        try:
            kind = str(data["kind"])
            found = cls(
                str(data["operation_id"]),
                kind,
                str(data["left"]),
                str(data["right"]),
                str(data["operator"]),
                str(data.get("reason", "")),
                _moment(data.get("requested_at")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"not an operation: {exc}") from exc
        if kind not in KINDS:
            raise ConfigurationError(f"unknown operation kind {kind!r} (one of {', '.join(KINDS)})")
        for name in ("operation_id", "operator", "left", *(() if kind in SINGLE else ("right",))):
            if not getattr(found, name).strip():
                raise ConfigurationError(f"operation: {name} is empty")
        if len(found.operator) > MAX_TEXT or len(found.reason) > MAX_TEXT:
            raise ConfigurationError(f"operation: operator and reason are at most {MAX_TEXT} chars")
        if len(found.left) > MAX_REFERENCE or len(found.right) > MAX_REFERENCE:
            raise ConfigurationError(f"operation: left and right are at most {MAX_REFERENCE} chars")
        if len(found.operation_id) > MAX_TEXT:
            raise ConfigurationError(f"operation: operation_id is at most {MAX_TEXT} chars")
        return found

    def to_json(self) -> dict[str, Any]:
        """The operation as an IdentityOperation record (requested_at a datetime, as Avro's
        timestamp-millis takes it); ``from_json`` reads it back."""
        return {
            "operation_id": self.operation_id,
            "kind": self.kind,
            "left": self.left,
            "right": self.right,
            "operator": self.operator,
            "reason": self.reason,
            "requested_at": self.requested_at,
        }


def _moment(value: Any) -> datetime:
    if value is None:
        raise ValueError("requested_at is missing")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Outcome:
    operation_id: str
    status: Status
    detail: str
    customer_id: str | None = None
    linked: Linked = field(default_factory=lambda: Linked(customer_id=""))
    # A split: what the profile stage rebuilds, one entry per part (the kept one first).
    rebuilds: list[Rebuild] = field(default_factory=list)
    # An erase: the customer ids whose profile state the profile stage deletes.
    erased: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "operation_id": self.operation_id,
            "status": self.status,
            "detail": self.detail,
            "customer_id": self.customer_id,
            "changes": [c.change_id for c in self.linked.changes],
        }

    def to_result(self, kind: str, decided_at: datetime) -> dict[str, Any]:
        """The outcome as an OperationResult record (its topic's value)."""
        return {
            "operation_id": self.operation_id,
            "kind": kind,
            "status": self.status,
            "detail": self.detail,
            "customer_id": self.customer_id,
            "change_ids": [c.change_id for c in self.linked.changes],
            "decided_at": decided_at,
        }


class Operations:
    def __init__(
        self,
        graph: Graph,
        normaliser: Normaliser,
        read: Callable[[str], ChannelEvent] | None = None,
        shred: erasure.Shred | None = None,
    ) -> None:
        """``read``: an event body as the runner gave it to ``Graph.link``, back to the event
        (a split rebuilds the parts from their events; without it, splits are refused)."""
        self.graph = graph
        self.normaliser = normaliser
        self.shred = shred  # an erase deletes the person's data keys (pipeline.vault)
        self.splitter = None if read is None else Splitter(graph, normaliser, read)

    def _atom(self, ref: str) -> str | None:
        """The atom (pipeline.engine.composition) a reference names: a customer id itself, an
        identifier's the one it was attached to."""
        if ref.startswith("cus-"):
            return ref if self.graph.store.get("c|" + ref) is not None else None
        node = self.normaliser.node_of(ref)
        record = self.graph.store.get("n|" + node.key) if isinstance(node, Node) else None
        return None if record is None else str(record["c"])

    def _target(self, ref: str) -> tuple[str | None, Node | None]:
        """A reference's customer (None: unknown) and node (for an identifier)."""
        if ref.startswith("cus-"):
            record = self.graph.store.get("c|" + ref)
            return (self.graph.resolve(ref) if record is not None else None), None
        node = self.normaliser.node_of(ref)
        if not isinstance(node, Node):
            return None, None
        return self.graph.customer_of_node(node), node

    def apply(self, operation: Operation, now: datetime) -> Outcome:
        if operation.kind == "explain":  # reads only: answered afresh every time
            found = explain_references(
                self.graph.store, self.normaliser, operation.left, operation.right, self.graph.rules
            )
            if found is None:
                return Outcome(
                    operation.operation_id,
                    "refused",
                    "explain takes two identifiers, or a customer id and an identifier",
                )
            return Outcome(operation.operation_id, "done", json.dumps(found.to_json()))
        seen = self.graph.store.get("op|" + operation.operation_id)
        if seen is not None:
            return self._again(operation, seen)
        outcome = self._apply(operation, now)
        self.graph.store.set(
            "op|" + operation.operation_id,
            {
                "status": outcome.status,
                "detail": outcome.detail,
                "c": outcome.customer_id,
                "x": [change.model_dump(mode="json") for change in outcome.linked.changes],
                "f": [[fold.loser, fold.winner] for fold in outcome.linked.folds],
                "er": outcome.erased,
                "rb": [[r.customer_id, r.atoms] for r in outcome.rebuilds],
            },
        )
        return outcome

    def _again(self, operation: Operation, seen: dict[str, Any]) -> Outcome:
        """A repeat answers with the first result and sends what the first application decided
        once more, as a repeated event does (pipeline.engine.graph): after a crash between the
        state's commit and the outputs' delivery they may never have left. Every consumer is
        idempotent: identity changes by change_id, folds by the forward pointer, erases by
        absence, resets by the operation id (pipeline.engine.profile)."""
        outcome = Outcome(operation.operation_id, "repeat", seen["detail"], seen.get("c"))
        outcome.linked.changes = [IdentityChange.model_validate(c) for c in seen.get("x", [])]
        outcome.linked.folds = [Fold(loser, winner) for loser, winner in seen.get("f", [])]
        outcome.erased = list(seen.get("er", []))
        if seen.get("rb") and self.splitter is not None and outcome.customer_id:
            parts = [(part_id, atoms) for part_id, atoms in seen["rb"]]
            outcome.rebuilds = self.splitter.again(parts, outcome.customer_id)
        return outcome

    def _evidence(self, op: Operation, nodes: list[Node]) -> Evidence:
        return Evidence(
            event_id=op.operation_id,
            source=f"{OPERATOR}:{op.operator}",
            occurred_at=op.requested_at,
            rule=OPERATOR,
            identifiers=[n.to_identifier() for n in nodes],
            details={"operation": op.kind, "reason": op.reason},
        )

    def _selector(self, op: Operation) -> tuple[str | None, Callable[[Edge], bool] | None]:
        """``split``'s right side as what it removes; ``unlink``: the edges between two
        atoms. (The customer it applies to, or None; the test, or None: unknown.)"""
        if op.kind == "split":
            customer = self._target(op.left)[0]
            if op.right.startswith(EVENT_SELECTOR):
                event_id = op.right[len(EVENT_SELECTOR) :]
                return customer, lambda e: e.event_id == event_id
            source = op.right[len(SOURCE_SELECTOR) :]
            return customer, lambda e: e.source == source
        left, right = self._atom(op.left), self._atom(op.right)
        if left is None or right is None:
            return None, None
        return self.graph.resolve(left), lambda e: e.joins(left, right)

    def _apply(self, op: Operation, now: datetime) -> Outcome:
        if op.kind == "erase":
            return self._erase(op, now)
        if op.kind in SINGLE:
            return self._leave(op, now)
        if op.kind == "split":
            if not op.right.startswith((EVENT_SELECTOR, SOURCE_SELECTOR)):
                return Outcome(
                    op.operation_id, "refused", "split takes event:<id> or source:<name>"
                )
            customer, _ = self._target(op.left)
            if customer is None:
                return Outcome(op.operation_id, "unknown", f"not known: {op.left.split(':', 1)[0]}")
            return self._split(op, customer, customer, self._evidence(op, []), now)
        (left, left_node), (right, right_node) = self._target(op.left), self._target(op.right)
        if left is None or right is None:
            missing = op.left if left is None else op.right
            return Outcome(op.operation_id, "unknown", f"not known: {missing.split(':', 1)[0]}")
        nodes = [n for n in (left_node, right_node) if n is not None]
        evidence = self._evidence(op, nodes)
        result = Linked(customer_id=left)
        if op.kind in ("unlink", "split"):
            return self._split(op, left, right, evidence, now)
        if op.kind == "reject":
            if left == right:
                return Outcome(
                    op.operation_id,
                    "refused",
                    "already one customer: splitting is not built yet (issue #13)",
                    left,
                )
            for one, other in ((left, right), (right, left)):
                record = self.graph.store.get("c|" + one)
                assert record is not None
                record["dnl"] = sorted(set(record.get("dnl", [])) | {other})[:MAX_DO_NOT_LINK]
                self.graph.store.set("c|" + one, record)
            result.changes.append(
                IdentityChange(
                    change_id=change_id(OPERATOR, op.operation_id),
                    change_type=ChangeType.other,
                    customer_id=left,
                    old_customer_ids=[right],
                    reason="operator: do not link (a rejected possible match)",
                    evidence=[evidence],
                    occurred_at=now,
                )
            )
            return Outcome(op.operation_id, "done", "do not link", left, result)
        if left == right:
            return Outcome(op.operation_id, "done", "already one customer", left, result)
        for one, other in ((left, right), (right, left)):  # an operator's link lifts a reject
            record = self.graph.store.get("c|" + one)
            assert record is not None
            if record.get("dnl"):
                record["dnl"] = [c for c in record["dnl"] if self.graph.resolve(c) != other]
                self.graph.store.set("c|" + one, record)
        refused = self.graph.refuse_merge(left, right)
        if refused is not None:
            result.changes.append(
                IdentityChange(
                    change_id=change_id(OPERATOR, op.operation_id, "refused"),
                    change_type=ChangeType.conflict,
                    customer_id=left,
                    old_customer_ids=[right],
                    reason=f"operator link refused: the profiles hold different {refused[1]} "
                    "values",
                    evidence=[evidence],
                    occurred_at=now,
                )
            )
            return Outcome(
                op.operation_id, "refused", f"different {refused[1]} values", left, result
            )
        winner = self.graph.merge(left, right, now, result, f"{OPERATOR} {op.kind}", evidence)
        result.customer_id = winner
        return Outcome(op.operation_id, "done", "merged", winner, result)

    def _erase(self, op: Operation, now: datetime) -> Outcome:
        """The person out of the graph, their identifiers suppressed (pipeline.engine
        .erasure); the profile stage deletes the profiles of the customer and its atoms."""
        suppression = self.graph.suppression
        if suppression is None:
            return Outcome(
                op.operation_id, "refused", "no erasure key configured (OMNISTITCH_ERASURE_KEY)"
            )
        customer, _node = self._target(op.left)
        if customer is None:
            return Outcome(op.operation_id, "unknown", f"not known: {op.left.split(':', 1)[0]}")
        done = erasure.erase(
            self.graph.store,
            suppression,
            customer,
            self.graph.resolve,
            blocking_keys,
            self._event_nodes,
            op.operation_id,
            to_ms(now),
            self.shred,
        )
        result = Linked(customer_id=customer)
        result.changes.append(
            IdentityChange(
                change_id=change_id("erased", op.operation_id),
                change_type=ChangeType.erased,
                customer_id=customer,
                old_customer_ids=done.atoms,
                reason="erased on request (GDPR Art. 17): " + done.report(),
                evidence=[self._evidence(op, [])],
                occurred_at=now,
            )
        )
        outcome = Outcome(op.operation_id, "done", "erased: " + done.report(), customer, result)
        outcome.erased = [customer, *done.atoms]
        return outcome

    def _event_nodes(self, event_id: str) -> list[str]:
        """The node keys of a kept event (none when events are not kept)."""
        decision = self.graph.store.get("e|" + event_id)
        if self.splitter is None or decision is None or not decision.get("b"):
            return []
        body = composition.body_of(self.graph.store, event_id, decision["b"])
        if body is None:
            return []
        event = self.splitter.read(body)
        return [n.key for n in self.normaliser.nodes(event.identifiers, event.traits)[0]]

    def _leave(self, op: Operation, now: datetime) -> Outcome:
        """``junk``: the value is quarantined, ``remove``: it starts a customer of its own; the
        evidence it gave is removed and the customer it was in recomputed (pipeline.engine
        .splitting)."""
        node = self.normaliser.node_of(op.left)
        record = self.graph.store.get("n|" + node.key) if isinstance(node, Node) else None
        if record is None or not isinstance(node, Node):
            return Outcome(op.operation_id, "unknown", f"not known: {op.left.split(':', 1)[0]}")
        if self.splitter is None:
            return Outcome(op.operation_id, "refused", "this runner keeps no events to rebuild")
        if record.get("q"):
            return Outcome(op.operation_id, "refused", "already quarantined")
        customer = self.graph.resolve(record["c"])
        division = self.splitter.split(
            customer, lambda e: node.key in e.keys, op.operation_id, leaving=node
        )
        if division.refused is not None:
            return Outcome(op.operation_id, "refused", division.refused, customer)
        evidence = self._evidence(op, [node])
        result = Linked(customer_id=customer)
        parts = list(division.ids)
        if op.kind == "junk":
            record["q"] = 1
            record["junk"] = op.operation_id
            change = ChangeType.quarantined
        else:
            own = new_customer_id(f"remove|{op.operation_id}")
            self.graph.store.set(
                "c|" + own,
                {
                    "ids": {node.namespace: [node.value]},
                    "first": to_ms(now),
                    "v": composition.VERSION,
                    "dnl": parts[:MAX_DO_NOT_LINK],
                },
            )
            for part in parts:
                part_record = self.graph.store.get("c|" + part)
                assert part_record is not None
                part_record["dnl"] = sorted({*part_record.get("dnl", []), own})[:MAX_DO_NOT_LINK]
                self.graph.store.set("c|" + part, part_record)
            record["c"] = own
            parts.append(own)
            change = ChangeType.split
        self.graph.store.set("n|" + node.key, record)
        result.changes.append(
            IdentityChange(
                change_id=change_id(op.kind, op.operation_id),
                change_type=change,
                customer_id=customer,
                old_customer_ids=parts[1:],
                reason=f"{OPERATOR} {op.kind}: a {node.namespace} value "
                + ("stops linking" if op.kind == "junk" else "is another customer's")
                + f"; {len(division.parts)} part(s)",
                evidence=[evidence],
                occurred_at=now,
            )
        )
        detail = f"{len(division.parts)} part(s)"
        return Outcome(op.operation_id, "done", detail, customer, result, division.rebuilds)

    def _split(
        self, op: Operation, left: str, right: str, evidence: Evidence, now: datetime
    ) -> Outcome:
        """``unlink`` (the edges between two atoms) or ``split`` (an event's or a source's
        evidence): pipeline.engine.splitting."""
        if left != right:
            return Outcome(op.operation_id, "refused", "not one customer: nothing to unlink", left)
        if self.splitter is None:
            return Outcome(op.operation_id, "refused", "this runner keeps no events to rebuild")
        customer, remove = self._selector(op)
        if customer is None or remove is None:
            return Outcome(op.operation_id, "unknown", "no such evidence", left)
        division = self.splitter.split(customer, remove, op.operation_id)
        if division.refused is not None:
            return Outcome(op.operation_id, "refused", division.refused, customer)
        result = Linked(customer_id=customer)
        details = dict(evidence.details)
        details["removed"] = ", ".join(
            sorted({f"{e.kind} {e.event_id} ({e.source})" for e in division.removed})
        )[:1000]
        result.changes.append(
            IdentityChange(
                change_id=change_id("split", op.operation_id),
                change_type=ChangeType.split,
                customer_id=customer,
                old_customer_ids=division.ids[1:],
                reason=f"{OPERATOR} {op.kind}: {len(division.parts)} parts",
                evidence=[evidence.model_copy(update={"details": details})],
                occurred_at=now,
            )
        )
        return Outcome(
            op.operation_id,
            "done",
            f"{len(division.parts)} parts",
            customer,
            result,
            division.rebuilds,
        )
