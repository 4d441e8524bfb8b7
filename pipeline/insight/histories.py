"""Customer histories from journey events: each final customer's touches, in time order (pure).

Journey events are keyed by the customer an event reached when it was stitched; a later merge
moves that history to the survivor. ``histories`` follows the merges (the identity changes, or a
replay's final ``event_id → customer_id`` mapping) and groups each event once, by event id.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pipeline.contract.models import ChannelEvent, JourneyEvent
from pipeline.engine.traits import CLICK_AND_COLLECT, ORDER_TYPES, PICKUP_TYPE

__all__ = ["CLICK_AND_COLLECT", "ORDER_TYPES", "PICKUP_TYPE"]


@dataclass(frozen=True)
class Order:
    key: str
    customer: str
    at: datetime
    channel: str
    amount: Decimal
    currency: str
    click_and_collect: bool


def amount_of(event: ChannelEvent) -> Decimal:
    raw = event.properties.get("amount") or event.properties.get("total") or "0"
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return Decimal(0)
    return value if value.is_finite() and value >= 0 else Decimal(0)


def read_journeys(path: Path) -> list[JourneyEvent]:
    with path.open(encoding="utf-8") as lines:
        return [JourneyEvent.model_validate(json.loads(line)) for line in lines if line.strip()]


def histories(
    journeys: Iterable[JourneyEvent], final: Callable[[str], str] | None = None
) -> dict[str, list[ChannelEvent]]:
    """Final customer → its events, each once, sorted by event time (then id)."""
    by_customer: dict[str, dict[str, ChannelEvent]] = defaultdict(dict)
    forward = final or (lambda customer: customer)
    for journey in journeys:
        by_customer[forward(journey.customer_id)][journey.event.event_id] = journey.event
    return {
        customer: sorted(events.values(), key=lambda e: (e.occurred_at, e.event_id))
        for customer, events in by_customer.items()
    }


def orders_of(customer: str, events: Iterable[ChannelEvent]) -> list[Order]:
    """A customer's orders, each once: the first event that tells it gives time and channel."""
    found: dict[str, Order] = {}
    for event in events:
        key_property = ORDER_TYPES.get(event.event_type)
        if key_property is None:
            continue
        key = event.properties.get(key_property) or event.event_id
        fulfilment = event.properties.get("fulfilment", "")
        if key in found:
            if fulfilment == CLICK_AND_COLLECT:
                found[key] = replace(found[key], click_and_collect=True)
            continue
        found[key] = Order(
            key,
            customer,
            event.occurred_at,
            event.channel.value,
            amount_of(event),
            event.properties.get("currency", ""),
            fulfilment == CLICK_AND_COLLECT,
        )
    return sorted(found.values(), key=lambda o: (o.at, o.key))


def mix_of(channels: Iterable[str]) -> str:
    """A channel mix as one label: the distinct channels, sorted, joined by '+'."""
    return "+".join(sorted(set(channels))) or "none"
