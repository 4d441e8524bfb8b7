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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pipeline.contract.models import (
    ChangeType,
    Evidence,
    IdentityChange,
)
from pipeline.engine.graph import MAX_DO_NOT_LINK, Graph
from pipeline.engine.identifiers import Node, Normaliser
from pipeline.engine.links import Linked, change_id
from pipeline.exceptions import ConfigurationError

OPERATOR = "operator"
KINDS = ("link", "accept", "reject")
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
        for name in ("operation_id", "operator", "left", "right"):
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
    def __init__(self, graph: Graph, normaliser: Normaliser) -> None:
        self.graph = graph
        self.normaliser = normaliser

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
        seen = self.graph.store.get("op|" + operation.operation_id)
        if seen is not None:
            return Outcome(operation.operation_id, "repeat", seen["detail"], seen.get("c"))
        outcome = self._apply(operation, now)
        self.graph.store.set(
            "op|" + operation.operation_id,
            {"status": outcome.status, "detail": outcome.detail, "c": outcome.customer_id},
        )
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

    def _apply(self, op: Operation, now: datetime) -> Outcome:
        (left, left_node), (right, right_node) = self._target(op.left), self._target(op.right)
        if left is None or right is None:
            missing = op.left if left is None else op.right
            return Outcome(op.operation_id, "unknown", f"not known: {missing.split(':', 1)[0]}")
        nodes = [n for n in (left_node, right_node) if n is not None]
        evidence = self._evidence(op, nodes)
        result = Linked(customer_id=left)
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
