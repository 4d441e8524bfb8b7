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
from pipeline.engine.comparisons import Model, Score
from pipeline.engine.features import (
    Features,
    address_parts,
    features_of,
    merge_features,
    new_values,
)
from pipeline.engine.identifiers import Node
from pipeline.engine.links import Linked, change_id
from pipeline.engine.names import name_forms, phonetic
from pipeline.engine.state import Store
from pipeline.engine.weights import default_model

PROBABILISTIC = "probabilistic"
# An operator decided two customers are two people (a rejected possible match): no automatic
# link, deterministic or probabilistic, joins them again, and they are not reported again.
DO_NOT_LINK = "do_not_link"
PERSON_ATTRIBUTES = ("first_name", "last_name", "birth_date")
NAME_ATTRIBUTES = ("first_name", "last_name")


class Linking(Protocol):
    """What the matcher needs of the customer graph (pipeline.engine.graph implements it): the
    graph calls the matcher, never the other way round by import."""

    def resolve(self, customer_id: str) -> str: ...

    def refuse_merge(self, left: str, right: str) -> tuple[str, str] | None: ...

    def merge(
        self,
        left: str,
        right: str,
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
    """Keys that put records which may be one person into one block, chosen so that a single
    mistake in one field leaves the pair at least one other key: the birth date; the phonetic
    surname with the birth year; first and last name together (in either order: names typed
    into each other's field); the postal code with the first initial; the postal code with the
    house number; the street with the house number."""
    keys: set[str] = set()
    firsts = [f for f in (name_forms(v) for v in features.get("first_name", [])) if f]
    lasts = [f for f in (name_forms(v) for v in features.get("last_name", [])) if f]
    for birth in features.get("birth_date", []):
        keys.add(f"bd|{birth}")
        keys.update(f"ln|{last.phonetic}|{birth[:4]}" for last in lasts if last.phonetic)
    # First names by what they stand for: Kathi and Katharina share a block.
    given = {phonetic(name) for first in firsts for name in first.canonical} - {""}
    for code in given:
        keys.update(
            "nm|" + "|".join(sorted((code, last.phonetic))) for last in lasts if last.phonetic
        )
    for address in features.get("address", []):
        parts = address_parts(address)
        postal, house, street = parts["postal_code"], parts["house"], parts["street"]
        if postal:
            keys.update(f"pc|{postal}|{first.full[:1]}" for first in firsts)
            if house:
                keys.add(f"ph|{postal}|{house}")
        if street and house:
            keys.add(f"sh|{street[:10]}|{house}")
    return sorted(keys)


def frequency_key(attribute: str, value: str | None) -> str:
    """``f|<attribute>`` counts customers with any value, ``f|<attribute>|<hash>`` those with
    this value: hashed, so the key holds no name (one key per distinct value, 8 bytes each)."""
    if value is None:
        return f"f|{attribute}"
    forms = name_forms(value) if attribute in NAME_ATTRIBUTES else None
    term = forms.full if forms else value
    return f"f|{attribute}|" + hashlib.blake2b(term.encode(), digest_size=8).hexdigest()


def _pair_key(a: str, b: str) -> str:
    return "m|" + "|".join(sorted((a, b)))


class Matcher:
    def __init__(self, store: Store, config: MatchConfig) -> None:
        self.store = store
        self.config = config
        self.stats: Counter[str] = Counter()
        self._tf_attributes = config.model.tf_attributes

    def features(self, customer: str) -> Features:
        found = self.store.get("p|" + customer)
        return dict(found) if found else {}

    def absorb(self, winner: str, loser: str) -> None:
        """A merge: the loser's features become the winner's."""
        gone = self.store.get("p|" + loser)
        if gone:
            self.store.set("p|" + winner, merge_features(self.features(winner), gone))
            self.store.delete("p|" + loser)

    def rebuild(self, customer: str, found: Features) -> None:
        """A split (pipeline.engine.splitting): the part's features, from its own events, and
        its blocking keys (keys listing the customer it came from resolve to that one)."""
        if found:
            self.store.set("p|" + customer, found)
            self._index(blocking_keys(found), customer)
        else:
            self.store.delete("p|" + customer)

    # -- term frequencies: how many customers were seen with a value ---------------------------

    def frequency(self, attribute: str, value: str) -> tuple[int, int]:
        return (
            int(self.store.get(frequency_key(attribute, value)) or 0),
            int(self.store.get(frequency_key(attribute, None)) or 0),
        )

    def _count(self, added: Sequence[tuple[str, str]]) -> None:
        for attribute, value in added:
            if attribute in self._tf_attributes:
                for key in (frequency_key(attribute, value), frequency_key(attribute, None)):
                    self.store.set(key, int(self.store.get(key) or 0) + 1)

    # -- blocking --------------------------------------------------------------------------------

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

    # -- matching --------------------------------------------------------------------------------

    def match(
        self,
        graph: Linking,
        event: ChannelEvent,
        nodes: Sequence[Node],
        customer: str,
        now: datetime,
        result: Linked,
    ) -> str:
        """Compare the event's customer with its blocking neighbours; returns the (new) customer
        id. Only a customer whose features changed — new values from this event, or another
        customer's through a merge — is compared again: every neighbour it could now match is
        found through the keys of all its features (at most ``max_candidates``), so a link that
        becomes evident later is made then, whatever the order the records came in. After a
        merge the merged customer is compared once more (new features, new neighbours)."""
        traits = event.traits
        if not (traits.first_name or traits.last_name or traits.birth_date) and not result.folds:
            return customer  # the common case, a page view: nothing to build features from
        found = features_of(traits, nodes)
        if not any(attribute in found for attribute in PERSON_ATTRIBUTES) and not result.folds:
            return customer
        before = self.features(customer)
        added = new_values(before, found)
        if not added and not result.folds:
            self.stats["unchanged"] += 1
            return customer
        mine = merge_features(before, found)
        if added:
            self.store.set("p|" + customer, mine)
            self._count(added)
        for _round in range(2):
            keys = blocking_keys(mine)
            merged = False
            # Every round compares with what the customer is now: a candidate refused before a
            # merge may match after it.
            scored = self._scored(graph, keys, customer, mine)
            ambiguous = self._ambiguous(scored)
            for score, candidate in scored:
                if ambiguous:
                    other = graph.resolve(candidate)
                    refused = graph.refuse_merge(customer, other) if other != customer else None
                    if not self._forbidden(refused):
                        self._possible(event, now, result, customer, other, score, ambiguous=True)
                    continue
                if merged:
                    # Scored against what the customer is now: a record that matched two
                    # namesakes must not chain them into one.
                    score = self.config.model.score(
                        self.features(customer), self.features(candidate), self.frequency
                    )
                    if score.match_probability < self.config.model.thresholds.review:
                        continue
                linked = self._decide(graph, event, now, result, customer, candidate, score)
                if linked != customer:
                    customer, merged = linked, True
            self._index(keys, customer)
            if not merged:
                break
            mine = self.features(customer)
        return customer

    def _scored(
        self,
        graph: Linking,
        keys: Sequence[str],
        customer: str,
        mine: Features,
    ) -> list[tuple[Score, str]]:
        model = self.config.model
        scored: list[tuple[Score, str]] = []
        for candidate in self._candidates(graph, keys, customer):
            self.stats["compared"] += 1
            score = model.score(mine, self.features(candidate), self.frequency)
            if score.match_probability >= model.thresholds.review:
                scored.append((score, candidate))
        scored.sort(key=lambda pair: (-pair[0].match_weight, pair[1]))
        return scored

    def _ambiguous(self, scored: Sequence[tuple[Score, str]]) -> bool:
        """The record fits two customers above auto-link who are evidently two people (they
        score below review against each other): a namesake's till receipt with a name and a
        town only. Linking it to either would be a guess; both become possible matches."""
        model = self.config.model
        sure = [c for s, c in scored if s.match_probability >= model.thresholds.auto_link]
        if len(sure) < 2:
            return False
        first = self.features(sure[0])
        for other in sure[1:]:
            if model.score(first, self.features(other), self.frequency).match_probability < (
                model.thresholds.review
            ):
                self.stats["ambiguous"] += 1
                return True
        return False

    def _forbidden(self, refused: tuple[str, str] | None) -> bool:
        """An operator's do-not-link is among the reasons: no link and no possible match."""
        if refused is not None and refused[0] == DO_NOT_LINK:
            self.stats["do_not_link"] += 1
            return True
        return False

    def _decide(
        self,
        graph: Linking,
        event: ChannelEvent,
        now: datetime,
        result: Linked,
        customer: str,
        candidate: str,
        score: Score,
    ) -> str:
        model = self.config.model
        other = graph.resolve(candidate)
        if other == customer:
            return customer
        refused = graph.refuse_merge(customer, other)
        if self._forbidden(refused):
            return customer  # an operator said: two people; not even a possible match
        if score.match_probability < model.thresholds.auto_link:
            return self._possible(event, now, result, customer, other, score)
        evidence = _evidence(event, score)
        if refused is None:
            self.stats["auto_links"] += 1
            return graph.merge(customer, other, now, result, f"{PROBABILISTIC} match", evidence)
        self.stats["refused_unique"] += 1
        result.changes.append(
            IdentityChange(
                change_id=change_id("conflict", event.event_id, customer, other),
                change_type=ChangeType.conflict,
                customer_id=customer,
                old_customer_ids=[other],
                reason=f"probabilistic link refused: the profiles hold different "
                f"{refused[1]} values",
                evidence=[evidence],
                occurred_at=now,
            )
        )
        return customer

    def _possible(
        self,
        event: ChannelEvent,
        now: datetime,
        result: Linked,
        customer: str,
        other: str,
        score: Score,
        ambiguous: bool = False,
    ) -> str:
        """Record a possible match between two customers, once per pair."""
        pair = _pair_key(customer, other)
        if other == customer or self.store.get(pair) is not None:
            return customer
        self.store.set(pair, 1)
        self.stats["possible_matches"] += 1
        result.possible.append((customer, other))
        why = "; the record fits two different customers" if ambiguous else ""
        result.changes.append(
            IdentityChange(
                change_id=change_id("possible_match", customer, other),
                change_type=ChangeType.possible_match,
                customer_id=customer,
                old_customer_ids=[other],
                reason=f"possible match (probability {score.match_probability:.3f}{why}); "
                "review before merging",
                evidence=[_evidence(event, score)],
                occurred_at=now,
            )
        )
        return customer


def _evidence(event: ChannelEvent, score: Score) -> Evidence:
    return Evidence(
        event_id=event.event_id,
        source=event.source,
        occurred_at=event.occurred_at,
        rule=PROBABILISTIC,
        identifiers=[],
        score=round(score.match_probability, 6),
        details={"match_weight": f"{score.match_weight:.3f}", **score.evidence()},
    )
