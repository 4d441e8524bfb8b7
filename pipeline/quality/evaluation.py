"""Accuracy of a clustering against ground truth (pure): pairwise and B-cubed scores.

``predicted`` and ``truth`` map each record (event id) to its cluster. Pairwise: over all pairs
of records, a pair is a true positive when both clusterings put it together. B-cubed: per
record, the share of its predicted cluster that is truly its own (precision) and the share of
its true cluster that was found (recall), averaged over records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.contract.models import ChangeType, ChannelEvent, IdentityChange


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


def _damage(parts: Counter[str]) -> int:
    """Pairs a cluster gets wrong: all pairs minus the pairs within each part."""
    return _pairs(sum(parts.values())) - sum(_pairs(n) for n in parts.values())


@dataclass(frozen=True)
class Evaluation:
    pairwise: Scores
    b_cubed: Scores
    records: int
    predicted_clusters: int
    true_clusters: int
    false_merges: list[
        tuple[str, Counter[str]]
    ]  # predicted cluster → truth composition, worst first
    missed_links: list[tuple[str, Counter[str]]]  # truth → predicted parts, worst first

    def render(self) -> str:
        p, b = self.pairwise, self.b_cubed
        return "\n".join(
            [
                f"records: {self.records}, predicted clusters: {self.predicted_clusters}, "
                f"true clusters: {self.true_clusters}",
                f"pairwise   precision {p.precision:.4f}  recall {p.recall:.4f}  F1 {p.f1:.4f}",
                f"B-cubed    precision {b.precision:.4f}  recall {b.recall:.4f}  F1 {b.f1:.4f}",
            ]
        )


def evaluate(predicted: Mapping[str, str], truth: Mapping[str, str], worst: int = 5) -> Evaluation:
    merges = sorted(
        impure_clusters(predicted, truth).items(), key=lambda kv: (-_damage(kv[1]), kv[0])
    )
    missed = sorted(split_truths(predicted, truth).items(), key=lambda kv: (-_damage(kv[1]), kv[0]))
    records = predicted.keys() & truth.keys()
    return Evaluation(
        pairwise=pairwise(predicted, truth),
        b_cubed=b_cubed(predicted, truth),
        records=len(records),
        predicted_clusters=len({predicted[r] for r in records}),
        true_clusters=len({truth[r] for r in records}),
        false_merges=merges[:worst],
        missed_links=missed[:worst],
    )


def merges_between_truths(
    changes: Iterable[IdentityChange],
    in_cluster: Callable[[str], bool],
    truth_of_customer: Callable[[str], str | None],
) -> list[IdentityChange]:
    """The merges inside a cluster that joined customers first seen as different people."""
    found = []
    for change in changes:
        if change.change_type is not ChangeType.merged or not in_cluster(change.customer_id):
            continue
        sides = {truth_of_customer(c) for c in [change.customer_id, *change.old_customer_ids]}
        if len(sides - {None}) > 1:
            found.append(change)
    return found


def describe_change(change: IdentityChange) -> str:
    evidence = change.evidence[0] if change.evidence else None
    if evidence is None:
        return change.reason
    score = f" p={evidence.score:.4f}" if evidence.score is not None else ""
    ids = ", ".join(f"{i.namespace}" for i in evidence.identifiers)
    details = "; ".join(f"{k}: {v}" for k, v in evidence.details.items() if "null" not in v)
    return f"{evidence.rule}{score} {ids} {details}".strip()


def stitching_accuracy(found: Mapping[str, Sequence[ChannelEvent]]) -> dict[str, float] | None:
    """Pairwise precision, recall and F1 of the customers' events against the persons in
    ``properties.truth_person_id`` (None when no event carries one)."""
    predicted = {e.event_id: c for c, events in found.items() for e in events}
    truth = {
        e.event_id: e.properties["truth_person_id"]
        for events in found.values()
        for e in events
        if "truth_person_id" in e.properties
    }
    if not truth:
        return None
    scores = pairwise(predicted, truth)
    return {"precision": scores.precision, "recall": scores.recall, "f1": scores.f1}
