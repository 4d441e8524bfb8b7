"""Fellegi-Sunter comparisons, in Splink's vocabulary, as data (pure).

A *model* holds ``probability_two_random_records_match`` (the prior) and *comparisons*; each
comparison looks at one attribute of two records and has ordered *comparison levels* — a null
level first, then from the strictest agreement to ``else``. The first level whose predicate
holds decides; its ``m_probability`` (how often matching records fall in this level) and
``u_probability`` (how often non-matching ones do) give its ``match_weight`` = log2(m / u).
A pair's match weight is the prior's log-odds plus the sum of its levels' weights; its match
probability is 2^w / (1 + 2^w). The model is saved and loaded as JSON (``omnistitch train``
writes one; ``--model`` reads one).

Beyond the plain sum, three things a retail customer base needs:

- **term frequency** (``tf_adjustment`` on a level): agreeing on a rare value is stronger
  evidence than agreeing on a common one. The level's u is replaced by the value's frequency
  among the customers seen so far, smoothed towards u while few are known, and the change of
  weight is bounded (``term_frequency.max_adjustment``);
- **reversed names** (``reversed_names.m_probability``): first and last name typed into each
  other's field; the pair is also scored with one side's names swapped, at the cost of the
  log-odds of such a mistake, and the better reading counts;
- **dependencies** (``dependencies``): Fellegi-Sunter treats comparisons as independent, but
  people at one address are households: a different person there shares the surname half of
  the time. Given the address comparison at one of ``given_levels``, a dependent comparison's
  levels use the household's u (``u_probabilities``) instead of the population's, and no term
  frequency: a surname agreeing at one address is weak evidence, a first name agreeing is not.

Records are *features* (pipeline.engine.features); a comparison takes the best level over all
pairs of values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.engine.agreement import PREDICATES
from pipeline.engine.features import Features, compared_values, reversed_names
from pipeline.exceptions import ConfigurationError

# (attribute, value) -> (customers seen with that value, customers seen with any value)
Frequency = Callable[[str, str], tuple[int, int]]


@dataclass(frozen=True)
class ComparisonLevel:
    label: str
    predicate: str
    m_probability: float
    u_probability: float
    parameters: Mapping[str, Any] = field(default_factory=dict)
    tf_adjustment: bool = False

    @property
    def match_weight(self) -> float:
        return math.log2(self.m_probability / self.u_probability)

    def holds(self, a: str, b: str) -> bool:
        return PREDICATES[self.predicate](a, b, self.parameters)


@dataclass(frozen=True)
class Comparison:
    output_column_name: str
    levels: tuple[ComparisonLevel, ...]  # strictest first, ``else`` last; null is implicit

    def best(self, left: Sequence[str], right: Sequence[str]) -> tuple[int, str] | None:
        """The best level over all pairs of values and the left value that reached it; None
        (the null level) when one side has no value."""
        if not left or not right:
            return None
        best, value = len(self.levels) - 1, left[0]
        for a in left:
            for b in right:
                for index, level in enumerate(self.levels[:best]):
                    if level.holds(a, b):
                        best, value = index, a
                        break
                if best == 0:
                    return 0, value
        return best, value

    def level(self, left: Sequence[str], right: Sequence[str]) -> int | None:
        found = self.best(left, right)
        return None if found is None else found[0]


@dataclass(frozen=True)
class Thresholds:
    """Match probabilities: at or above ``auto_link`` records link; from ``review`` they are
    recorded as a possible match."""

    auto_link: float = 0.95
    review: float = 0.6


@dataclass(frozen=True)
class TermFrequency:
    """How term-frequency adjustments are estimated: the value's share among customers, with
    ``pseudo_customers`` of prior weight at the level's u; the weight moves at most
    ``max_adjustment`` bits either way."""

    pseudo_customers: float = 2000.0
    max_adjustment: float = 3.0


@dataclass(frozen=True)
class Dependency:
    """Given ``given``'s level among ``given_levels`` (labels), the levels of ``comparison``
    named in ``u_probabilities`` use that u instead of their own (and no term frequency)."""

    comparison: str
    given: str
    given_levels: tuple[str, ...]
    u_probabilities: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "comparison": self.comparison,
            "given": self.given,
            "given_levels": list(self.given_levels),
            "u_probabilities": dict(self.u_probabilities),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Dependency:
        u = {str(label): float(value) for label, value in data["u_probabilities"].items()}
        if not all(0 < value <= 1 for value in u.values()):
            raise ConfigurationError(f"dependency of {data['comparison']}: u must lie in (0, 1]")
        return cls(str(data["comparison"]), str(data["given"]), tuple(data["given_levels"]), u)


@dataclass(frozen=True)
class Score:
    match_weight: float
    match_probability: float
    levels: dict[str, tuple[str, float]]  # comparison → (level label, its match weight)
    names_reversed: bool = False

    def evidence(self) -> dict[str, str]:
        found = {name: f"{label} ({weight:+.2f})" for name, (label, weight) in self.levels.items()}
        if self.names_reversed:
            found["name_order"] = "first and last name reversed"
        return found


def probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds: float = 2.0**weight
    return odds / (1.0 + odds)


@dataclass(frozen=True)
class Model:
    probability_two_random_records_match: float
    comparisons: tuple[Comparison, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    # Share of one person's record pairs with first and last name swapped; 0: never tried.
    reversed_names_m: float = 0.0
    term_frequency: TermFrequency = field(default_factory=TermFrequency)
    dependencies: tuple[Dependency, ...] = ()

    @property
    def prior_weight(self) -> float:
        lam = self.probability_two_random_records_match
        return math.log2(lam / (1 - lam))

    @property
    def tf_attributes(self) -> frozenset[str]:
        return frozenset(
            c.output_column_name for c in self.comparisons if any(x.tf_adjustment for x in c.levels)
        )

    def levels(self, left: Features, right: Features) -> list[int | None]:
        return [
            c.level(
                *compared_values(
                    c.output_column_name,
                    left.get(c.output_column_name, []),
                    right.get(c.output_column_name, []),
                )
            )
            for c in self.comparisons
        ]

    def tf_weight(self, level: ComparisonLevel, attribute: str, value: str, f: Frequency) -> float:
        """The level's weight for agreeing on ``value``, given how common the value is."""
        count, total = f(attribute, value)
        tf = self.term_frequency
        share = (count + tf.pseudo_customers * level.u_probability) / (total + tf.pseudo_customers)
        change = math.log2(level.u_probability / share)
        bound = tf.max_adjustment
        return level.match_weight + max(-bound, min(bound, change))

    def _score(self, left: Features, right: Features, frequency: Frequency | None) -> Score:
        reached: dict[str, tuple[ComparisonLevel, str] | None] = {}
        for comparison in self.comparisons:
            name = comparison.output_column_name
            best = comparison.best(*compared_values(name, left.get(name, []), right.get(name, [])))
            reached[name] = None if best is None else (comparison.levels[best[0]], best[1])
        household: dict[str, Mapping[str, float]] = {}
        for dependency in self.dependencies:
            given = reached.get(dependency.given)
            if given is not None and given[0].label in dependency.given_levels:
                household[dependency.comparison] = dependency.u_probabilities
        weight = self.prior_weight
        found: dict[str, tuple[str, float]] = {}
        for name, hit in reached.items():
            if hit is None:
                found[name] = ("null", 0.0)
                continue
            level, value = hit
            this = level.match_weight
            conditional = household.get(name, {}).get(level.label)
            if conditional is not None:
                this = math.log2(level.m_probability / conditional)
            elif level.tf_adjustment and frequency is not None:
                this = self.tf_weight(level, name, value, frequency)
            weight += this
            found[name] = (level.label, this)
        return Score(weight, probability(weight), found)

    def score(self, left: Features, right: Features, frequency: Frequency | None = None) -> Score:
        plain = self._score(left, right, frequency)
        # Swapping can only help a pair whose names do not both agree at their best level.
        names = (plain.levels.get("first_name"), plain.levels.get("last_name"))
        if self.reversed_names_m <= 0 or any(n is None or n[0] == "exact" for n in names):
            return plain
        swapped = reversed_names(right)
        if swapped is None:
            return plain
        other = self._score(left, swapped, frequency)
        m = self.reversed_names_m
        penalty = math.log2(m / (1 - m))
        weight = other.match_weight + penalty
        if weight <= plain.match_weight:
            return plain
        return Score(weight, probability(weight), other.levels, True)

    # -- JSON ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "link_type": "dedupe_only",
            "probability_two_random_records_match": self.probability_two_random_records_match,
            "thresholds": {
                "auto_link": self.thresholds.auto_link,
                "review": self.thresholds.review,
            },
            "reversed_names": {
                "columns": ["first_name", "last_name"],
                "m_probability": self.reversed_names_m,
            },
            "term_frequency": {
                "pseudo_customers": self.term_frequency.pseudo_customers,
                "max_adjustment": self.term_frequency.max_adjustment,
            },
            "dependencies": [d.to_json() for d in self.dependencies],
            "comparisons": [
                {
                    "output_column_name": c.output_column_name,
                    "comparison_levels": [{"label": "null", "is_null_level": True}]
                    + [_level_json(level) for level in c.levels],
                }
                for c in self.comparisons
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Model:
        try:
            comparisons = []
            for raw in data["comparisons"]:
                levels = [
                    _level_from_json(level)
                    for level in raw["comparison_levels"]
                    if not level.get("is_null_level")
                ]
                if not levels or levels[-1].predicate != "else":
                    raise ConfigurationError(f"{raw['output_column_name']}: last level is 'else'")
                comparisons.append(Comparison(raw["output_column_name"], tuple(levels)))
            thresholds = Thresholds(**data.get("thresholds", {}))
            lam = float(data["probability_two_random_records_match"])
            reversed_m = float(data.get("reversed_names", {}).get("m_probability", 0.0))
            tf = TermFrequency(**data.get("term_frequency", {}))
            dependencies = tuple(Dependency.from_json(d) for d in data.get("dependencies", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"not a match model: {exc}") from exc
        if not 0 < lam < 1:
            raise ConfigurationError("probability_two_random_records_match must lie in (0, 1)")
        if not 0 <= reversed_m < 1:
            raise ConfigurationError("reversed_names.m_probability must lie in [0, 1)")
        if tf.pseudo_customers <= 0 or tf.max_adjustment < 0:
            raise ConfigurationError("term_frequency: pseudo_customers > 0, max_adjustment >= 0")
        return cls(lam, tuple(comparisons), thresholds, reversed_m, tf, dependencies)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> Model:
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"cannot read match model {path}: {exc}") from exc

    def with_thresholds(self, auto_link: float | None, review: float | None) -> Model:
        return self.replace(
            thresholds=Thresholds(
                auto_link if auto_link is not None else self.thresholds.auto_link,
                review if review is not None else self.thresholds.review,
            )
        )

    def replace(self, **changes: Any) -> Model:
        return replace(self, **changes)


def _level_json(level: ComparisonLevel) -> dict[str, Any]:
    return {
        "label": level.label,
        "predicate": level.predicate,
        **({"parameters": dict(level.parameters)} if level.parameters else {}),
        "m_probability": level.m_probability,
        "u_probability": level.u_probability,
        "match_weight": round(level.match_weight, 4),
        **({"tf_adjustment": True} if level.tf_adjustment else {}),
    }


def _level_from_json(level: Mapping[str, Any]) -> ComparisonLevel:
    if level["predicate"] not in PREDICATES:
        raise ConfigurationError(f"unknown predicate {level['predicate']!r}")
    m, u = float(level["m_probability"]), float(level["u_probability"])
    if not (0 < m <= 1 and 0 < u <= 1):
        raise ConfigurationError(f"{level['label']}: m and u must lie in (0, 1]")
    return ComparisonLevel(
        level["label"],
        level["predicate"],
        m,
        u,
        level.get("parameters", {}),
        bool(level.get("tf_adjustment", False)),
    )
