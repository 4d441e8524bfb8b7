"""The default match model: weights that work on typical retail customer data without training.

u: how often unrelated people agree by chance (a German surname like Müller is ~1% of people, a
first name ~1.5%, a birth date ~1/20,000, one address ~1/100,000); m: how often the same
person's records agree, given typing mistakes, nicknames, moves and second e-mail addresses.
Names agreeing exactly are adjusted by how common the name is among the customers seen.

Namesakes and relatives must not merge: two birth dates with nothing in common weigh -5 bits,
so the same name in the same city with another birth date stays below auto-link even for rare
names; at one address (a household) a shared surname is weak evidence (u 0.5 instead of 0.01,
a dependency), so the same surname and address with another first name and birth date stay
apart. A surname disagreeing weighs less than a first name disagreeing: people change surnames
(marriage), rarely first names.
"""

from __future__ import annotations

from typing import Any

from pipeline.engine.comparisons import (
    Comparison,
    ComparisonLevel,
    Dependency,
    Model,
    TermFrequency,
    Thresholds,
)


def _level(label: str, predicate: str, m: float, u: float, **parameters: Any) -> ComparisonLevel:
    tf = bool(parameters.pop("tf", False))
    return ComparisonLevel(label, predicate, m, u, parameters, tf)


def default_model() -> Model:
    return Model(
        probability_two_random_records_match=1e-4,
        comparisons=(
            Comparison(
                "first_name",
                (
                    _level("exact", "names_exact", 0.80, 0.015, tf=True),
                    _level("nickname", "names_nickname", 0.06, 0.002),
                    _level("jaro_winkler >= 0.92", "jaro_winkler", 0.06, 0.004, threshold=0.92),
                    _level("jaro_winkler >= 0.80", "jaro_winkler", 0.04, 0.03, threshold=0.80),
                    _level("else", "else", 0.03, 0.949),  # -5.0
                ),
            ),
            Comparison(
                "last_name",
                (
                    _level("exact", "names_exact", 0.82, 0.01, tf=True),
                    _level("double name part", "names_token", 0.06, 0.001),
                    _level("jaro_winkler >= 0.92", "jaro_winkler", 0.06, 0.002, threshold=0.92),
                    _level("jaro_winkler >= 0.80", "jaro_winkler", 0.03, 0.02, threshold=0.80),
                    _level("else", "else", 0.08, 0.967),  # -3.6: surnames change
                ),
            ),
            Comparison(
                "birth_date",
                (
                    _level("exact", "exact", 0.88, 0.00005),
                    _level("day and month swapped", "date_swap", 0.02, 0.00002),
                    _level("one digit off", "levenshtein", 0.06, 0.0015, distance=1),
                    _level("same year", "prefix", 0.02, 0.02, length=4),
                    _level("else", "else", 0.03, 0.97843),
                ),
            ),
            Comparison(
                "address",
                (
                    _level("same address", "address", 0.70, 0.00001, grade=7),
                    _level("same address, typing mistakes", "address", 0.12, 0.00001, grade=6),
                    _level("same street", "address", 0.04, 0.0002, grade=5),
                    _level("same place, no street to compare", "address", 0.75, 0.02, grade=4),
                    _level(
                        "other street, same postal code and city", "address", 0.04, 0.003, grade=3
                    ),
                    _level("same postal code or city", "address", 0.03, 0.01, grade=2),
                    _level("same region", "address", 0.02, 0.1, grade=1),
                    _level("else", "else", 0.05, 0.887),
                ),
            ),
            Comparison(
                "address_line2",
                (
                    _level("exact", "exact", 0.50, 0.05),
                    _level("jaro_winkler >= 0.9", "jaro_winkler", 0.10, 0.02, threshold=0.9),
                    _level("else", "else", 0.40, 0.93),
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
        reversed_names_m=0.03,
        term_frequency=TermFrequency(pseudo_customers=2000.0, max_adjustment=2.0),
        dependencies=(
            Dependency(
                "last_name",
                given="address",
                given_levels=("same address", "same address, typing mistakes"),
                u_probabilities={"exact": 0.5, "double name part": 0.05, "else": 0.45},
            ),
        ),
    )
