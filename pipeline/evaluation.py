"""Accuracy of a clustering against ground truth (pure): pairwise and B-cubed scores.

``predicted`` and ``truth`` map each record (event id) to its cluster. Pairwise: over all pairs
of records, a pair is a true positive when both clusterings put it together. B-cubed: per
record, the share of its predicted cluster that is truly its own (precision) and the share of
its true cluster that was found (recall), averaged over records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 0.0 if total == 0 else 2 * self.precision * self.recall / total


def _pairs(size: int) -> int:
    return size * (size - 1) // 2


def pairwise(predicted: Mapping[str, str], truth: Mapping[str, str]) -> Scores:
    records = predicted.keys() & truth.keys()
    together = Counter((predicted[r], truth[r]) for r in records)
    true_positive = sum(_pairs(n) for n in together.values())
    predicted_pairs = sum(_pairs(n) for n in Counter(predicted[r] for r in records).values())
    true_pairs = sum(_pairs(n) for n in Counter(truth[r] for r in records).values())
    return Scores(
        true_positive / predicted_pairs if predicted_pairs else 1.0,
        true_positive / true_pairs if true_pairs else 1.0,
    )


def b_cubed(predicted: Mapping[str, str], truth: Mapping[str, str]) -> Scores:
    records = sorted(predicted.keys() & truth.keys())
    if not records:
        return Scores(1.0, 1.0)
    together = Counter((predicted[r], truth[r]) for r in records)
    by_predicted = Counter(predicted[r] for r in records)
    by_truth = Counter(truth[r] for r in records)
    precision = recall = 0.0
    for r in records:
        shared = together[(predicted[r], truth[r])]
        precision += shared / by_predicted[predicted[r]]
        recall += shared / by_truth[truth[r]]
    return Scores(precision / len(records), recall / len(records))


def impure_clusters(
    predicted: Mapping[str, str], truth: Mapping[str, str]
) -> dict[str, Counter[str]]:
    """Predicted clusters holding more than one true cluster: truth → record count."""
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for record, cluster in predicted.items():
        if record in truth:
            found[cluster][truth[record]] += 1
    return {cluster: people for cluster, people in found.items() if len(people) > 1}


def split_truths(predicted: Mapping[str, str], truth: Mapping[str, str]) -> dict[str, Counter[str]]:
    """True clusters spread over several predicted clusters: predicted → record count."""
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for record, person in truth.items():
        if record in predicted:
            found[person][predicted[record]] += 1
    return {person: parts for person, parts in found.items() if len(parts) > 1}
