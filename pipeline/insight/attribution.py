"""Orders and revenue attributed to the channels of the touches that led to them (pure).

For each order, its touches are the customer's events in the lookback window before the order,
except the order's own events and what others did without the customer acting: a message
delivered (``email_delivered``), a CRM record or a support ticket updated by staff
(``crm_record_updated``, ``ticket_updated``, ``ticket_solved``) — the channels the customer
used. Models: first touch (all credit to the first), last touch (to the last), linear (equal
shares), position-based (40 % to the first, 40 % to the last, 20 % shared by the ones between;
one touch takes all, two take half each). An order without touches is credited to its own
channel.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from pipeline.contract.models import ChannelEvent
from pipeline.insight.histories import ORDER_TYPES, Order

MODELS = ("first_touch", "last_touch", "linear", "position_based")
NOT_A_TOUCH = frozenset(
    {"email_delivered", "crm_record_updated", "ticket_updated", "ticket_solved"}
)


def touches_before(
    order: Order, events: Sequence[ChannelEvent], lookback: timedelta
) -> list[ChannelEvent]:
    start = order.at - lookback
    return [
        e
        for e in events
        if start <= e.occurred_at < order.at
        and e.event_type not in NOT_A_TOUCH
        and e.event_type not in ORDER_TYPES
    ]


def shares(channels: Sequence[str], model: str) -> dict[str, Decimal]:
    """Credit per channel for one order (the shares add up to 1)."""
    credit: dict[str, Decimal] = defaultdict(Decimal)
    n = len(channels)
    if model == "first_touch":
        credit[channels[0]] += 1
    elif model == "last_touch":
        credit[channels[-1]] += 1
    elif model == "linear":
        for channel in channels:
            credit[channel] += Decimal(1) / n
    elif model == "position_based":
        if n <= 2:
            for channel in channels:
                credit[channel] += Decimal(1) / n
        else:
            credit[channels[0]] += Decimal("0.4")
            credit[channels[-1]] += Decimal("0.4")
            for channel in channels[1:-1]:
                credit[channel] += Decimal("0.2") / (n - 2)
    else:
        raise ValueError(f"unknown attribution model {model!r}")
    return dict(credit)


@dataclass(frozen=True)
class Attribution:
    orders: dict[str, dict[str, Decimal]]  # model → channel → orders credited
    revenue: dict[str, dict[str, Decimal]]  # model → channel → revenue credited


def attribute(
    orders_by_customer: Mapping[str, Sequence[Order]],
    events_by_customer: Mapping[str, Sequence[ChannelEvent]],
    lookback: timedelta,
) -> Attribution:
    orders: dict[str, dict[str, Decimal]] = {m: defaultdict(Decimal) for m in MODELS}
    revenue: dict[str, dict[str, Decimal]] = {m: defaultdict(Decimal) for m in MODELS}
    for customer, customer_orders in orders_by_customer.items():
        events = events_by_customer[customer]
        for order in customer_orders:
            channels = [e.channel.value for e in touches_before(order, events, lookback)]
            channels = channels or [order.channel]
            for model in MODELS:
                for channel, share in shares(channels, model).items():
                    orders[model][channel] += share
                    revenue[model][channel] += share * order.amount
    return Attribution(
        {m: dict(v) for m, v in orders.items()}, {m: dict(v) for m, v in revenue.items()}
    )
