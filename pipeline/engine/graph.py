"""The customer graph: identifiers are nodes, customers are the connected groups of them.

Pure (state behind pipeline.engine.state.Store) and single-writer: one linking stage owns every key,
so the result cannot depend on partitioning. Keys:

``n|<namespace>|<value>``  node: its customer, the evidence of the link that brought it in
                           (event, time, source, rule, via) and its quarantine state;
``c|<customer_id>``        customer: identifier values by namespace (at most the namespace
                           rule's limit; rolling namespaces keep the latest and count what
                           rolled off under ``rolled``) and first-seen time, or after a merge
                           a forward pointer: ``fwd`` the survivor (shortened as merges chain),
                           ``into`` the customer it was merged into and ``why`` the merge's
                           evidence (pipeline.engine.explanation reads both); ``dnl`` lists
                           customers an operator said are other people (do not link);
``e|<event_id>``           what linking the event decided: its customer, its atom and time,
                           folds and changes (idempotency by event id: a repeat re-emits the
                           same decision), the number of chunks of its kept body;
``v|<event_id>|<n>``       the event itself as the runner kept it, in chunks (splits rebuild
                           the parts from it; pipeline.engine.composition).

A merge keeps the customer seen first (earliest event time; ties: the smaller id) and leaves a
forward pointer, so late events for the merged-away id land on the survivor.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pipeline.contract.models import ChangeType, ChannelEvent, Evidence, IdentityChange, to_millis
from pipeline.engine import composition
from pipeline.engine.erasure import SUPPRESSIONS, Suppression
from pipeline.engine.identifiers import Node
from pipeline.engine.links import Fold, Linked, change_id
from pipeline.engine.matching import DO_NOT_LINK, MatchConfig, Matcher
from pipeline.engine.namespaces import NamespaceRules
from pipeline.engine.state import Store

SHARED_IDENTIFIER = composition.SHARED
UNIQUE_CONFLICT = "unique_namespace_conflict"
NAMESPACE_LIMIT = "namespace_limit"
HAIRBALL = "hairball_guard"
# Customers an operator said are other people (DO_NOT_LINK), kept per customer record.
MAX_DO_NOT_LINK = 100


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def new_customer_id(event_id: str) -> str:
    """Deterministic: the same input creates the same ids in the worker and in replay."""
    return "cus-" + hashlib.sha256(event_id.encode()).hexdigest()[:20]


def merge_forwarding(changes: Iterable[IdentityChange]) -> Callable[[str], str]:
    """For consumers of the identity-changes topic: customer id → surviving customer id."""
    forward = {
        loser: change.customer_id
        for change in changes
        if change.change_type is ChangeType.merged
        for loser in change.old_customer_ids
    }

    def final(customer_id: str) -> str:
        seen = set()
        while customer_id in forward and customer_id not in seen:
            seen.add(customer_id)
            customer_id = forward[customer_id]
        return customer_id

    return final


def merge_evidence(evidence: Evidence) -> dict[str, Any]:
    """A merge's evidence as kept on the loser's forward record (explain reads it back): event
    id, time, source, rule, identifier keys, score and comparison details (≤ ≈ 4 KB)."""
    return {
        "e": evidence.event_id,
        "t": to_ms(evidence.occurred_at),
        "s": evidence.source,
        "r": evidence.rule,
        "n": [f"{i.namespace}|{i.value}" for i in evidence.identifiers],
        "p": evidence.score,
        "d": dict(evidence.details),
    }


def _change(
    change_id: str,
    change_type: ChangeType,
    customer_id: str,
    reason: str,
    evidence: list[Evidence],
    occurred_at: datetime,
    old_customer_ids: list[str] | None = None,
) -> IdentityChange:
    """An IdentityChange of values valid by construction (no validation in the hot path)."""
    return IdentityChange.from_valid(
        {
            "change_id": change_id,
            "change_type": change_type,
            "customer_id": customer_id,
            "old_customer_ids": old_customer_ids or [],
            "reason": reason,
            "evidence": evidence,
            "occurred_at": to_millis(occurred_at),
        }
    )


class Graph:
    def __init__(
        self,
        store: Store,
        rules: NamespaceRules,
        matching: MatchConfig | None = None,
        suppression: Suppression | None = None,
    ) -> None:
        """``suppression``: the keyed hash of erased identifiers (pipeline.engine.erasure)."""
        self.store = store
        self.rules = rules
        self.suppression = suppression
        self.matcher = Matcher(store, matching) if matching is not None else None
        # Identifier values that rolled off customer records (rolling namespaces).
        self.stats: Counter[str] = Counter()

    # -- reading ---------------------------------------------------------------------------
    def resolve(self, customer_id: str) -> str:
        """Follow forward pointers to the surviving customer (compressing the path)."""
        chain: list[tuple[str, dict[str, Any]]] = []
        current = customer_id
        while True:
            record = self.store.get("c|" + current)
            if record is None or "fwd" not in record:
                break
            chain.append((current, record))
            current = record["fwd"]
        for merged, record in chain[:-1]:
            # The shortcut changes "fwd" only: "into" and "why" keep the merge's evidence.
            self.store.set("c|" + merged, {**record, "fwd": current})
        return current

    def customer_of_event(self, event_id: str) -> str | None:
        routed = self.store.get("e|" + event_id)
        return None if routed is None else self.resolve(routed["c"])

    def customer_of_node(self, node: Node) -> str | None:
        record = self.store.get("n|" + node.key)
        return None if record is None else self.resolve(record["c"])

    # -- linking ---------------------------------------------------------------------------
    def link(
        self, event: ChannelEvent, nodes: list[Node], now: datetime, body: str | None = None
    ) -> Linked:
        """Link one event. ``body``: the event as the caller can read it back (its JSON line,
        its Avro bytes in base64), kept with the decision so that a split can rebuild the
        profiles of the parts from their own events (pipeline.engine.splitting)."""
        seen = self.store.get("e|" + event.event_id)
        if seen is not None:
            # A repeat re-emits the first decision: after a crash its outputs may never have
            # left the process, and every consumer of them is idempotent. It goes where the
            # first delivery went, not to today's survivor: on that customer's key the fold
            # comes first, and the fold's absorb (carrying the seen event ids) reaches the
            # survivor before the forwarded repeat does.
            return Linked(
                seen["c"],
                duplicate=True,
                nodes=self._members(nodes, self.resolve(seen["c"])),
                folds=[Fold(loser, winner) for loser, winner in seen["f"]],
                possible=[(a, b) for a, b in seen.get("p", [])],
                changes=[IdentityChange.model_validate(change) for change in seen["x"]],
            )
        erasing = self.suppression is not None and bool(self.store.get(SUPPRESSIONS))
        if erasing and self.suppression is not None and self.suppression.erased(self.store, nodes):
            return Linked("", erased=True)
        at = to_ms(event.occurred_at)
        ordered = sorted(nodes, key=lambda n: (self.rules.rule(n.namespace).priority, n))
        active: list[tuple[Node, dict[str, Any] | None]] = []
        for node in ordered:
            record = self.store.get("n|" + node.key)
            if erasing and record is not None and self._gone(record):
                record = None  # a node an erase missed: its customer is no more
            if record is None or not record.get("q"):
                active.append((node, record))
        result = Linked(customer_id="")
        customer = self._anchor(event, active, at, now, result)
        for node, record in active:
            if record is None:
                if self.customer_of_node(node) == customer:
                    continue  # the anchor, attached above
                refused = self._refuse_attach(customer, node)
                if refused:
                    result.changes.append(self._conflict(event, customer, None, node, refused, now))
                else:
                    self._attach(node, customer, event, at, SHARED_IDENTIFIER, active[0][0])
                continue
            other = self.resolve(record["c"])
            if other == customer:
                continue
            refused = self.refuse_merge(customer, other)
            if refused:
                result.changes.append(self._conflict(event, customer, other, node, refused, now))
                if refused[0] == UNIQUE_CONFLICT:
                    quarantined = self._count_hairball(node, record, customer, other, event, now)
                    if quarantined:
                        result.changes.append(quarantined)
                continue
            customer = self.merge(
                customer,
                other,
                now,
                result,
                f"shared {node.namespace}",
                self._evidence(event, SHARED_IDENTIFIER, [node]),
            )
        if self.matcher is not None:
            customer = self.matcher.match(self, event, nodes, customer, now, result)
        atom = composition.place(
            self.store,
            self.resolve,
            event.event_id,
            event.source,
            SHARED_IDENTIFIER,
            [node.key for node, _ in active],
            customer,
            at,
        )
        decision: dict[str, Any] = {
            "c": customer,
            "a": atom,
            "t": at,
            "f": [[fold.loser, fold.winner] for fold in result.folds],
            "p": [list(pair) for pair in result.possible],
            "x": [change.model_dump(mode="json") for change in result.changes],
        }
        if body is not None:
            decision["b"] = composition.keep_body(self.store, event.event_id, body)
        self.store.set("e|" + event.event_id, decision)
        record = self.store.get("c|" + customer)
        assert record is not None and "fwd" not in record
        if at < record["first"]:
            record["first"] = at
            self.store.set("c|" + customer, record)
        result.customer_id = customer
        result.nodes = self._members(nodes, customer)
        return result

    def _gone(self, record: dict[str, Any]) -> bool:
        return self.store.get("c|" + self.resolve(record["c"])) is None

    def _members(self, nodes: list[Node], customer: str) -> list[Node]:
        return [node for node in nodes if self.customer_of_node(node) == customer]

    def _anchor(
        self,
        event: ChannelEvent,
        active: list[tuple[Node, dict[str, Any] | None]],
        at: int,
        now: datetime,
        result: Linked,
    ) -> str:
        """The customer of the event's highest-priority identifier (created when new)."""
        if active and active[0][1] is not None:
            return self.resolve(active[0][1]["c"])
        existing = next((self.resolve(r["c"]) for _, r in active if r is not None), None)
        if active and existing is not None and self._refuse_attach(existing, active[0][0]) is None:
            self._attach(active[0][0], existing, event, at, SHARED_IDENTIFIER, None)
            return existing
        customer = new_customer_id(event.event_id)
        self.store.set("c|" + customer, {"ids": {}, "first": at, "v": composition.VERSION})
        if active:
            self._attach(active[0][0], customer, event, at, "first_seen", None)
        result.changes.append(
            _change(
                change_id=change_id("created", event.event_id),
                change_type=ChangeType.created,
                customer_id=customer,
                reason="new customer" + (f" from {active[0][0].namespace}" if active else ""),
                evidence=[self._evidence(event, "first_seen", [n for n, _ in active[:1]])],
                occurred_at=now,
            )
        )
        return customer

    def _attach(
        self, node: Node, customer: str, event: ChannelEvent, at: int, rule: str, via: Node | None
    ) -> None:
        record = self.store.get("c|" + customer)
        assert record is not None
        values = record["ids"].setdefault(node.namespace, [])
        if node.value not in values:
            values.append(node.value)
            self._roll(customer, record, node.namespace)
        self.store.set("c|" + customer, record)
        self.store.set(
            "n|" + node.key,
            {
                "c": customer,
                "ev": {
                    "e": event.event_id,
                    "t": at,
                    "s": event.source,
                    "r": rule,
                    "v": via.key if via else None,
                },
            },
        )

    def _roll(self, customer: str, record: dict[str, Any], namespace: str) -> None:
        """A rolling namespace over its limit: the oldest values leave the record (their nodes
        still point to the customer), counted on the record and in ``stats``."""
        rule = self.rules.rule(namespace)
        values = record["ids"][namespace]
        extra = len(values) - rule.limit
        if rule.rolls and extra > 0:
            composition.add_rolled(
                self.store, customer, [f"{namespace}|{v}" for v in values[:extra]]
            )
            del values[:extra]
            rolled = record.setdefault("rolled", {})
            rolled[namespace] = rolled.get(namespace, 0) + extra
            self.stats["identifiers_rolled_off"] += extra

    def _refuse_attach(self, customer: str, node: Node) -> tuple[str, str] | None:
        record = self.store.get("c|" + customer)
        assert record is not None
        values = record["ids"].get(node.namespace, [])
        if node.value in values:
            return None
        rule = self.rules.rule(node.namespace)
        if rule.unique and values:
            return (UNIQUE_CONFLICT, node.namespace)
        if not values and len(record["ids"]) >= self.rules.max_namespaces:
            return (NAMESPACE_LIMIT, node.namespace)
        if len(values) >= rule.limit and not rule.rolls:
            return (NAMESPACE_LIMIT, node.namespace)
        return None

    def refuse_merge(self, left: str, right: str) -> tuple[str, str] | None:
        """Why two customers may not become one (a unique namespace, a limit), or None."""
        a = self.store.get("c|" + left)
        b = self.store.get("c|" + right)
        assert a is not None and b is not None
        if any(self.resolve(c) == right for c in a.get("dnl", [])) or any(
            self.resolve(c) == left for c in b.get("dnl", [])
        ):
            return (DO_NOT_LINK, "operator")
        namespaces = sorted(set(a["ids"]) | set(b["ids"]))
        for namespace in namespaces:
            mine, theirs = set(a["ids"].get(namespace, [])), set(b["ids"].get(namespace, []))
            rule = self.rules.rule(namespace)
            if rule.unique and mine and theirs and mine != theirs:
                return (UNIQUE_CONFLICT, namespace)
            if len(mine | theirs) > rule.limit and not rule.rolls:
                return (NAMESPACE_LIMIT, namespace)
        if len(namespaces) > self.rules.max_namespaces:
            return (NAMESPACE_LIMIT, namespaces[-1])
        return None

    def merge(
        self,
        left: str,
        right: str,
        now: datetime,
        result: Linked,
        reason: str,
        evidence: Evidence,
    ) -> str:
        """Make two customers one; the one seen first survives, the other forwards to it."""
        a = self.store.get("c|" + left)
        b = self.store.get("c|" + right)
        assert a is not None and b is not None
        winner, loser = (
            (left, right) if (a["first"], left) <= (b["first"], right) else (right, left)
        )
        kept, gone = (a, b) if winner == left else (b, a)
        for namespace, values in gone["ids"].items():
            merged = kept["ids"].setdefault(namespace, [])
            merged.extend(v for v in values if v not in merged)
            self._roll(winner, kept, namespace)
        for namespace, count in gone.get("rolled", {}).items():
            rolled = kept.setdefault("rolled", {})
            rolled[namespace] = rolled.get(namespace, 0) + count
        kept["first"] = min(kept["first"], gone["first"])
        if gone.get("dnl"):
            kept["dnl"] = sorted(set(kept.get("dnl", [])) | set(gone["dnl"]))[:MAX_DO_NOT_LINK]
        own = composition.own_of(
            gone, [self.store.get("c|" + a) or {} for a in gone.get("atoms", [])]
        )
        composition.absorb(kept, gone, loser)
        self.store.set("c|" + winner, kept)
        self.store.set(
            "c|" + loser, composition.forward_record(gone, own, winner, merge_evidence(evidence))
        )
        if self.matcher is not None:
            self.matcher.absorb(winner, loser)
        result.folds.append(Fold(loser, winner))
        result.changes.append(
            _change(
                change_id=change_id("merged", evidence.event_id, loser, winner),
                change_type=ChangeType.merged,
                customer_id=winner,
                old_customer_ids=[loser],
                reason=reason,
                evidence=[evidence],
                occurred_at=now,
            )
        )
        return winner

    def _uniques(self, customer: str) -> set[str]:
        record = self.store.get("c|" + customer)
        assert record is not None
        return {
            f"{ns}|{value}"
            for ns in self.rules.unique_namespaces()
            for value in record["ids"].get(ns, [])
        }

    def _count_hairball(
        self,
        node: Node,
        record: dict[str, Any],
        customer: str,
        other: str,
        event: ChannelEvent,
        now: datetime,
    ) -> IdentityChange | None:
        """Quarantine a value that ties together too many profiles with different unique ids."""
        tied = set(record.get("u", [])) | self._uniques(customer) | self._uniques(other)
        limit = self.rules.hairball_max_profiles
        record["u"] = sorted(tied)[: limit + 1]
        quarantine = len(tied) > limit
        if quarantine:
            record["q"] = 1
        self.store.set("n|" + node.key, record)
        if not quarantine:
            return None
        return _change(
            change_id=change_id("quarantined", node.key),
            change_type=ChangeType.quarantined,
            customer_id=self.resolve(record["c"]),
            reason=f"a {node.namespace} value tied together more than {limit} profiles with "
            "different unique ids; it no longer links",
            evidence=[self._evidence(event, HAIRBALL, [node])],
            occurred_at=now,
        )

    def _conflict(
        self,
        event: ChannelEvent,
        customer: str,
        other: str | None,
        node: Node,
        refused: tuple[str, str],
        now: datetime,
    ) -> IdentityChange:
        rule, namespace = refused
        reason = (
            f"link refused: the profiles hold different {namespace} values"
            if rule == UNIQUE_CONFLICT
            else "link refused: an operator decided these customers are two people"
            if rule == DO_NOT_LINK
            else f"link refused: more {namespace} values than one profile may hold"
        )
        return _change(
            change_id=change_id("conflict", event.event_id, customer, other or "", node.key),
            change_type=ChangeType.conflict,
            customer_id=customer,
            old_customer_ids=[other] if other else [],
            reason=reason,
            evidence=[self._evidence(event, rule, [node], {"namespace": namespace})],
            occurred_at=now,
        )

    @staticmethod
    def _evidence(
        event: ChannelEvent, rule: str, nodes: list[Node], details: dict[str, str] | None = None
    ) -> Evidence:
        return Evidence.from_valid(
            {
                "event_id": event.event_id,
                "source": event.source,
                "occurred_at": event.occurred_at,
                "rule": rule,
                "identifiers": [n.to_identifier() for n in nodes],
                "score": None,
                "details": details or {},
            }
        )
