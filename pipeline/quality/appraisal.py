"""Appraisal: is a newly trained model expected to do better than the one in use? (pure)

Both models score the same blocked pairs of the same records. Reported: how many pairs change
decision (linked by one, not by the other), and each model's *expected* precision, recall and
F1, estimated from its own match probabilities — with p the model's probability that a pair is
a match and L the pairs it links: precision = sum(p over L) / |L|, recall = sum(p over L) /
sum(p over all pairs). No labels are needed. The new model is expected to be worse when its
expected F1 falls below the current one's by more than ``tolerance``, or when training did not
converge; ``omnistitch train`` then refuses to write it unless forced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.engine.comparisons import Model
from pipeline.engine.features import Features
from pipeline.quality.evaluation import Scores
from pipeline.quality.training import TrainingReport, blocked_pairs

TOLERANCE = 0.005


@dataclass(frozen=True)
class Expected:
    linked: int
    scores: Scores


@dataclass(frozen=True)
class Appraisal:
    pairs: int
    current: Expected
    trained: Expected
    newly_linked: int  # linked by the trained model only
    no_longer_linked: int  # linked by the current model only
    converged: bool
    tolerance: float = TOLERANCE

    @property
    def worse(self) -> bool:
        drop = self.current.scores.f1 - self.trained.scores.f1
        return not self.converged or drop > self.tolerance

    def render(self) -> str:
        def line(name: str, e: Expected) -> str:
            return (
                f"  {name:<8} links {e.linked:>7,} pairs; expected precision "
                f"{e.scores.precision:.4f}, recall {e.scores.recall:.4f}, F1 {e.scores.f1:.4f}"
            )

        verdict = (
            "EM did not converge"
            if not self.converged
            else "expected worse"
            if self.worse
            else "not expected worse"
        )
        return "\n".join(
            [
                f"appraisal on {self.pairs:,} blocked pairs (each model's own match probabilities):",
                line("current", self.current),
                line("trained", self.trained),
                f"  decisions changed: {self.newly_linked:,} newly linked, "
                f"{self.no_longer_linked:,} no longer linked",
                f"  verdict: {verdict} (tolerance {self.tolerance} F1)",
            ]
        )


def _expected(probabilities: Sequence[float], threshold: float) -> Expected:
    linked = [p for p in probabilities if p >= threshold]
    total = sum(probabilities)
    found = sum(linked)
    precision = found / len(linked) if linked else 1.0
    recall = found / total if total else 1.0
    return Expected(len(linked), Scores(precision, recall))


def appraise(
    records: Sequence[Features],
    current: Model,
    report: TrainingReport,
    max_block_size: int = 50,
    tolerance: float = TOLERANCE,
) -> Appraisal:
    trained = report.model
    pairs = list(blocked_pairs(records, max_block_size))
    old = [current.score(records[i], records[j]).match_probability for i, j in pairs]
    new = [trained.score(records[i], records[j]).match_probability for i, j in pairs]
    old_cut, new_cut = current.thresholds.auto_link, trained.thresholds.auto_link
    newly = sum(1 for a, b in zip(old, new, strict=True) if a < old_cut <= b)
    dropped = sum(1 for a, b in zip(old, new, strict=True) if b < new_cut <= a)
    return Appraisal(
        len(pairs),
        _expected(old, old_cut),
        _expected(new, new_cut),
        newly,
        dropped,
        report.converged,
        tolerance,
    )
