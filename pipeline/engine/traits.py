"""Computed traits: what a customer's events say for activation — revenue, orders, preferred
channel and store, open support cases, recent interest, an abandoned cart (pure).

The profile stage keeps an ``Activity`` record per customer (in its state under ``"act"``,
bounded: see the MAX_* constants), updated by every event (``note``) and merged when two
customers merge (``merge``); ``computed`` turns it into the ``ComputedTraits`` of the profile.
Definitions and formulas: docs/traits.md. A split rebuilds the record from the part's events.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from pipeline.contract.models import ChannelEvent, ComputedTraits

# Events that are orders, and the property that names the order (one order may be told by
# several channels: the shop's webhook and the web tracking of the same checkout).
ORDER_TYPES = {"order_completed": "order_id", "order_placed": "order_id", "purchase": "receipt_id"}
PICKUP_TYPE = "order_picked_up"
CLICK_AND_COLLECT = "click_and_collect"
VIEW_TYPES = frozenset({"product_viewed"})
CART_TYPES = frozenset({"product_added"})
CASE_OPENED, CASE_SOLVED = "ticket_opened", "ticket_solved"
# A cart item not ordered within this window is abandoned.
CART_WINDOW = timedelta(hours=24)
CURRENCY = re.compile(r"^[A-Z]{3}$")

MAX_ORDERS = 200  # order keys kept to recognise one order told twice
MAX_CURRENCIES = 10
MAX_STORES = 50
MAX_CASES = 20
MAX_VIEWED = 10
MAX_CART = 20
MAX_KEY_CHARS = 64


class Activity(msgspec.Struct):
    """What ``computed`` needs, kept in the profile state (a few KiB at most: every map and
    list is bounded, every key cut to MAX_KEY_CHARS)."""

    revenue: dict[str, str] = {}  # currency → decimal string
    by_channel: dict[str, dict[str, str]] = {}  # channel → currency → decimal string
    # order key → [event time (ms), channel, currency, amount]: the latest MAX_ORDERS, to count an
    # order told twice (or to both customers of a merge) once.
    orders: dict[str, list[Any]] = {}
    order_count: int = 0
    first_order: int | None = None
    last_order: int | None = None
    click_and_collect: int = 0
    touches: dict[str, int] = {}  # channel → events
    last_touch: dict[str, int] = {}  # channel → latest event time (ms)
    stores: dict[str, int] = {}  # store id → visits and orders there
    cases: dict[str, int] = {}  # open support case id → opened at (ms)
    viewed: list[str] = []  # product ids, latest last
    cart: dict[str, int] = {}  # product id → added at (ms), not ordered since


_to_builtins = msgspec.to_builtins


def load(raw: dict[str, Any] | None) -> Activity:
    return msgspec.convert(raw or {}, Activity)


def dump(activity: Activity) -> dict[str, Any]:
    found: dict[str, Any] = _to_builtins(activity)
    return found


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _key(value: Any) -> str:
    return str(value).strip()[:MAX_KEY_CHARS]


def _add(amounts: dict[str, str], currency: str, amount: Decimal) -> None:
    if currency in amounts or len(amounts) < MAX_CURRENCIES:
        amounts[currency] = str(Decimal(amounts.get(currency, "0")) + amount)


def _keep_top(entries: dict[str, Any], limit: int) -> None:
    """Keep the ``limit`` entries with the largest values: the latest times (a time, or a list
    starting with one), the highest counts."""
    if len(entries) > limit:

        def when(key: str) -> tuple[int, str]:
            value = entries[key]
            return (value[0] if isinstance(value, list) else value), key

        for key in sorted(entries, key=when)[: len(entries) - limit]:
            del entries[key]


def _amount(event: ChannelEvent) -> tuple[Decimal, str] | None:
    raw = event.properties.get("amount") or event.properties.get("total") or ""
    currency = (event.properties.get("currency") or "").strip().upper()
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or len(currency) != 3 or not currency.isalpha():
        return None
    return amount, currency


def tally_order(state: dict[str, Any], event: ChannelEvent, max_currencies: int) -> None:
    """The profile's ``order_count`` and ``order_totals``: every order event counts, its
    ``amount`` in its ``currency`` (at most ``max_currencies`` of them) adds up."""
    if event.event_type not in ORDER_TYPES:
        return
    state["orders"] += 1
    amount, currency = event.properties.get("amount"), event.properties.get("currency")
    currency = (currency or "").strip().upper()
    room = currency in state["totals"] or len(state["totals"]) < max_currencies
    if amount and CURRENCY.match(currency) and room:
        try:
            total = Decimal(state["totals"].get(currency, "0")) + Decimal(amount)
            state["totals"][currency] = str(total)
        except InvalidOperation:
            pass  # an unreadable amount counts the order, not the money


def note(activity: Activity, event: ChannelEvent) -> None:
    """Account one event (each event once: the profile stage skips repeats)."""
    at, channel = _ms(event.occurred_at), event.channel.value
    props = event.properties
    activity.touches[channel] = activity.touches.get(channel, 0) + 1
    activity.last_touch[channel] = max(at, activity.last_touch.get(channel, at))
    store = props.get("store_id") or props.get("pickup_store_id")
    if store:
        key = _key(store)
        activity.stores[key] = activity.stores.get(key, 0) + 1
        _keep_top(activity.stores, MAX_STORES)
    kind = event.event_type
    if kind in ORDER_TYPES:
        _order(activity, event, at, channel)
    elif kind in VIEW_TYPES or kind in CART_TYPES:
        product = props.get("product_id") or props.get("sku")
        if product:
            key = _key(product)
            activity.viewed = [p for p in activity.viewed if p != key][-(MAX_VIEWED - 1) :]
            activity.viewed.append(key)
            if kind in CART_TYPES:
                activity.cart[key] = at
                _keep_top(activity.cart, MAX_CART)
    elif kind == CASE_OPENED and props.get("ticket_id"):
        activity.cases[_key(props["ticket_id"])] = at
        _keep_top(activity.cases, MAX_CASES)
    elif kind == CASE_SOLVED and props.get("ticket_id"):
        activity.cases.pop(_key(props["ticket_id"]), None)


def _order(activity: Activity, event: ChannelEvent, at: int, channel: str) -> None:
    order_id = event.properties.get(ORDER_TYPES[event.event_type])
    key = _key(order_id) if order_id else f"event:{_key(event.event_id)}"
    # Ordered: what was in the cart before the order is no longer abandoned.
    activity.cart = {p: added for p, added in activity.cart.items() if added > at}
    if key in activity.orders:
        return  # the same order told by another channel
    found = _amount(event)
    amount, currency = found if found is not None else (Decimal(0), "")
    activity.orders[key] = [at, channel, currency, str(amount)]
    _keep_top(activity.orders, MAX_ORDERS)
    activity.order_count += 1
    activity.first_order = at if activity.first_order is None else min(activity.first_order, at)
    activity.last_order = at if activity.last_order is None else max(activity.last_order, at)
    if event.properties.get("fulfilment") == CLICK_AND_COLLECT:
        activity.click_and_collect += 1
    if found is not None:
        _count_revenue(activity, channel, currency, amount)


def _count_revenue(activity: Activity, channel: str, currency: str, amount: Decimal) -> None:
    _add(activity.revenue, currency, amount)
    if channel in activity.by_channel or len(activity.by_channel) < 32:
        _add(activity.by_channel.setdefault(channel, {}), currency, amount)


def merge(mine: Activity, other: Activity) -> Activity:
    """Two customers' activity as one (a merge): an order both counted counts once."""
    merged = msgspec.convert(dump(mine), Activity)
    shared = set(mine.orders) & set(other.orders)
    merged.order_count += other.order_count - len(shared)
    merged.click_and_collect += other.click_and_collect
    for currency, amount in other.revenue.items():
        _add(merged.revenue, currency, Decimal(amount))
    for channel, amounts in other.by_channel.items():
        for currency, amount in amounts.items():
            if channel in merged.by_channel or len(merged.by_channel) < 32:
                _add(merged.by_channel.setdefault(channel, {}), currency, Decimal(amount))
    for key in shared:  # counted by both: take the other's count of it back out
        _at, channel, currency, amount = other.orders[key]
        if currency and Decimal(amount):
            _count_revenue(merged, channel, currency, -Decimal(amount))
    merged.orders = {**other.orders, **mine.orders}
    for bound, pick in (("first_order", min), ("last_order", max)):
        values = [v for v in (getattr(mine, bound), getattr(other, bound)) if v is not None]
        setattr(merged, bound, pick(values) if values else None)
    for channel, count in other.touches.items():
        merged.touches[channel] = merged.touches.get(channel, 0) + count
    for channel, at in other.last_touch.items():
        merged.last_touch[channel] = max(at, merged.last_touch.get(channel, at))
    for store, count in other.stores.items():
        merged.stores[store] = merged.stores.get(store, 0) + count
    merged.cases = {**other.cases, **mine.cases}
    merged.cart = {**other.cart, **mine.cart}
    merged.viewed = ([p for p in other.viewed if p not in mine.viewed] + mine.viewed)[-MAX_VIEWED:]
    for entries, limit in (
        (merged.orders, MAX_ORDERS),
        (merged.stores, MAX_STORES),
        (merged.cases, MAX_CASES),
        (merged.cart, MAX_CART),
    ):
        _keep_top(entries, limit)
    return merged


def _from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _preferred(counts: dict[str, int]) -> str | None:
    """The most frequent key; ties by name (stable across runs)."""
    return min(counts, key=lambda k: (-counts[k], k)) if counts else None


def computed(
    activity: Activity, now: datetime, cart_window: timedelta = CART_WINDOW
) -> ComputedTraits:
    """The profile's computed traits as of ``now`` (its update time)."""
    now_ms = _ms(now)
    averages = {
        currency: str((Decimal(total) / activity.order_count).quantize(Decimal("0.01")))
        for currency, total in activity.revenue.items()
        if activity.order_count
    }
    abandoned = sorted(
        (
            p
            for p, added in activity.cart.items()
            if now_ms - added >= cart_window.total_seconds() * 1000
        ),
        key=lambda p: activity.cart[p],
    )
    last = activity.last_order
    return ComputedTraits(
        revenue=dict(activity.revenue),
        revenue_by_channel={c: dict(v) for c, v in activity.by_channel.items()},
        order_count=activity.order_count,
        average_order_value=averages,
        first_order_at=_from_ms(activity.first_order),
        last_order_at=_from_ms(last),
        days_since_last_order=None if last is None else max(0, (now_ms - last) // 86_400_000),
        preferred_channel=_preferred(activity.touches),
        preferred_store=_preferred(activity.stores),
        last_touch={c: _from_ms(at) for c, at in activity.last_touch.items()},
        open_cases=len(activity.cases),
        open_case_since=_from_ms(min(activity.cases.values())) if activity.cases else None,
        click_and_collect_orders=activity.click_and_collect,
        recently_viewed=list(reversed(activity.viewed)),
        abandoned_cart=abandoned,
    )
