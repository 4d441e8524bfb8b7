"""What the truth of a data set allows: figures that use the labels, printed next to the models.

- **Disagreement among true pairs**: how often one person's two records disagree on the first
  name, last name and birth date (the ``else`` level) - the m-probabilities a model fitted to
  this data would use. Febrl replaces whole values; German retail records mostly mistype them.
- **Ceiling under issue #12 item 2**: the true pairs shaped like the hard negatives the issue
  says must not merge by default - namesakes (both names agree, both birth dates present and
  unrelated, another street of the same postal code or town) and relatives (the surname and
  street agree, the first names and both birth dates do not). A model that keeps every such
  pair apart can at best join all other true pairs (and what they join transitively): the
  pairwise recall and F1 of that, at precision 1.
- **Oracle model**: the default model with this data set's own disagreement rates (m of the
  ``else`` levels, the other levels rescaled) and its own prior (true pairs over all pairs of
  records with person attributes) - what a model that learnt both from the stream perfectly
  could reach. Labels are used: a reference, not a model anyone could ship.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.contract.models import ChannelEvent
from pipeline.engine.comparisons import Model
from pipeline.engine.features import Features, features_of
from pipeline.engine.identifiers import Normaliser
from pipeline.engine.matching import PERSON_ATTRIBUTES

DISAGREEMENT = ("first_name", "last_name", "birth_date")
NAMES_AGREE = frozenset({"exact", "nickname", "double name part", "jaro_winkler >= 0.92"})
SAME_STREET, OTHER_STREET_SAME_PLACE = 5, 3  # address grades (pipeline.engine.agreement)


@dataclass(frozen=True)
class Truth:
    """One data set's true pairs of records with person attributes, and their levels."""

    records: int
    pairs: list[tuple[str, str]]
    levels: list[dict[str, str]]  # per true pair: comparison -> level label reached
    groups: dict[str, list[str]]

    def disagreement(self, comparison: str) -> float:
        both = [lv[comparison] for lv in self.levels if comparison in lv]
        return sum(label == "else" for label in both) / len(both) if both else 0.0

    @property
    def prior(self) -> float:
        return len(self.pairs) / (self.records * (self.records - 1) / 2)


def truth_of(events: Sequence[ChannelEvent], truth: dict[str, str], model: Model) -> Truth:
    normaliser = Normaliser()
    features: dict[str, Features] = {}
    groups: dict[str, list[str]] = defaultdict(list)
    for event in events:
        found = features_of(event.traits, normaliser.nodes(event.identifiers, event.traits)[0])
        if any(attribute in found for attribute in PERSON_ATTRIBUTES):
            features[event.event_id] = found
            groups[truth[event.event_id]].append(event.event_id)
    pairs, levels = [], []
    for records in groups.values():
        for left, right in itertools.combinations(records, 2):
            pairs.append((left, right))
            score = model.score(features[left], features[right])
            levels.append({name: label for name, (label, _w) in score.levels.items()})
    return Truth(len(features), pairs, levels, dict(groups))


def _grade(model: Model, label: str | None) -> int:
    address = next(c for c in model.comparisons if c.output_column_name == "address")
    found = next((lv for lv in address.levels if lv.label == label), None)
    return int(found.parameters.get("grade", 0)) if found is not None else 0


def hard_negative_shaped(levels: dict[str, str], model: Model) -> str | None:
    first, last = levels.get("first_name"), levels.get("last_name")
    birth, grade = levels.get("birth_date"), _grade(model, levels.get("address"))
    if birth != "else":
        return None
    if first in NAMES_AGREE and last in NAMES_AGREE and 0 < grade <= OTHER_STREET_SAME_PLACE:
        return "namesake"
    if last in NAMES_AGREE and first == "else" and grade >= SAME_STREET:
        return "relative"
    return None


@dataclass(frozen=True)
class Ceiling:
    namesakes: int
    relatives: int
    recall: float

    @property
    def f1(self) -> float:
        return 2 * self.recall / (1 + self.recall)


def ceiling(found: Truth, model: Model) -> Ceiling:
    shapes = Counter(hard_negative_shaped(levels, model) for levels in found.levels)
    parent = {record: record for records in found.groups.values() for record in records}

    def root(record: str) -> str:
        while parent[record] != record:
            parent[record] = parent[parent[record]]
            record = parent[record]
        return record

    for (left, right), levels in zip(found.pairs, found.levels, strict=True):
        if hard_negative_shaped(levels, model) is None:
            parent[root(left)] = root(right)
    sizes = Counter(root(record) for record in parent)
    joined = sum(n * (n - 1) // 2 for n in sizes.values())
    recall = joined / len(found.pairs) if found.pairs else 1.0
    return Ceiling(shapes["namesake"], shapes["relative"], recall)


def oracle_model(found: Truth, model: Model) -> Model:
    comparisons = []
    for comparison in model.comparisons:
        name = comparison.output_column_name
        if name in DISAGREEMENT and any(lv.label == "else" for lv in comparison.levels):
            target = min(0.5, max(1e-4, found.disagreement(name)))
            old = next(lv.m_probability for lv in comparison.levels if lv.label == "else")
            scale = (1 - target) / (1 - old)
            levels = tuple(
                dataclasses.replace(
                    lv, m_probability=target if lv.label == "else" else lv.m_probability * scale
                )
                for lv in comparison.levels
            )
            comparison = dataclasses.replace(comparison, levels=levels)
        comparisons.append(comparison)
    return model.replace(
        comparisons=tuple(comparisons), probability_two_random_records_match=found.prior
    )
