"""Fellegi-Sunter comparisons, in Splink's vocabulary, as data (pure).

A *model* holds ``probability_two_random_records_match`` (the prior) and *comparisons*; each
comparison looks at one attribute of two records and has ordered *comparison levels* — a null
level first, then from the strictest agreement to ``else``. The first level whose predicate
holds decides; its ``m_probability`` (how often matching records fall in this level) and
``u_probability`` (how often non-matching ones do) give its ``match_weight`` = log2(m / u).
A pair's match weight is the prior's log-odds plus the sum of its levels' weights; its match
probability is 2^w / (1 + 2^w). The model is saved and loaded as JSON (``omnistitch train``
writes one; ``--model`` reads one).

Records are *features*: attribute → a few normalised values (a profile may have seen several
spellings or addresses); a comparison takes the best level over all pairs of values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rapidfuzz.distance import JaroWinkler, Levenshtein

from pipeline.contract.models import Traits
from pipeline.engine.identifiers import EMAIL, PHONE, Node
from pipeline.engine.names import digits, house_key, name_forms, street_key
from pipeline.exceptions import ConfigurationError

Features = dict[str, list[str]]
MAX_VALUES_PER_ATTRIBUTE = 4

# -- features ----------------------------------------------------------------------------------


def features_of(traits: Traits, nodes: Sequence[Node]) -> Features:
    """What a record says about the person, normalised for comparison."""
    found: Features = {}

    def put(attribute: str, value: str | None) -> None:
        if value:
            found.setdefault(attribute, [])
            if value not in found[attribute]:
                found[attribute].append(value)

    put("first_name", (traits.first_name or "").strip())
    put("last_name", (traits.last_name or "").strip())
    birth = (traits.birth_date or "").strip()
    put("birth_date", birth if len(birth) == 10 and birth[4] == "-" else None)
    if traits.street:
        put("street", f"{street_key(traits.street)}|{house_key(traits.house_number or '')}")
    put("postal_code", digits(traits.postal_code or "") or None)
    put("city", street_key(traits.city) if traits.city else None)
    for node in nodes:
        if node.namespace == EMAIL:
            put("email", node.value)
        elif node.namespace == PHONE:
            put("phone", node.value)
    return found


def merge_features(into: Features, other: Features) -> Features:
    """Both records' values, at most MAX_VALUES_PER_ATTRIBUTE per attribute (oldest kept)."""
    merged = {k: list(v) for k, v in into.items()}
    for attribute, values in other.items():
        target = merged.setdefault(attribute, [])
        for value in values:
            if value not in target and len(target) < MAX_VALUES_PER_ATTRIBUTE:
                target.append(value)
    return merged


# -- level predicates: (left value, right value, level parameters) -> holds -------------------


def _names_exact(a: str, b: str, _p: Mapping[str, Any]) -> bool:
    fa, fb = name_forms(a), name_forms(b)
    return bool(fa and fb and fa.forms & fb.forms)


def _names_nickname(a: str, b: str, _p: Mapping[str, Any]) -> bool:
    fa, fb = name_forms(a), name_forms(b)
    return bool(fa and fb and fa.canonical & fb.canonical)


def _names_token(a: str, b: str, _p: Mapping[str, Any]) -> bool:
    fa, fb = name_forms(a), name_forms(b)
    return bool(fa and fb and (fa.tokens & fb.tokens))


@lru_cache(maxsize=1 << 16)
def _jw(a: str, b: str) -> float:
    fa, fb = name_forms(a), name_forms(b)
    if not fa or not fb:
        return float(JaroWinkler.similarity(a.casefold(), b.casefold()))
    return float(
        max(JaroWinkler.similarity(x, y) for x in fa.forms for y in fb.forms if " " not in x + y)
        if any(" " not in x for x in fa.forms) and any(" " not in y for y in fb.forms)
        else JaroWinkler.similarity(fa.full, fb.full)
    )


def _jaro_winkler(a: str, b: str, p: Mapping[str, Any]) -> bool:
    return _jw(a, b) >= float(p["threshold"])


def _exact(a: str, b: str, _p: Mapping[str, Any]) -> bool:
    return a == b


def _date_swap(a: str, b: str, _p: Mapping[str, Any]) -> bool:
    return a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]


def _levenshtein(a: str, b: str, p: Mapping[str, Any]) -> bool:
    return int(Levenshtein.distance(a, b)) <= int(p["distance"])


def _prefix(a: str, b: str, p: Mapping[str, Any]) -> bool:
    n = int(p["length"])
    return len(a) >= n and a[:n] == b[:n]


def _street_fuzzy(a: str, b: str, p: Mapping[str, Any]) -> bool:
    sa, ha = a.split("|", 1)
    sb, hb = b.split("|", 1)
    return ha == hb and float(JaroWinkler.similarity(sa, sb)) >= float(p["threshold"])


def _email_local(a: str, b: str, p: Mapping[str, Any]) -> bool:
    la, lb = a.split("@", 1)[0], b.split("@", 1)[0]
    return int(Levenshtein.distance(la, lb)) <= int(p.get("distance", 1))


def _suffix(a: str, b: str, p: Mapping[str, Any]) -> bool:
    n = int(p["length"])
    return len(a) >= n and a[-n:] == b[-n:]


def _always(_a: str, _b: str, _p: Mapping[str, Any]) -> bool:
    return True


PREDICATES: dict[str, Callable[[str, str, Mapping[str, Any]], bool]] = {
    "names_exact": _names_exact,
    "names_nickname": _names_nickname,
    "names_token": _names_token,
    "jaro_winkler": _jaro_winkler,
    "exact": _exact,
    "date_swap": _date_swap,
    "levenshtein": _levenshtein,
    "prefix": _prefix,
    "street_fuzzy": _street_fuzzy,
    "email_local": _email_local,
    "suffix": _suffix,
    "else": _always,
}

# -- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonLevel:
    label: str
    predicate: str
    m_probability: float
    u_probability: float
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def match_weight(self) -> float:
        return math.log2(self.m_probability / self.u_probability)

    def holds(self, a: str, b: str) -> bool:
        return PREDICATES[self.predicate](a, b, self.parameters)


@dataclass(frozen=True)
class Comparison:
    output_column_name: str
    levels: tuple[ComparisonLevel, ...]  # strictest first, ``else`` last; null is implicit

    def level(self, left: Sequence[str], right: Sequence[str]) -> int | None:
        """Index of the best level over all pairs of values; None (null level) if one is empty."""
        if not left or not right:
            return None
        best = len(self.levels) - 1
        for a in left:
            for b in right:
                for index, level in enumerate(self.levels[:best]):
                    if level.holds(a, b):
                        best = index
                        break
                if best == 0:
                    return 0
        return best


@dataclass(frozen=True)
class Thresholds:
    """Match probabilities: at or above ``auto_link`` records link; from ``review`` they are
    recorded as a possible match."""

    auto_link: float = 0.95
    review: float = 0.6


@dataclass(frozen=True)
class Score:
    match_weight: float
    match_probability: float
    levels: dict[str, tuple[str, float]]  # comparison → (level label, its match weight)

    def evidence(self) -> dict[str, str]:
        return {name: f"{label} ({weight:+.2f})" for name, (label, weight) in self.levels.items()}


def probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    odds: float = 2.0**weight
    return odds / (1.0 + odds)


@dataclass(frozen=True)
class Model:
    probability_two_random_records_match: float
    comparisons: tuple[Comparison, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def prior_weight(self) -> float:
        lam = self.probability_two_random_records_match
        return math.log2(lam / (1 - lam))

    def levels(self, left: Features, right: Features) -> list[int | None]:
        return [
            c.level(left.get(c.output_column_name, []), right.get(c.output_column_name, []))
            for c in self.comparisons
        ]

    def score(self, left: Features, right: Features) -> Score:
        weight = self.prior_weight
        found: dict[str, tuple[str, float]] = {}
        for comparison, index in zip(self.comparisons, self.levels(left, right), strict=True):
            if index is None:
                found[comparison.output_column_name] = ("null", 0.0)
                continue
            level = comparison.levels[index]
            weight += level.match_weight
            found[comparison.output_column_name] = (level.label, level.match_weight)
        return Score(weight, probability(weight), found)

    # -- JSON ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "link_type": "dedupe_only",
            "probability_two_random_records_match": self.probability_two_random_records_match,
            "thresholds": {
                "auto_link": self.thresholds.auto_link,
                "review": self.thresholds.review,
            },
            "comparisons": [
                {
                    "output_column_name": c.output_column_name,
                    "comparison_levels": [{"label": "null", "is_null_level": True}]
                    + [
                        {
                            "label": level.label,
                            "predicate": level.predicate,
                            **({"parameters": dict(level.parameters)} if level.parameters else {}),
                            "m_probability": level.m_probability,
                            "u_probability": level.u_probability,
                            "match_weight": round(level.match_weight, 4),
                        }
                        for level in c.levels
                    ],
                }
                for c in self.comparisons
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Model:
        try:
            comparisons = []
            for raw in data["comparisons"]:
                levels = []
                for level in raw["comparison_levels"]:
                    if level.get("is_null_level"):
                        continue
                    if level["predicate"] not in PREDICATES:
                        raise ConfigurationError(f"unknown predicate {level['predicate']!r}")
                    m, u = float(level["m_probability"]), float(level["u_probability"])
                    if not (0 < m <= 1 and 0 < u <= 1):
                        raise ConfigurationError(f"{level['label']}: m and u must lie in (0, 1]")
                    levels.append(
                        ComparisonLevel(
                            level["label"], level["predicate"], m, u, level.get("parameters", {})
                        )
                    )
                if not levels or levels[-1].predicate != "else":
                    raise ConfigurationError(f"{raw['output_column_name']}: last level is 'else'")
                comparisons.append(Comparison(raw["output_column_name"], tuple(levels)))
            thresholds = Thresholds(**data.get("thresholds", {}))
            lam = float(data["probability_two_random_records_match"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"not a match model: {exc}") from exc
        if not 0 < lam < 1:
            raise ConfigurationError("probability_two_random_records_match must lie in (0, 1)")
        return cls(lam, tuple(comparisons), thresholds)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> Model:
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"cannot read match model {path}: {exc}") from exc

    def with_thresholds(self, auto_link: float | None, review: float | None) -> Model:
        return Model(
            self.probability_two_random_records_match,
            self.comparisons,
            Thresholds(
                auto_link if auto_link is not None else self.thresholds.auto_link,
                review if review is not None else self.thresholds.review,
            ),
        )


def _level(label: str, predicate: str, m: float, u: float, **parameters: Any) -> ComparisonLevel:
    return ComparisonLevel(label, predicate, m, u, parameters)


def default_model() -> Model:
    """Weights that work on typical retail customer data without training.

    u: how often unrelated people agree by chance (a German surname like Müller is ~1% of
    people, a first name ~1.5%, a birth date ~1/20,000, a postal code ~1/100); m: how often
    the same person's records agree, given typing mistakes, nicknames, moves and second
    e-mail addresses.
    """
    return Model(
        probability_two_random_records_match=1e-4,
        comparisons=(
            Comparison(
                "first_name",
                (
                    _level("exact", "names_exact", 0.80, 0.015),
                    _level("nickname", "names_nickname", 0.06, 0.002),
                    _level("jaro_winkler >= 0.92", "jaro_winkler", 0.06, 0.004, threshold=0.92),
                    _level("jaro_winkler >= 0.80", "jaro_winkler", 0.04, 0.03, threshold=0.80),
                    _level("else", "else", 0.04, 0.949),
                ),
            ),
            Comparison(
                "last_name",
                (
                    _level("exact", "names_exact", 0.82, 0.01),
                    _level("double name part", "names_token", 0.06, 0.001),
                    _level("jaro_winkler >= 0.92", "jaro_winkler", 0.06, 0.002, threshold=0.92),
                    _level("jaro_winkler >= 0.80", "jaro_winkler", 0.03, 0.02, threshold=0.80),
                    _level("else", "else", 0.03, 0.967),
                ),
            ),
            Comparison(
                "birth_date",
                (
                    _level("exact", "exact", 0.90, 0.00005),
                    _level("day and month swapped", "date_swap", 0.02, 0.00002),
                    _level("one digit off", "levenshtein", 0.04, 0.0015, distance=1),
                    _level("same year", "prefix", 0.02, 0.02, length=4),
                    _level("else", "else", 0.02, 0.97843),
                ),
            ),
            Comparison(
                "street",
                (
                    _level("exact", "exact", 0.75, 0.0005),
                    _level(
                        "same number, similar street", "street_fuzzy", 0.08, 0.0002, threshold=0.88
                    ),
                    _level("else", "else", 0.17, 0.9993),
                ),
            ),
            Comparison(
                "postal_code",
                (
                    _level("exact", "exact", 0.80, 0.01),
                    _level("same region (3 digits)", "prefix", 0.03, 0.03, length=3),
                    _level("else", "else", 0.17, 0.96),
                ),
            ),
            Comparison(
                "city",
                (
                    _level("exact", "exact", 0.82, 0.05),
                    _level("jaro_winkler >= 0.9", "jaro_winkler", 0.03, 0.005, threshold=0.9),
                    _level("else", "else", 0.15, 0.945),
                ),
            ),
            Comparison(
                "email",
                (
                    _level("exact", "exact", 0.55, 0.0001),
                    # Local parts repeat the name: weak evidence beyond the name comparisons.
                    _level("same local part (±1)", "email_local", 0.10, 0.01, distance=1),
                    _level("else", "else", 0.30, 0.9994),
                ),
            ),
            Comparison(
                "phone",
                (
                    _level("exact", "exact", 0.60, 0.0001),
                    _level("same last 7 digits", "suffix", 0.10, 0.0002, length=7),
                    _level("else", "else", 0.30, 0.9997),
                ),
            ),
        ),
        thresholds=Thresholds(auto_link=0.95, review=0.6),
    )
