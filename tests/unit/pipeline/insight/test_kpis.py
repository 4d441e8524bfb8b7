"""KPIs on two hand-computed customer histories (docs/kpis.md has the definitions)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from pipeline.contract.models import Channel, ChannelEvent, Identifier, JourneyEvent
from pipeline.insight.attribution import shares
from pipeline.insight.histories import histories, orders_of
from pipeline.insight.kpis import Report, render, report
from tests.factories import NOW, make_event

T0 = NOW - timedelta(days=10)


def event(
    hours: float,
    channel: Channel,
    kind: str,
    ids: list[tuple[str, str]] | None = None,
    **properties: str,
) -> ChannelEvent:
    return make_event(
        channel=channel,
        event_type=kind,
        occurred_at=T0 + timedelta(hours=hours),
        identifiers=[Identifier(namespace=ns, value=v) for ns, v in ids or []],
        properties=properties,
    )


ANNA = [
    event(0, Channel.web, "page_viewed", [("anonymous_id", "a-1")]),
    event(1, Channel.email, "email_clicked"),
    event(2, Channel.app, "product_viewed"),
    event(3, Channel.web, "order_completed", order_id="O1", amount="100"),
    event(
        3.02,
        Channel.ecommerce,
        "order_placed",
        order_id="O1",
        amount="100",
        fulfilment="click_and_collect",
    ),
    event(27, Channel.store, "order_picked_up", order_id="O1"),
    event(30, Channel.web, "identify", [("anonymous_id", "a-1"), ("email", "anna@example.de")]),
    event(100, Channel.email, "survey_responded", score="10"),
]
BEN = [
    event(0, Channel.store, "purchase", [("loyalty_id", "LC-1")], receipt_id="R1", amount="50"),
    event(24, Channel.chat, "chat_message", ticket_id="T1"),
    event(26, Channel.call_center, "call_completed", ticket_id="T1"),
    event(29, Channel.email, "ticket_solved", ticket_id="T1"),
    event(100, Channel.email, "survey_responded", score="3"),
    event(101, Channel.sms, "survey_responded", score="8"),
]


@pytest.fixture(scope="module")
def found() -> Report:
    journeys = [
        JourneyEvent(customer_id="cus-anna", event=e, sequence_number=n) for n, e in enumerate(ANNA)
    ] + [JourneyEvent(customer_id="cus-ben", event=e, sequence_number=n) for n, e in enumerate(BEN)]
    return report(histories(journeys), timedelta(days=30))


def test_orders_are_counted_once_across_the_channels_that_tell_them() -> None:
    (o1,) = orders_of("cus-anna", ANNA)
    assert (o1.key, o1.channel, o1.amount, o1.click_and_collect) == (
        "O1",
        "web",
        Decimal(100),
        True,
    )


def test_cross_channel_conversion_and_conversion_by_mix(found: Report) -> None:
    c = found.conversion
    assert (c.orders, c.cross_channel_orders, c.cross_channel_share) == (2, 1, 0.5)
    assert c.customers_by_mix == {
        "app+ecommerce+email+store+web": 1,
        "call_center+chat+email+sms+store": 1,
    }
    assert c.buyers_by_mix == c.customers_by_mix


def test_channel_switch_matrix(found: Report) -> None:
    assert found.switches == {
        ("web", "email"): 2,
        ("email", "app"): 1,
        ("app", "web"): 1,
        ("web", "ecommerce"): 1,
        ("ecommerce", "store"): 1,
        ("store", "web"): 1,
        ("store", "chat"): 1,
        ("chat", "call_center"): 1,
        ("call_center", "email"): 1,
        ("email", "sms"): 1,
    }


def test_attribution_by_model(found: Report) -> None:
    revenue = found.attribution.revenue
    assert revenue["first_touch"] == {"web": 100, "store": 50}
    assert revenue["last_touch"] == {"app": 100, "store": 50}
    assert revenue["position_based"] == {"web": 40, "email": 20, "app": 40, "store": 50}
    linear = revenue["linear"]
    assert linear["store"] == 50
    assert sum(linear[c] for c in ("web", "email", "app")) == pytest.approx(Decimal(100))
    assert found.attribution.orders["linear"]["email"] == pytest.approx(Decimal(1) / 3)


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        (["web"], {"web": 1}),
        (["web", "app"], {"web": Decimal("0.5"), "app": Decimal("0.5")}),
        (
            ["web", "email", "sms", "app"],
            {
                "web": Decimal("0.4"),
                "email": Decimal("0.1"),
                "sms": Decimal("0.1"),
                "app": Decimal("0.4"),
            },
        ),
    ],
)
def test_position_based_shares(channels: list[str], expected: dict[str, Any]) -> None:
    assert shares(channels, "position_based") == expected


def test_click_and_collect_support_identification_and_clv(found: Report) -> None:
    cc = found.click_and_collect
    assert (cc.orders, cc.picked_up, cc.median_hours) == (1, 1, pytest.approx(24.0, abs=0.05))
    s = found.support
    assert (s.cases, s.solved, s.mean_contacts, s.mean_channels) == (1, 1, 2, 2)
    assert s.one_contact_share == 0 and s.median_hours_to_solve == pytest.approx(5.0)
    i = found.identification
    assert (i.anonymous_ids, i.identified, i.rate, i.median_hours) == (1, 1, 1.0, 30.0)
    assert found.clv_by_first_channel == {"web": 100, "store": 50}


def test_net_promoter_score_overall_and_by_channel_mix(found: Report) -> None:
    # Anna 10 (promoter); Ben 3 (detractor) and 8 (passive): (1 - 1) / 3.
    assert (found.nps.responses, found.nps.score) == (3, 0.0)
    assert found.nps.by_mix == {
        "app+ecommerce+email+store+web": (1, 100.0),
        "call_center+chat+email+store": (2, -50.0),
    }


def test_merges_are_followed_and_each_event_counts_once() -> None:
    journeys = [
        JourneyEvent(customer_id="cus-old", event=ANNA[0], sequence_number=1),
        JourneyEvent(customer_id="cus-anna", event=ANNA[1], sequence_number=2),
        JourneyEvent(customer_id="cus-anna", event=ANNA[1], sequence_number=2),  # a repeat
    ]
    forward = {"cus-old": "cus-anna"}
    merged = histories(journeys, lambda customer: forward.get(customer, customer))
    assert list(merged) == ["cus-anna"]
    assert [e.event_id for e in merged["cus-anna"]] == [ANNA[0].event_id, ANNA[1].event_id]


def test_the_report_renders_and_serialises(found: Report) -> None:
    text = render(found)
    assert "cross-channel conversion: 1 of 2 orders" in text
    data = found.to_json()
    assert data["click_and_collect"]["picked_up"] == 1
    assert data["attribution"]["first_touch"]["revenue"] == {"store": 50.0, "web": 100.0}
