"""Computed traits on hand-computed histories (docs/traits.md): revenue and orders counted once
per order, average order value, preferred channel and store, open cases, click & collect,
recently viewed products, the abandoned cart, merges and bounds."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pipeline.contract.models import Channel, ChannelEvent, Identifier
from pipeline.engine import traits
from pipeline.engine.profile import ProfileBook
from pipeline.engine.state import MemoryStore
from pipeline.vault.sealing import open_profile, seal_profile
from tests.factories import NOW, make_event

T0 = NOW - timedelta(days=10)


def _event(kind: str, hours: float, channel: Channel = Channel.web, **props: str) -> ChannelEvent:
    return make_event(
        event_type=kind,
        channel=channel,
        occurred_at=T0 + timedelta(hours=hours),
        properties=props,
        identifiers=[Identifier(namespace="email", value="kim@example.de")],
    )


def _history() -> list[ChannelEvent]:
    return [
        _event("page_viewed", 0),
        _event("product_viewed", 1, product_id="P-9"),
        _event("product_added", 2, sku="P-1"),
        _event("order_completed", 3, order_id="W-1", amount="100.00", currency="EUR"),
        # The shop's webhook tells the same order: counted once.
        _event(
            "order_placed", 3.1, Channel.ecommerce, order_id="W-1", total="100.00", currency="eur"
        ),
        _event(
            "purchase",
            50,
            Channel.store,
            receipt_id="R-7",
            amount="50.00",
            currency="EUR",
            store_id="S-1",
        ),
        _event("store_visit", 60, Channel.store, store_id="S-1"),
        _event(
            "order_placed",
            70,
            Channel.ecommerce,
            order_id="W-2",
            total="30.00",
            currency="EUR",
            fulfilment="click_and_collect",
            pickup_store_id="S-2",
        ),
        _event("ticket_opened", 80, Channel.chat, ticket_id="T-1"),
        _event("ticket_opened", 81, Channel.call_center, ticket_id="T-2"),
        _event("ticket_solved", 90, Channel.email, ticket_id="T-1"),
        _event("product_added", 100, sku="P-3"),
        _event("page_viewed", 101),
    ]


def _activity(events: list[ChannelEvent]) -> traits.Activity:
    activity = traits.Activity()
    for event in events:
        traits.note(activity, event)
    return activity


def test_a_hand_computed_history() -> None:
    now = T0 + timedelta(hours=130)  # 30 h after P-3 went into the cart
    found = traits.computed(_activity(_history()), now)
    assert found.order_count == 3  # W-1 (told twice), R-7, W-2
    assert found.revenue == {"EUR": "180.00"}
    assert found.average_order_value == {"EUR": "60.00"}
    assert found.revenue_by_channel == {
        "web": {"EUR": "100.00"},
        "store": {"EUR": "50.00"},
        "ecommerce": {"EUR": "30.00"},
    }
    assert found.first_order_at == T0 + timedelta(hours=3)
    assert found.last_order_at == T0 + timedelta(hours=70)
    assert found.days_since_last_order == 2  # 60 hours
    assert found.preferred_channel == "web"  # 6 of 13 events
    assert found.preferred_store == "S-1"  # purchase and visit; S-2 once (a pickup store)
    assert found.last_touch["store"] == T0 + timedelta(hours=60)
    assert (found.open_cases, found.open_case_since) == (1, T0 + timedelta(hours=81))
    assert found.click_and_collect_orders == 1
    assert found.recently_viewed == ["P-3", "P-1", "P-9"]
    assert found.abandoned_cart == ["P-3"]  # P-1 was followed by the order W-1


def test_a_cart_item_is_not_abandoned_within_the_window() -> None:
    now = T0 + timedelta(hours=110)  # 10 h after P-3 was added
    assert traits.computed(_activity(_history()), now).abandoned_cart == []


def test_a_merge_counts_an_order_both_customers_saw_once() -> None:
    history = _history()
    web_side = _activity(history[:4])  # W-1 from the web tracking ...
    shop_side = _activity(history[4:])  # ... and from the shop's webhook, and the rest
    merged = traits.merge(web_side, shop_side)
    whole = _activity(history)
    now = T0 + timedelta(hours=130)
    assert traits.computed(merged, now).revenue == traits.computed(whole, now).revenue
    assert merged.order_count == whole.order_count == 3
    assert traits.computed(merged, now).revenue_by_channel["ecommerce"] == {"EUR": "30.00"}
    assert sorted(merged.cases) == ["T-2"]
    assert merged.touches == whole.touches


def test_the_record_is_bounded() -> None:
    activity = traits.Activity()
    for n in range(traits.MAX_ORDERS + 100):
        traits.note(
            activity,
            _event(
                "purchase",
                n,
                Channel.store,
                receipt_id=f"R{n}",
                amount="1",
                currency="EUR",
                store_id=f"S{n}",
            ),
        )
    for n in range(traits.MAX_CART + 30):  # after the orders: nothing ordered since
        traits.note(activity, _event("product_added", 1000 + n, sku=f"P{n}"))
    assert len(activity.orders) == traits.MAX_ORDERS
    assert activity.order_count == traits.MAX_ORDERS + 100
    assert Decimal(activity.revenue["EUR"]) == traits.MAX_ORDERS + 100
    assert len(activity.stores) == traits.MAX_STORES
    assert len(activity.cart) == traits.MAX_CART and len(activity.viewed) == traits.MAX_VIEWED
    assert traits.load(traits.dump(activity)) == activity  # as the profile state keeps it


def test_the_profile_carries_them_and_a_seal_keeps_them() -> None:
    book = ProfileBook(MemoryStore())
    now = T0 + timedelta(hours=130)
    for event in _history():
        book.add_event("cus-1", event, [], now)
    profile = book.snapshot("cus-1", now)
    assert profile is not None and profile.computed is not None
    assert profile.computed.revenue == {"EUR": "180.00"}
    record = profile.to_avro()
    sealed = seal_profile(record, b"k" * 32, "t:p")
    assert sealed["computed"] is None
    opened = open_profile(sealed, b"k" * 32)
    assert opened["computed"]["revenue"] == {"EUR": "180.00"}
    assert opened["computed"]["abandoned_cart"] == ["P-3"]
