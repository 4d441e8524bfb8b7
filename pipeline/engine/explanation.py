"""Explain: why two identifiers belong to one customer, as a path of evidence (pure).

Every identifier (node) was attached to a customer by one event — the first one that carried it
(``first_seen``) or one that carried it with an identifier the customer already had
(``shared_identifier``, naming that identifier as ``via``). Every merged-away customer keeps the
evidence of the merge that made it part of another one: the event, the rule (a shared
identifier, a probabilistic match with its score and each comparison's level and weight). So an
identifier's path is: attached to customer c0, c0 merged into c1, ..., into the survivor; two
identifiers are joined where their paths meet. Each step is an edge of the customer graph with
its evidence; ``explain`` returns both paths up to the customer where they meet, or, when they
do not, each identifier's customer and whether it is quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.engine.identifiers import Node, Normaliser
from pipeline.engine.namespaces import NamespaceRules
from pipeline.engine.state import Store

# At most this many merge steps are followed from one identifier (a customer merged into
# another at most once, so a longer chain means corrupt state, not a long history).
MAX_STEPS = 10_000


@dataclass(frozen=True)
class Step:
    """One edge: ``subject`` (an identifier key or a customer id) joined ``customer``."""

    kind: str  # "attached" | "merged" | "joined" (an atom a split regrouped, see _regrouped)
    subject: str
    customer: str
    event_id: str | None
    occurred_at: datetime | None
    source: str | None
    rule: str | None
    via: list[str] = field(default_factory=list)  # identifier keys the event linked through
    score: float | None = None
    details: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "customer": self.customer,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "source": self.source,
            "rule": self.rule,
            "via": self.via,
            "score": self.score,
            "details": self.details,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        when = data.get("occurred_at")
        return cls(
            data["kind"],
            data["subject"],
            data["customer"],
            data.get("event_id"),
            datetime.fromisoformat(when) if when else None,
            data.get("source"),
            data.get("rule"),
            list(data.get("via", [])),
            data.get("score"),
            dict(data.get("details", {})),
        )

    def render(self) -> str:
        when = self.occurred_at.strftime("%Y-%m-%d %H:%M:%S") if self.occurred_at else "?"
        verb = {"attached": "attached to", "merged": "merged into"}.get(self.kind, "joined")
        line = f"{self.subject} {verb} {self.customer}: {self.rule} by event {self.event_id} "
        line += f"({self.source}, {when})"
        if self.via:
            line += f" via {', '.join(self.via)}"
        if self.score is not None:
            line += f", match probability {self.score:.4f}"
        for name, level in sorted(self.details.items()):
            line += f"\n      {name}: {level}"
        return line


@dataclass(frozen=True)
class Explanation:
    left: str
    right: str
    joined: bool
    customer: str | None  # where the paths meet (joined), else None
    left_path: list[Step]
    right_path: list[Step]
    left_customer: str | None  # each identifier's current customer (None: unknown identifier)
    right_customer: str | None
    notes: list[str] = field(default_factory=list)  # quarantines, unknown identifiers

    def to_json(self) -> dict[str, Any]:
        return {
            "left": self.left,
            "right": self.right,
            "joined": self.joined,
            "customer": self.customer,
            "left_customer": self.left_customer,
            "right_customer": self.right_customer,
            "left_path": [s.to_json() for s in self.left_path],
            "right_path": [s.to_json() for s in self.right_path],
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Explanation:
        """What ``to_json`` wrote (an explain answered by the worker, on the results topic)."""
        return cls(
            data["left"],
            data["right"],
            bool(data["joined"]),
            data.get("customer"),
            [Step.from_json(s) for s in data.get("left_path", [])],
            [Step.from_json(s) for s in data.get("right_path", [])],
            data.get("left_customer"),
            data.get("right_customer"),
            list(data.get("notes", [])),
        )

    def render(self) -> str:
        if self.joined:
            head = f"{self.left} and {self.right} are one customer, {self.customer}:"
        else:
            head = (
                f"{self.left} ({self.left_customer or 'unknown'}) and {self.right} "
                f"({self.right_customer or 'unknown'}) are not linked"
            )
        lines = [head]
        for name, path in ((self.left, self.left_path), (self.right, self.right_path)):
            if path:
                lines.append(f"  {name}:")
                lines.extend(f"    {step.render()}" for step in path)
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _moment(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def path_of(store: Store, node: Node) -> list[Step]:
    """The node's attachment, then every merge from that customer to today's survivor."""
    record = store.get("n|" + node.key)
    if record is None:
        return []
    ev = record.get("ev") or {}
    steps = [
        Step(
            "attached",
            node.key,
            record["c"],
            ev.get("e"),
            _moment(ev.get("t")),
            ev.get("s"),
            ev.get("r"),
            [ev["v"]] if ev.get("v") else [],
        )
    ]
    current = record["c"]
    for _ in range(MAX_STEPS):
        customer = store.get("c|" + current)
        if customer is None or "fwd" not in customer:
            break
        into = customer.get("into", customer["fwd"])
        why = customer.get("why") or {}
        if "into" not in customer:  # regrouped by a split: the evidence is a support edge
            steps.append(_regrouped(store, current, customer["fwd"]))
            current = into
            continue
        steps.append(
            Step(
                "merged",
                current,
                into,
                why.get("e"),
                _moment(why.get("t")),
                why.get("s"),
                why.get("r"),
                list(why.get("n", [])),
                why.get("p"),
                dict(why.get("d", {})),
            )
        )
        current = into
    return steps


def _regrouped(store: Store, atom: str, part: str) -> Step:
    """An atom a split put into a part: the first event that carried identifiers of it and of
    another atom of the part (pipeline.engine.composition, support edges)."""
    record = store.get("c|" + part) or {}
    for edge in record.get("sup", []):
        if atom in edge[:2]:
            keys = [k for k in edge[5:] if k]
            return Step("joined", atom, part, edge[2], None, edge[3], edge[4], keys)
    return Step("joined", atom, part, None, None, None, "split", [])


def _resolve(store: Store, customer: str) -> str:
    for _ in range(MAX_STEPS):
        record = store.get("c|" + customer)
        if record is None or "fwd" not in record:
            break
        customer = record["fwd"]
    return customer


def _refusals(store: Store, left: str, right: str, rules: NamespaceRules | None) -> list[str]:
    """Why two customers are not linked, as far as the state tells."""
    a, b = store.get("c|" + left) or {}, store.get("c|" + right) or {}
    found = []
    if any(_resolve(store, c) == right for c in a.get("dnl", [])) or any(
        _resolve(store, c) == left for c in b.get("dnl", [])
    ):
        found.append("an operator decided these are two people (do not link): no link is made")
    for namespace in sorted(rules.unique_namespaces() if rules else ()):
        mine, theirs = (
            set(a.get("ids", {}).get(namespace, [])),
            set(b.get("ids", {}).get(namespace, [])),
        )
        if mine and theirs and mine != theirs:
            found.append(
                f"they hold different {namespace} values (one per customer): a link between "
                "them is refused"
            )
    return found


def _end(path: list[Step]) -> str | None:
    return path[-1].customer if path else None


def explain(
    store: Store, left: Node, right: Node, rules: NamespaceRules | None = None
) -> Explanation:
    """The evidence that joins two identifiers, read from a linking stage's graph state; when
    they are apart, what keeps them apart (an operator's do-not-link, a unique namespace whose
    values differ: ``rules``)."""
    a, b = path_of(store, left), path_of(store, right)
    left_customer, right_customer = _end(a), _end(b)
    notes = []
    for node in (left, right):
        record = store.get("n|" + node.key)
        if record is None:
            notes.append(f"{node.key} is not known")
        elif record.get("q"):
            notes.append(
                f"{node.key} is quarantined: it tied together profiles with different unique "
                "ids and no longer links"
            )
    joined = bool(a and b) and left_customer == right_customer
    if not joined and left_customer and right_customer:
        notes += _refusals(store, left_customer, right_customer, rules)
    meet = None
    if joined:
        # Where the paths meet: the first customer of the right path on the left one.
        on_left = [step.customer for step in a]
        on_right = [step.customer for step in b]
        meet = next(c for c in on_left if c in on_right)
        a = a[: on_left.index(meet) + 1]
        b = b[: on_right.index(meet) + 1]
    return Explanation(
        left.key,
        right.key,
        joined,
        meet,
        a,
        b,
        left_customer,
        right_customer,
        notes,
    )


def explain_references(
    store: Store,
    normaliser: Normaliser,
    left: str,
    right: str,
    rules: NamespaceRules | None = None,
) -> Explanation | None:
    """What an operator names: two identifiers (``NAMESPACE:VALUE``, normalised as the stitcher
    does), or a customer id (``cus-...``) and an identifier (the identifier's path to it).
    None when a reference is neither."""
    refs: list[Node | str] = []
    for ref in (left, right):
        node = ref if ref.startswith("cus-") else normaliser.node_of(ref)
        if not isinstance(node, Node | str):
            return None
        refs.append(node)
    a, b = refs
    if isinstance(a, Node) and isinstance(b, Node):
        return explain(store, a, b, rules)
    if isinstance(a, str) and isinstance(b, str):
        return None  # two customers: their merge (if any) is an identity change, not a path
    customer, node = (a, b) if isinstance(a, str) else (b, a)
    assert isinstance(customer, str) and isinstance(node, Node)
    path = path_of(store, node)
    known = store.get("c|" + customer) is not None
    target = _resolve(store, customer) if known else None
    joined = bool(path) and target is not None and _end(path) == target
    notes = [] if known else [f"{customer} is not known"]
    if not path:
        notes.append(f"{node.key} is not known")
    return Explanation(
        node.key,
        customer,
        joined,
        target if joined else None,
        path,
        [],
        _end(path),
        target,
        notes,
    )
