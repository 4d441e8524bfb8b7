"""Segment calls → ChannelEvents: every call type, edge cases and malformed calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.http.segment import map_call
from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.contract.models import Channel, ChannelEvent

RECEIVED = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def call(**fields: Any) -> dict[str, Any]:
    """A valid track call; any field overridable (None removes it)."""
    base: dict[str, Any] = {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "msg-1",
        "anonymousId": "anon-1",
        "timestamp": "2026-11-24T11:00:00Z",
        "properties": {"sku": "JKT-4411"},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def mapped(raw: Any, **kwargs: Any) -> ChannelEvent:
    result = map_call(raw, source="web-shop", received_at=RECEIVED, **kwargs)
    assert isinstance(result, ChannelEvent), result
    return result


def ids(event: ChannelEvent) -> set[tuple[str, str]]:
    return {(i.namespace, i.value) for i in event.identifiers}


def test_identify_maps_ids_traits_address_birthday_and_consent() -> None:
    event = mapped(
        {
            "type": "identify",
            "messageId": "m-7",
            "userId": "CRM-0042",
            "anonymousId": "a-9",
            "traits": {
                "name": "Anna-Lena Müller",
                "email": "Anna@Example.de",
                "phone": "0170 1234567",
                "birthday": "1990-02-03T00:00:00.000Z",
                "loyaltyId": "LC-1",
                "address": {
                    "street": "Schloßstraße 7a",
                    "postalCode": "12163",
                    "city": "Berlin",
                    "state": "BE",
                    "country": "DE",
                },
            },
            "context": {
                "device": {"id": "dev-1"},
                "ip": "203.0.113.9",
                "consent": {"categoryPreferences": {"Advertising": False, "emailMarketing": True}},
            },
            "timestamp": "2026-11-24T11:00:00Z",
        }
    )
    assert event.event_id == "m-7"
    assert event.event_type == "identify"
    assert event.channel is Channel.web
    assert event.source == "web-shop"
    assert ids(event) == {
        ("customer_id", "CRM-0042"),
        ("anonymous_id", "a-9"),
        ("device_id", "dev-1"),
        ("loyalty_id", "LC-1"),
    }
    t = event.traits
    assert (t.first_name, t.last_name, t.birth_date) == ("Anna-Lena", "Müller", "1990-02-03")
    assert (t.street, t.house_number, t.postal_code, t.city) == (
        "Schloßstraße",
        "7a",
        "12163",
        "Berlin",
    )
    assert (t.region, t.country, t.email, t.phone) == (
        "BE",
        "DE",
        "Anna@Example.de",
        "0170 1234567",
    )
    assert event.properties["ip"] == "203.0.113.9"
    assert event.consent == {"advertising": False, "email_marketing": True}


def test_track_order_event_carries_order_id_and_amount() -> None:
    event = mapped(
        call(
            event="Order Completed",
            userId="CRM-1",
            properties={
                "order_id": "o-1",
                "total": 89.9,
                "currency": "EUR",
                "products": [{"sku": "a"}],
            },
        )
    )
    assert event.event_type == "order_completed"
    assert ("order_id", "o-1") in ids(event)
    assert event.properties["amount"] == "89.9"
    assert event.properties["currency"] == "EUR"
    assert event.properties["products"] == '[{"sku":"a"}]'


def test_context_traits_of_a_track_call_are_traits() -> None:
    event = mapped(call(context={"traits": {"email": "x@y.de", "firstName": "Zoë"}}))
    assert (event.traits.email, event.traits.first_name) == ("x@y.de", "Zoë")


@pytest.mark.parametrize(
    ("fields", "channel", "event_type"),
    [
        ({"type": "page", "name": "Sale", "event": None}, Channel.web, "page_viewed"),
        ({"type": "screen", "name": "Home", "event": None}, Channel.app, "screen_viewed"),
        ({"context": {"app": {"name": "Shop"}}}, Channel.app, "product_viewed"),
        ({"context": {"device": {"type": "android"}}}, Channel.app, "product_viewed"),
        ({"context": {"os": {"name": "iOS"}}}, Channel.app, "product_viewed"),
        ({"type": "group", "groupId": "g-1", "event": None}, Channel.web, "group_joined"),
    ],
)
def test_channel_and_event_type_per_call(
    fields: dict[str, Any], channel: Channel, event_type: str
) -> None:
    event = mapped(call(**fields))
    assert (event.channel, event.event_type) == (channel, event_type)


def test_page_name_and_group_id_are_properties() -> None:
    assert mapped(call(type="page", name="Sale", event=None)).properties["page_name"] == "Sale"
    assert mapped(call(type="group", groupId="g-1", event=None)).properties["group_id"] == "g-1"


def test_alias_links_previous_id_and_user_id() -> None:
    event = mapped({"type": "alias", "previousId": "anon-7", "userId": "CRM-7", "messageId": "m"})
    assert ids(event) == {("customer_id", "CRM-7"), ("anonymous_id", "anon-7")}


def test_external_ids_become_identifiers() -> None:
    event = mapped(call(context={"externalIds": [{"id": "77881", "type": "messenger_psid"}]}))
    assert ("messenger_psid", "77881") in ids(event)


def test_user_id_namespace_is_configurable() -> None:
    event = mapped(call(userId="acc-1"), user_id_namespace="shop_account")
    assert ("shop_account", "acc-1") in ids(event)


def test_call_type_comes_from_the_endpoint_including_short_names() -> None:
    raw = call(type=None)
    assert mapped(raw, call_type="track").event_type == "product_viewed"
    assert mapped({**raw, "type": "t"}).event_type == "product_viewed"


def test_clock_skew_is_corrected_with_sent_at() -> None:
    # The client's clock runs 10 minutes slow: it stamped 10:50 and sent at 10:51 its time,
    # received at 12:00 real time → occurred 11:59 real time.
    event = mapped(call(timestamp="2026-11-24T10:50:00Z", sentAt="2026-11-24T10:51:00Z"))
    assert event.occurred_at == RECEIVED - timedelta(minutes=1)
    batch = mapped(call(timestamp="2026-11-24T10:50:00Z"), batch_sent_at="2026-11-24T10:51:00Z")
    assert batch.occurred_at == event.occurred_at


def test_without_a_timestamp_the_call_occurred_when_received() -> None:
    assert mapped(call(timestamp=None)).occurred_at == RECEIVED


def test_a_call_without_message_id_gets_a_stable_id_across_retries() -> None:
    first = mapped(call(messageId=None, sentAt="2026-11-24T11:00:01Z"))
    retried = mapped(call(messageId=None, sentAt="2026-11-24T11:05:00Z"))
    other = mapped(call(messageId=None, event="Other Thing"))
    assert first.event_id == retried.event_id != other.event_id
    assert first.event_id.startswith("seg-")


def test_ground_truth_is_copied_into_properties() -> None:
    assert mapped(call(context={"truth_person_id": "17"})).properties["truth_person_id"] == "17"


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ([1, 2], "a call must be a JSON object"),
        (call(type="purchase"), "type:"),
        (call(anonymousId=None), "userId or anonymousId"),
        (call(event=None), "event:"),
        (call(event="  "), "event:"),
        (call(timestamp="yesterday"), "timestamp:"),
        (call(sentAt="soon"), "sentAt:"),
        (call(context="web"), "context:"),
        (call(properties=[1]), "properties:"),
        ({"type": "alias", "userId": "u"}, "alias:"),
    ],
)
def test_malformed_calls_are_rejected_with_a_reason(raw: Any, detail: str) -> None:
    result = map_call(raw, source="web-shop", received_at=RECEIVED)
    assert isinstance(result, Rejection)
    assert result.reason is Reason.unmappable_record
    assert detail in result.detail


def test_rejections_never_contain_the_values() -> None:
    result = map_call(
        call(anonymousId=None, userId="  ", email="secret@x.de"), source="s", received_at=RECEIVED
    )
    assert isinstance(result, Rejection)
    assert "secret" not in result.detail


def test_a_lone_surrogate_is_refused_not_left_to_fail_every_delivery() -> None:
    # Valid JSON ("\ud800"), not valid Unicode: no UTF-8 encoder accepts it.
    raw = json.loads('{"type": "track", "event": "x", "anonymousId": "a\\ud800", "messageId": "m"}')
    result = map_call(raw, source="web-shop", received_at=RECEIVED)
    assert isinstance(result, Rejection)
    assert result.reason is Reason.invalid_utf8
