"""Webhook mappers: every documented example, edge cases and malformed bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.http.webhooks import MAPPERS
from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.contract.models import Channel, ChannelEvent

RECEIVED = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).resolve().parents[4] / "connectors" / "examples"


def example(source: str) -> Any:
    return json.loads((EXAMPLES / f"{source}.json").read_text(encoding="utf-8"))


def events(source: str, payload: Any) -> list[ChannelEvent]:
    results = [r for _item, r in MAPPERS[source](payload, RECEIVED)]
    assert all(isinstance(r, ChannelEvent) for r in results), results
    return [r for r in results if isinstance(r, ChannelEvent)]


def ids(event: ChannelEvent) -> set[tuple[str, str]]:
    return {(i.namespace, i.value) for i in event.identifiers}


def test_every_source_has_a_documented_example() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.json")} == set(MAPPERS)
    docs = (EXAMPLES.parents[1] / "docs" / "connectors.md").read_text(encoding="utf-8")
    for source in MAPPERS:
        assert f"/v1/webhooks/{source}" in docs, source


def test_survey_responses_carry_the_score_and_not_the_comment() -> None:
    (answer,) = events("surveys", example("surveys"))
    assert (answer.event_type, answer.channel, answer.source) == (
        "survey_responded",
        Channel.email,
        "survey",
    )
    assert answer.properties == {"score": "9", "survey_id": "nps-2026-q4"}
    assert ids(answer) == {("email", "zoe.obrien@gmx.de"), ("customer_id", "CRM-0000471")}
    assert "Schnelle" not in answer.model_dump_json()


@pytest.mark.parametrize("score", [11, -1, "7.5", True, None, "ten"])
def test_a_score_outside_0_to_10_is_refused(score: object) -> None:
    body = {"response_id": "r", "score": score, "submitted_at": "2026-11-21T09:14:00Z"}
    ((_item, result),) = MAPPERS["surveys"](body, RECEIVED)
    assert isinstance(result, Rejection) and "score" in result.detail


def test_email_service_events() -> None:
    found = events("email", example("email"))
    assert [e.event_type for e in found] == [
        "email_delivered",
        "email_opened",
        "email_clicked",
        "email_bounced",
        "email_unsubscribed",
    ]
    assert all(e.channel is Channel.email for e in found)
    assert ids(found[0]) == {("email", "jurgen.mueller@example.de")}
    assert ("customer_id", "CRM-004711") in ids(found[3])
    assert found[2].properties["url"].startswith("https://shop.example.de/winter")
    assert found[4].consent == {"email_marketing": False}
    assert found[0].event_id == "sg-evt-9f1c2d01"


def test_whatsapp_and_sms_by_twilio() -> None:
    (whatsapp,) = events("twilio", example("twilio"))
    assert whatsapp.channel is Channel.whatsapp
    assert ids(whatsapp) == {("phone", "+4917012345678")}
    assert whatsapp.traits.first_name == "Jürgen"
    sms = {"MessageSid": "SM1", "From": "+491701234567", "To": "+4930555123"}
    (text,) = events("twilio", sms)
    assert (text.channel, text.event_type, text.occurred_at) == (
        Channel.sms,
        "message_received",
        RECEIVED,
    )
    outbound = {**sms, "Direction": "outbound-api"}
    (sent,) = events("twilio", outbound)
    assert (sent.event_type, ids(sent)) == ("message_sent", {("phone", "+4930555123")})


def test_messenger_messages_and_postbacks() -> None:
    message, postback = events("messenger", example("messenger"))
    assert message.channel is Channel.messenger
    assert ids(message) == {("messenger_psid", "7788123456789012")}
    assert (message.event_id, postback.event_type) == ("m_AbC123dEf456gHi789", "postback")
    assert postback.properties["postback_payload"] == "CHECK_STOCK_SKU_4411"


def test_web_chat() -> None:
    (chat,) = events("chat", example("chat"))
    assert chat.channel is Channel.chat
    assert ("email", "Jurgen.Mueller@example.de") in ids(chat)
    assert chat.properties["ticket_id"] == "T-55012"
    assert (chat.traits.first_name, chat.traits.last_name) == ("Jürgen", "Müller")


def test_call_centre() -> None:
    (call,) = events("calls", example("calls"))
    assert (call.channel, call.event_type) == (Channel.call_center, "call_completed")
    assert ids(call) == {("phone", "0170 1234567")}
    assert (call.traits.first_name, call.traits.last_name) == ("Jürgen", "Müller")
    assert call.occurred_at == datetime(2026, 11, 22, 7, 41, tzinfo=UTC)
    assert call.properties["ticket_id"] == "T-55012"


def test_helpdesk_ticket_follows_its_channel() -> None:
    (solved,) = events("support", example("support"))
    assert (solved.event_type, solved.channel) == ("ticket_solved", Channel.call_center)
    assert ids(solved) == {
        ("customer_id", "CRM-004711"),
        ("email", "jurgen.mueller@example.de"),
        ("phone", "+49 170 1234567"),
    }
    opened = {
        **example("support"),
        "event": "ticket.created",
        "ticket": {"id": "T-1", "via": "chat"},
    }
    (first,) = events("support", opened)
    assert (first.event_type, first.channel) == ("ticket_opened", Channel.chat)


def test_click_and_collect_order_and_its_pickup_share_the_order_id() -> None:
    (order,) = events("orders", example("orders"))
    (pickup,) = events("pickups", example("pickups"))
    assert order.event_type == "order_placed"
    assert order.properties["fulfilment"] == "click_and_collect"
    assert order.properties["pickup_store_id"] == "store-042"
    assert (order.properties["amount"], order.properties["currency"]) == ("89.90", "EUR")
    assert (order.traits.street, order.traits.house_number) == ("Schloßstraße", "7a")
    assert order.consent == {"email_marketing": True}
    assert (pickup.channel, pickup.event_type, pickup.source) == (
        Channel.store,
        "order_picked_up",
        "pos-store_042",
    )
    assert ("order_id", "100234") in ids(order) & ids(pickup)


def test_an_app_order_is_on_the_app_channel() -> None:
    (order,) = events("orders", {**example("orders"), "source_name": "app"})
    assert order.channel is Channel.app


def test_one_bad_item_of_an_email_batch_is_refused_alone() -> None:
    items = example("email")
    items[1] = {**items[1], "event": "teleported"}
    del items[2]["sg_event_id"]
    results = [r for _i, r in MAPPERS["email"](items, RECEIVED)]
    assert [type(r).__name__ for r in results] == [
        "ChannelEvent",
        "Rejection",
        "Rejection",
        "ChannelEvent",
        "ChannelEvent",
    ]


@pytest.mark.parametrize(
    ("source", "payload", "detail"),
    [
        ("email", [{"event": "open", "sg_event_id": "x", "timestamp": 1}], "email: missing"),
        ("email", ["not an object"], "JSON object"),
        ("twilio", {"From": "+4917012345678", "To": "+4930"}, "MessageSid: missing"),
        ("messenger", {"object": "instagram", "entry": []}, "object:"),
        ("messenger", {"object": "page", "entry": "x"}, "entry:"),
        ("messenger", {"object": "page", "entry": [{"messaging": []}]}, "no messaging items"),
        (
            "messenger",
            {"object": "page", "entry": [{"messaging": [{"sender": {"id": "1"}, "timestamp": 1}]}]},
            "message or a postback",
        ),
        (
            "chat",
            {
                "message_id": "m",
                "conversation_id": "c",
                "sent_at": "2026-11-01T00:00:00Z",
                "visitor": {},
            },
            "visitor:",
        ),
        (
            "chat",
            {
                "message_id": "m",
                "conversation_id": "c",
                "sent_at": "2026-11-01T00:00:00Z",
                "visitor": "Jürgen",
            },
            "visitor: must be an object",
        ),
        ("calls", {"call_id": "c", "started_at": "2026-11-01T00:00:00Z"}, "caller: missing"),
        ("support", {"id": "1", "event": "ticket.deleted"}, "event:"),
        (
            "support",
            {
                "id": "1",
                "event": "ticket.solved",
                "occurred_at": "2026-11-01T00:00:00Z",
                "ticket": {},
            },
            "id: missing",
        ),
        (
            "orders",
            {
                **{
                    "id": "1",
                    "total_price": "1",
                    "currency": "EUR",
                    "created_at": "2026-11-01T00:00:00Z",
                },
                "fulfilment": {"type": "drone"},
            },
            "fulfilment.type",
        ),
        (
            "orders",
            {
                "id": "1",
                "total_price": "1",
                "currency": "EUR",
                "created_at": "2026-11-01T00:00:00Z",
                "fulfilment": {"type": "click_and_collect"},
            },
            "pickup_store_id: missing",
        ),
        ("pickups", {"order_id": "1", "store_id": "s", "picked_up_at": "later"}, "picked_up_at:"),
    ],
)
def test_malformed_bodies_are_refused_with_the_field_named(
    source: str, payload: Any, detail: str
) -> None:
    results = [r for _i, r in MAPPERS[source](payload, RECEIVED)]
    assert len(results) == 1
    assert isinstance(results[0], Rejection)
    assert results[0].reason is Reason.unmappable_record
    assert detail in results[0].detail


def test_a_lone_surrogate_in_a_webhook_is_refused() -> None:
    body = json.loads(
        '{"message_id": "m", "conversation_id": "c", "sent_at": "2026-11-01T00:00:00Z",'
        ' "visitor": {"email": "a@b.de", "name": "J\\udc80rgen"}}'
    )
    ((_, result),) = MAPPERS["chat"](body, RECEIVED)
    assert isinstance(result, Rejection)
    assert result.reason is Reason.invalid_utf8
