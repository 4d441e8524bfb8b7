"""RFM: recency, frequency and monetary value scored 1-5 against the population (pure).

Bins are the quintile cut points of each measure over the customers with at least one order
(``cut_points``), refreshed periodically by the activation stage; a customer's score is one
digit per measure (``score``): 5 is best — the most recent order, the most orders, the most
revenue. Customers without an order have no score. Definitions: docs/traits.md.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

BINS = 5


def cut_points(values: Sequence[float], bins: int = BINS) -> list[float]:
    """The ``bins - 1`` cut points splitting ``values`` into groups of (nearly) equal size:
    each the largest value of its group."""
    ordered = sorted(values)
    if not ordered:
        return []
    return [ordered[max(0, (len(ordered) * k) // bins - 1)] for k in range(1, bins)]


def rank(value: float, cuts: Sequence[float]) -> int:
    """1..len(cuts)+1: the first group whose largest value reaches the value (a crowd of equal
    values stays in the lowest group it fills)."""
    return bisect_left(list(cuts), value) + 1


def uses_rfm(condition: Any) -> bool:
    """Whether an audience condition reads the RFM score (re-evaluated when bins refresh)."""
    if isinstance(condition, Mapping):
        return any(
            (k in ("trait", "of") and isinstance(v, str) and v.startswith("rfm.")) or uses_rfm(v)
            for k, v in condition.items()
        )
    if isinstance(condition, list):
        return any(uses_rfm(v) for v in condition)
    return False


@dataclass(frozen=True)
class Bins:
    recency_days: list[float]
    frequency: list[float]
    monetary: list[float]
    currency: str


@dataclass(frozen=True)
class Measures:
    recency_days: float
    frequency: float
    monetary: float


def measures(profile: Mapping[str, Any], now: datetime, currency: str) -> Measures | None:
    """A profile's RFM measures from its computed traits (None: no order yet)."""
    computed = profile.get("computed") or {}
    orders = int(computed.get("order_count") or 0)
    last = computed.get("last_order_at")
    if orders <= 0 or last is None:
        return None
    if isinstance(last, str):
        last = datetime.fromisoformat(last.replace("Z", "+00:00"))
    try:
        money = float(Decimal((computed.get("revenue") or {}).get(currency, "0")))
    except InvalidOperation:
        money = 0.0
    return Measures(max(0.0, (now - last).total_seconds() / 86_400), float(orders), money)


def population_bins(all_measures: Sequence[Measures], currency: str) -> Bins:
    return Bins(
        cut_points([m.recency_days for m in all_measures]),
        cut_points([m.frequency for m in all_measures]),
        cut_points([m.monetary for m in all_measures]),
        currency,
    )


def score(found: Measures, bins: Bins) -> dict[str, Any]:
    """{"r", "f", "m": 1..5, "score": "RFM" digits}; recent is better, so recency is reversed."""
    r = BINS + 1 - rank(found.recency_days, bins.recency_days)
    f = rank(found.frequency, bins.frequency)
    m = rank(found.monetary, bins.monetary)
    return {"r": r, "f": f, "m": m, "score": f"{r}{f}{m}"}
