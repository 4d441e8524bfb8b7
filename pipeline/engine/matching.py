"""Probabilistic matching in the stream: blocking, Fellegi-Sunter scoring, link or review.

Runs in the linking stage, right after deterministic linking, on the same store (the single
writer owns the union-find and these keys):

- ``p|<customer>`` — the customer's features (names, birth dates, addresses, ...);
- ``b|<blocking key>`` — the customers whose features produce that key, at most
  ``max_block_size``; a block that grows beyond is marked oversized, emptied and from then on
  skipped (and counted), never scanned;
- ``m|<customer>|<customer>`` — a possible match already reported.

An event that carries a name or a birth date is compared with the customers that share one of
its blocking keys. The best candidates at or above the auto-link threshold are merged by a
probabilistic edge whose evidence holds the score and each comparison's level and weight —
unless the two profiles hold different values of a unique namespace (then the refusal is a
conflict). Between the review and auto-link thresholds a ``possible_match`` change names both
customers, once per pair, without merging.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pipeline.contract.models import ChangeType, ChannelEvent, Evidence, IdentityChange
from pipeline.engine.comparisons import (
    Features,
    Model,
    Score,
    default_model,
    features_of,
    merge_features,
)
from pipeline.engine.identifiers import Node
from pipeline.engine.links import Linked
from pipeline.engine.names import name_forms, phonetic
from pipeline.engine.state import Store

PROBABILISTIC = "probabilistic"
PERSON_ATTRIBUTES = ("first_name", "last_name", "birth_date")


class Linking(Protocol):
    """What the matcher needs of the customer graph (pipeline.engine.graph implements it): the
    graph calls the matcher, never the other way round by import."""

    def resolve(self, customer_id: str) -> str: ...

    def refuse_merge(self, left: str, right: str) -> tuple[str, str] | None: ...

    def merge(
        self,
        left: str,
        right: str,
        event: ChannelEvent,
        now: datetime,
        result: Linked,
        reason: str,
        evidence: Evidence,
    ) -> str: ...


@dataclass(frozen=True)
class MatchConfig:
    model: Model
    max_block_size: int = 50
    max_candidates: int = 30

    @classmethod
    def default(cls) -> MatchConfig:
        return cls(default_model())


def blocking_keys(features: Features) -> list[str]:
    """Phonetic surname + birth year, postal code + first initial, full birth date, and the
    phonetic first and last name together."""
    keys: set[str] = set()
    firsts = [f for f in (name_forms(v) for v in features.get("first_name", [])) if f]
    lasts = [f for f in (name_forms(v) for v in features.get("last_name", [])) if f]
    for birth in features.get("birth_date", []):
        keys.add(f"bd|{birth}")
        keys.update(f"ln|{last.phonetic}|{birth[:4]}" for last in lasts if last.phonetic)
    for postal in features.get("postal_code", []):
        keys.update(f"pc|{postal}|{first.full[:1]}" for first in firsts)
    # First names by what they stand for: Kathi and Katharina share a block.
    given = {phonetic(name) for first in firsts for name in first.canonical} - {""}
    for code in given:
        keys.update(f"nm|{code}|{last.phonetic}" for last in lasts if last.phonetic)
    return sorted(keys)


def _pair_key(a: str, b: str) -> str:
    return "m|" + "|".join(sorted((a, b)))


def _change_id(*parts: str) -> str:
    return "chg-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


class Matcher:
    def __init__(self, store: Store, config: MatchConfig) -> None:
        self.store = store
        self.config = config
        self.stats: Counter[str] = Counter()

    def features(self, customer: str) -> Features:
        found = self.store.get("p|" + customer)
        return dict(found) if found else {}

    def absorb(self, winner: str, loser: str) -> None:
        """A merge: the loser's features become the winner's."""
        gone = self.store.get("p|" + loser)
        if gone:
            self.store.set("p|" + winner, merge_features(self.features(winner), gone))
            self.store.delete("p|" + loser)

    def _candidates(self, graph: Linking, keys: Sequence[str], customer: str) -> list[str]:
        found: list[str] = []
        for key in keys:
            block = self.store.get("b|" + key)
            if block is None:
                continue
            if block.get("x"):
                self.stats["oversized_blocks_skipped"] += 1
                continue
            for candidate in block["c"]:
                resolved = graph.resolve(candidate)
                if resolved != customer and resolved not in found:
                    found.append(resolved)
        if len(found) > self.config.max_candidates:
            self.stats["candidates_capped"] += 1
        return found[: self.config.max_candidates]

    def _index(self, keys: Sequence[str], customer: str) -> None:
        for key in keys:
            block = self.store.get("b|" + key) or {"c": []}
            if block.get("x") or customer in block["c"]:
                continue
            if len(block["c"]) >= self.config.max_block_size:
                self.store.set("b|" + key, {"x": 1, "c": []})
                self.stats["blocks_oversized"] += 1
                continue
            block["c"].append(customer)
            self.store.set("b|" + key, block)

    def match(
        self,
        graph: Linking,
        event: ChannelEvent,
        nodes: Sequence[Node],
        customer: str,
        now: datetime,
        result: Linked,
    ) -> str:
        """Compare the event's customer with its candidates; returns the (new) customer id."""
        found = features_of(event.traits, nodes)
        if not any(attribute in found for attribute in PERSON_ATTRIBUTES):
            return customer
        mine = merge_features(self.features(customer), found)
        self.store.set("p|" + customer, mine)
        keys = blocking_keys(found)
        model = self.config.model
        scored: list[tuple[Score, str]] = []
        for candidate in self._candidates(graph, keys, customer):
            self.stats["compared"] += 1
            score = model.score(mine, self.features(candidate))
            if score.match_probability >= model.thresholds.review:
                scored.append((score, candidate))
        scored.sort(key=lambda pair: (-pair[0].match_weight, pair[1]))
        for score, candidate in scored:
            other = graph.resolve(candidate)
            if other == customer:
                continue
            evidence = Evidence(
                event_id=event.event_id,
                source=event.source,
                occurred_at=event.occurred_at,
                rule=PROBABILISTIC,
                identifiers=[],
                score=round(score.match_probability, 6),
                details={"match_weight": f"{score.match_weight:.3f}", **score.evidence()},
            )
            if score.match_probability >= model.thresholds.auto_link:
                refused = graph.refuse_merge(customer, other)
                if refused is None:
                    self.stats["auto_links"] += 1
                    customer = graph.merge(
                        customer, other, event, now, result, f"{PROBABILISTIC} match", evidence
                    )
                    continue
                self.stats["refused_unique"] += 1
                result.changes.append(
                    IdentityChange(
                        change_id=_change_id("conflict", event.event_id, customer, other),
                        change_type=ChangeType.conflict,
                        customer_id=customer,
                        old_customer_ids=[other],
                        reason=f"probabilistic link refused: the profiles hold different "
                        f"{refused[1]} values",
                        evidence=[evidence],
                        occurred_at=now,
                    )
                )
                continue
            pair = _pair_key(customer, other)
            if self.store.get(pair) is not None:
                continue
            self.store.set(pair, 1)
            self.stats["possible_matches"] += 1
            result.possible.append((customer, other))
            result.changes.append(
                IdentityChange(
                    change_id=_change_id("possible_match", customer, other),
                    change_type=ChangeType.possible_match,
                    customer_id=customer,
                    old_customer_ids=[other],
                    reason=f"possible match (probability {score.match_probability:.3f}); "
                    "review before merging",
                    evidence=[evidence],
                    occurred_at=now,
                )
            )
        self._index(keys, customer)
        return customer
