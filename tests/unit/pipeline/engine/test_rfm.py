"""RFM against the population's quintiles, on hand-computed customers."""

from __future__ import annotations

from datetime import timedelta

from pipeline.engine import rfm
from tests.factories import NOW


def _profile(days: int, orders: int, revenue: str) -> dict[str, object]:
    return {
        "computed": {
            "order_count": orders,
            "last_order_at": (NOW - timedelta(days=days)).isoformat(),
            "revenue": {"EUR": revenue},
        }
    }


def test_quintiles_and_scores() -> None:
    assert rfm.cut_points([]) == []
    assert rfm.cut_points([float(v) for v in range(1, 11)]) == [2.0, 4.0, 6.0, 8.0]
    assert [rfm.rank(v, [3.0, 5.0, 7.0, 9.0]) for v in (1, 3, 4, 9, 10)] == [1, 1, 2, 4, 5]
    population = [
        m
        for d, o, r in [
            (1, 9, "900"),
            (10, 5, "500"),
            (40, 3, "300"),
            (90, 2, "200"),
            (300, 1, "100"),
        ]
        if (m := rfm.measures(_profile(d, o, r), NOW, "EUR")) is not None
    ]
    bins = rfm.population_bins(population, "EUR")
    best = rfm.score(population[0], bins)
    worst = rfm.score(population[-1], bins)
    assert best == {"r": 5, "f": 5, "m": 5, "score": "555"}
    assert worst == {"r": 1, "f": 1, "m": 1, "score": "111"}
    assert rfm.measures({"computed": {"order_count": 0}}, NOW, "EUR") is None


def test_a_crowd_of_equal_values_ranks_low() -> None:
    cuts = rfm.cut_points([1.0] * 8 + [2.0, 6.0])
    assert rfm.rank(1.0, cuts) == 1  # the many one-order customers are not "frequent"
    assert rfm.rank(6.0, cuts) == 5


def test_audiences_reading_the_score_are_found() -> None:
    assert rfm.uses_rfm({"all": [{"trait": "rfm.score", "op": "in", "value": ["555"]}]})
    assert not rfm.uses_rfm({"trait": "computed.order_count", "op": "gte", "value": 1})
