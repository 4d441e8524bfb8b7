"""Appraisal: is a newly trained model expected to do better than the one in use? (pure)

Both models score the same blocked pairs of the same records. Reported: how many pairs change
decision (linked by one, not by the other), and each model's *expected* precision, recall and
F1 — with p a pair's match probability and L the pairs the model links: precision =
sum(p over L) / |L|, recall = sum(p over L) / sum(p over all pairs). No labels are needed.

Whose p? A model judged by its own probabilities always looks good: a model that links
everything is sure that everything matches. So both models' decisions are judged by the same
committee, the mean of the two models' probabilities: a link only the new model believes in
counts half. (Each model's view of itself is printed too.) The new model is expected to be
worse when the committee's F1 of its decisions falls below that of the current model's by more
than ``tolerance``, or its precision by more than ``precision_tolerance`` (precision on its
own: merging two people is the costly mistake of a customer-data platform; the committee is
pessimistic about every new link, so a model that links a few per cent more pairs loses some
committee precision even when it is right - hence the wider margin), when it would change more
than ``max_change`` of the current model's decisions (a change that large is a different
regime, where an estimate without labels is the least to be trusted: a model fitted to data
with relatives at one address, which it learns to forgive, changed 137 % of the links of the
German households set), or when EM did not converge. ``omnistitch train`` then refuses to write
it unless forced, and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.engine.comparisons import Model
from pipeline.engine.features import Features
from pipeline.quality.evaluation import Scores
from pipeline.quality.training import TrainingReport, blocked_pairs

TOLERANCE = 0.005
PRECISION_TOLERANCE = 0.01
MAX_CHANGE = 0.25  # decisions changed (newly + no longer linked) over the current model's links


@dataclass(frozen=True)
class Expected:
    linked: int
    scores: Scores


@dataclass(frozen=True)
class Appraisal:
    pairs: int
    current: Expected  # the current model's decisions, judged by the committee
    trained: Expected  # the trained model's decisions, judged by the committee
    current_self: Expected  # ... judged by the current model itself
    trained_self: Expected  # ... judged by the trained model itself
    newly_linked: int  # linked by the trained model only
    no_longer_linked: int  # linked by the current model only
    converged: bool
    tolerance: float = TOLERANCE
    precision_tolerance: float = PRECISION_TOLERANCE
    max_change: float = MAX_CHANGE

    @property
    def changed_share(self) -> float:
        changed = self.newly_linked + self.no_longer_linked
        return changed / self.current.linked if self.current.linked else float(changed > 0)

    @property
    def reasons(self) -> list[str]:
        """Why the trained model is expected to be worse; empty when it is not."""
        found = []
        if not self.converged:
            found.append("EM did not converge")
        f1 = self.current.scores.f1 - self.trained.scores.f1
        if f1 > self.tolerance:
            found.append(f"expected F1 {f1:.4f} lower (tolerance {self.tolerance})")
        precision = self.current.scores.precision - self.trained.scores.precision
        if precision > self.precision_tolerance:
            found.append(
                f"expected precision {precision:.4f} lower (tolerance {self.precision_tolerance})"
            )
        if self.changed_share > self.max_change:
            found.append(
                f"changes {self.changed_share:.0%} of the current model's decisions (at most "
                f"{self.max_change:.0%} without labels to check them)"
            )
        return found

    @property
    def worse(self) -> bool:
        return bool(self.reasons)

    def render(self) -> str:
        def line(name: str, e: Expected, own: Expected) -> str:
            return (
                f"  {name:<8} links {e.linked:>7,} pairs; expected precision "
                f"{e.scores.precision:.4f}, recall {e.scores.recall:.4f}, F1 {e.scores.f1:.4f} "
                f"(by itself: F1 {own.scores.f1:.4f})"
            )

        verdict = (
            "expected worse: " + "; ".join(self.reasons) if self.worse else "not expected worse"
        )
        return "\n".join(
            [
                f"appraisal on {self.pairs:,} blocked pairs, judged by the mean of both "
                "models' match probabilities:",
                line("current", self.current, self.current_self),
                line("trained", self.trained, self.trained_self),
                f"  decisions changed: {self.newly_linked:,} newly linked, "
                f"{self.no_longer_linked:,} no longer linked ({self.changed_share:.1%} of the "
                "current model's links)",
                f"  verdict: {verdict}",
            ]
        )


def _expected(decider: Sequence[float], threshold: float, judge: Sequence[float]) -> Expected:
    """The pairs ``decider`` links at ``threshold``, scored by ``judge``'s probabilities."""
    linked = [p for d, p in zip(decider, judge, strict=True) if d >= threshold]
    total = sum(judge)
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
    committee = [(a + b) / 2 for a, b in zip(old, new, strict=True)]
    return Appraisal(
        len(pairs),
        _expected(old, old_cut, committee),
        _expected(new, new_cut, committee),
        _expected(old, old_cut, old),
        _expected(new, new_cut, new),
        newly,
        dropped,
        report.converged,
        tolerance,
    )
