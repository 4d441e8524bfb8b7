"""Webhooks of the systems behind the channels → ChannelEvents (pure).

Each source has one mapper, ``(payload, received_at) -> [(item, ChannelEvent | Rejection)]``: a
webhook body may carry several events (an e-mail service posts an array), and every item is
mapped, or refused, on its own. The collector serves them at ``POST /v1/webhooks/<source>``.
docs/connectors.md documents every mapping; ``connectors/examples/<source>.json`` holds a
realistic example of each, used by the tests.

Sources: ``email`` (e-mail service events), ``twilio`` (SMS and WhatsApp), ``messenger``,
``chat`` (web chat), ``calls`` (call centre), ``support`` (helpdesk tickets), ``orders``
(e-commerce, delivery or click & collect), ``pickups`` (click & collect pickup in store) and
``surveys`` (survey tools: a 0-10 recommendation score, for NPS).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from connectors.mapping import (
    TRUTH_PROPERTY,
    MappingFailure,
    flat_properties,
    identifiers,
    invalid_fields,
    parse_time,
    snake,
    split_name,
    split_street,
    text,
    traits,
)
from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.contract.intake import admissible
from pipeline.contract.models import Channel, ChannelEvent

Result = ChannelEvent | Rejection
Mapped = list[tuple[Any, Result]]
WebhookMapper = Callable[[Any, datetime], Mapped]


def _obj(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MappingFailure(f"{field}: must be an object")
    return value


def _required(record: Mapping[str, Any], field: str) -> str:
    value = text(record.get(field))
    if value is None:
        raise MappingFailure(f"{field}: missing")
    return value


def _truth(record: Mapping[str, Any], properties: Mapping[str, str | None]) -> dict[str, str]:
    """The non-empty properties, plus the generator's ground truth when the record has one."""
    found = {k: v for k, v in properties.items() if v}
    truth = text(record.get(TRUTH_PROPERTY))
    if truth:
        found[TRUTH_PROPERTY] = truth
    return found


def _one(item: Any, build: Callable[[dict[str, Any]], ChannelEvent]) -> tuple[Any, Result]:
    """Map one item; a mapping failure becomes its Rejection (field names only, no values)."""
    try:
        if not isinstance(item, dict):
            raise MappingFailure("each webhook item must be a JSON object")
        return item, admissible(build(item))
    except MappingFailure as exc:
        return item, Rejection(Reason.unmappable_record, str(exc))
    except ValidationError as exc:
        return item, Rejection(Reason.unmappable_record, invalid_fields(exc))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


# -- e-mail service ----------------------------------------------------------------------------

EMAIL_EVENTS = {
    "delivered": "email_delivered",
    "open": "email_opened",
    "click": "email_clicked",
    "bounce": "email_bounced",
    "dropped": "email_bounced",
    "unsubscribe": "email_unsubscribed",
    "group_unsubscribe": "email_unsubscribed",
    "spamreport": "email_unsubscribed",
}


def map_email(payload: Any, received_at: datetime) -> Mapped:
    items = payload if isinstance(payload, list) else [payload]

    def build(item: dict[str, Any]) -> ChannelEvent:
        kind = _required(item, "event")
        if kind not in EMAIL_EVENTS:
            raise MappingFailure(f"event: one of {', '.join(sorted(EMAIL_EVENTS))}")
        event_type = EMAIL_EVENTS[kind]
        properties: dict[str, str | None] = {
            "message_id": text(item.get("sg_message_id")),
            "campaign": text(item.get("campaign")),
            "url": text(item.get("url")),
            "bounce_reason": text(item.get("reason")),
            "categories": json.dumps(item["category"]) if item.get("category") else None,
        }
        return ChannelEvent(
            event_id=_required(item, "sg_event_id"),
            event_type=event_type,
            channel=Channel.email,
            source="email-service",
            occurred_at=parse_time(item.get("timestamp"), "timestamp"),
            received_at=received_at,
            identifiers=identifiers(
                [("email", _required(item, "email")), ("customer_id", item.get("customer_id"))]
            ),
            properties=_truth(item, properties),
            consent={"email_marketing": False} if event_type == "email_unsubscribed" else None,
        )

    return [_one(item, build) for item in items]


# -- SMS and WhatsApp --------------------------------------------------------------------------


def map_twilio(payload: Any, received_at: datetime) -> Mapped:
    def build(item: dict[str, Any]) -> ChannelEvent:
        sender, receiver = _required(item, "From"), _required(item, "To")
        whatsapp = sender.startswith("whatsapp:") or receiver.startswith("whatsapp:")
        inbound = text(item.get("Direction")) in (None, "inbound")
        person = (sender if inbound else receiver).removeprefix("whatsapp:")
        properties = {
            "message_status": text(item.get("SmsStatus") or item.get("MessageStatus")) or "",
            "segments": text(item.get("NumSegments")) or "",
        }
        return ChannelEvent(
            event_id=_required(item, "MessageSid"),
            event_type="message_received" if inbound else "message_sent",
            channel=Channel.whatsapp if whatsapp else Channel.sms,
            source="twilio",
            occurred_at=parse_time(item["Timestamp"], "Timestamp")
            if item.get("Timestamp")
            else received_at,
            received_at=received_at,
            identifiers=identifiers([("phone", person)]),
            traits=traits({"first_name": item.get("ProfileName")}),
            properties=_truth(item, properties),
        )

    return [_one(payload, build)]


# -- Messenger ---------------------------------------------------------------------------------


def map_messenger(payload: Any, received_at: datetime) -> Mapped:
    if not isinstance(payload, dict) or payload.get("object") != "page":
        return [(payload, Rejection(Reason.unmappable_record, "object: must be 'page'"))]
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return [(payload, Rejection(Reason.unmappable_record, "entry: must be a list"))]
    items = [
        messaging
        for entry in entries
        if isinstance(entry, dict)
        for messaging in (entry.get("messaging") or [])
    ]

    def build(item: dict[str, Any]) -> ChannelEvent:
        sender = _required(_obj(item.get("sender"), "sender"), "id")
        message = _obj(item.get("message"), "message")
        postback = _obj(item.get("postback"), "postback")
        if message:
            event_type, event_id = "message_received", _required(message, "mid")
        elif postback:
            event_type = "postback"
            event_id = text(postback.get("mid")) or f"fbpb-{_digest(sender, str(item))}"
        else:
            raise MappingFailure("messaging: needs a message or a postback")
        properties = {"page_id": text(_obj(item.get("recipient"), "recipient").get("id")) or ""}
        if postback.get("payload"):
            properties["postback_payload"] = text(postback.get("payload")) or ""
        return ChannelEvent(
            event_id=event_id,
            event_type=event_type,
            channel=Channel.messenger,
            source="messenger",
            occurred_at=parse_time(item.get("timestamp"), "timestamp"),
            received_at=received_at,
            identifiers=identifiers([("messenger_psid", sender)]),
            properties=_truth(item, properties),
        )

    return [_one(item, build) for item in items] or [
        (payload, Rejection(Reason.unmappable_record, "entry: no messaging items"))
    ]


# -- web chat ----------------------------------------------------------------------------------


def map_chat(payload: Any, received_at: datetime) -> Mapped:
    def build(item: dict[str, Any]) -> ChannelEvent:
        visitor = _obj(item.get("visitor"), "visitor")
        first, last = split_name(text(visitor.get("name")))
        found = identifiers(
            [
                ("anonymous_id", visitor.get("anonymous_id")),
                ("customer_id", visitor.get("customer_id")),
                ("email", visitor.get("email")),
                ("phone", visitor.get("phone")),
            ]
        )
        if not found:
            raise MappingFailure("visitor: needs anonymous_id, customer_id, email or phone")
        properties = {
            "conversation_id": _required(item, "conversation_id"),
            "author": text(item.get("author")) or "visitor",
        }
        if text(item.get("ticket_id")):
            properties["ticket_id"] = text(item.get("ticket_id")) or ""
        return ChannelEvent(
            event_id=_required(item, "message_id"),
            event_type="chat_message",
            channel=Channel.chat,
            source="web-chat",
            occurred_at=parse_time(item.get("sent_at"), "sent_at"),
            received_at=received_at,
            identifiers=found,
            traits=traits({"first_name": first, "last_name": last}),
            properties=_truth(item, properties),
        )

    return [_one(payload, build)]


# -- call centre -------------------------------------------------------------------------------


def map_calls(payload: Any, received_at: datetime) -> Mapped:
    def build(item: dict[str, Any]) -> ChannelEvent:
        caller = _required(item, "caller")
        properties: dict[str, str | None] = {
            "direction": text(item.get("direction")) or "inbound",
            "duration_s": text(item.get("duration_s")),
            "queue": text(item.get("queue")),
            "agent_id": text(item.get("agent_id")),
            "disposition": text(item.get("disposition")),
            "ticket_id": text(item.get("ticket_id")),
        }
        first, last = split_name(text(item.get("caller_name")))
        return ChannelEvent(
            event_id=_required(item, "call_id"),
            event_type="call_completed",
            channel=Channel.call_center,
            source="telephony",
            occurred_at=parse_time(item.get("started_at"), "started_at"),
            received_at=received_at,
            identifiers=identifiers([("phone", caller), ("customer_id", item.get("customer_id"))]),
            traits=traits({"first_name": first, "last_name": last}),
            properties=_truth(item, properties),
        )

    return [_one(payload, build)]


# -- helpdesk ----------------------------------------------------------------------------------

TICKET_EVENTS = {
    "ticket.created": "ticket_opened",
    "ticket.updated": "ticket_updated",
    "ticket.solved": "ticket_solved",
}
TICKET_CHANNELS = {
    "chat": Channel.chat,
    "phone": Channel.call_center,
    "voice": Channel.call_center,
    "email": Channel.email,
    "web": Channel.web,
    "whatsapp": Channel.whatsapp,
    "sms": Channel.sms,
    "messenger": Channel.messenger,
}


def map_support(payload: Any, received_at: datetime) -> Mapped:
    def build(item: dict[str, Any]) -> ChannelEvent:
        kind = _required(item, "event")
        if kind not in TICKET_EVENTS:
            raise MappingFailure(f"event: one of {', '.join(TICKET_EVENTS)}")
        ticket = _obj(item.get("ticket"), "ticket")
        requester = _obj(item.get("requester"), "requester")
        first, last = split_name(text(requester.get("name")))
        via = (text(ticket.get("via")) or "web").lower()
        properties = {
            "ticket_id": _required(ticket, "id"),
            "ticket_status": text(ticket.get("status")) or "",
            "ticket_via": via,
        }
        return ChannelEvent(
            event_id=_required(item, "id"),
            event_type=TICKET_EVENTS[kind],
            channel=TICKET_CHANNELS.get(via, Channel.web),
            source="helpdesk",
            occurred_at=parse_time(item.get("occurred_at"), "occurred_at"),
            received_at=received_at,
            identifiers=identifiers(
                [
                    ("customer_id", requester.get("external_id")),
                    ("email", requester.get("email")),
                    ("phone", requester.get("phone")),
                ]
            ),
            traits=traits({"first_name": first, "last_name": last}),
            properties=_truth(item, properties),
        )

    return [_one(payload, build)]


# -- e-commerce --------------------------------------------------------------------------------


def map_orders(payload: Any, received_at: datetime) -> Mapped:
    def build(item: dict[str, Any]) -> ChannelEvent:
        order_id = _required(item, "id")
        customer = _obj(item.get("customer"), "customer")
        address = _obj(item.get("billing_address"), "billing_address")
        fulfilment = _obj(item.get("fulfilment"), "fulfilment")
        kind = (text(fulfilment.get("type")) or "delivery").lower()
        if kind not in ("delivery", "click_and_collect"):
            raise MappingFailure("fulfilment.type: delivery or click_and_collect")
        street, number = split_street(text(address.get("address1")))
        sales_channel = (text(item.get("source_name")) or "web").lower()
        properties = {
            "order_id": order_id,
            "order_number": text(item.get("order_number")) or "",
            "amount": _required(item, "total_price"),
            "currency": _required(item, "currency"),
            "fulfilment": kind,
            "sales_channel": sales_channel,
            "items": str(len(item.get("line_items") or [])),
        }
        if kind == "click_and_collect":
            properties["pickup_store_id"] = _required(fulfilment, "pickup_store_id")
        return ChannelEvent(
            event_id=f"order-{order_id}",
            event_type="order_placed",
            channel=Channel.app if sales_channel == "app" else Channel.ecommerce,
            source="shop",
            occurred_at=parse_time(item.get("created_at"), "created_at"),
            received_at=received_at,
            identifiers=identifiers(
                [
                    ("order_id", order_id),
                    ("customer_id", customer.get("id")),
                    ("email", item.get("email") or customer.get("email")),
                    ("phone", item.get("phone") or address.get("phone")),
                    ("loyalty_id", item.get("loyalty_id")),
                ]
            ),
            traits=traits(
                {
                    "first_name": customer.get("first_name") or address.get("first_name"),
                    "last_name": customer.get("last_name") or address.get("last_name"),
                    "street": street,
                    "house_number": number,
                    "postal_code": address.get("zip"),
                    "city": address.get("city"),
                    "country": address.get("country_code"),
                }
            ),
            properties=_truth(item, properties),
            consent={"email_marketing": bool(item["buyer_accepts_marketing"])}
            if isinstance(item.get("buyer_accepts_marketing"), bool)
            else None,
        )

    return [_one(payload, build)]


def map_pickups(payload: Any, received_at: datetime) -> Mapped:
    def build(item: dict[str, Any]) -> ChannelEvent:
        order_id = _required(item, "order_id")
        store = _required(item, "store_id")
        properties = flat_properties({"store_id": store, "order_id": order_id})
        if text(item.get("staff_id")):
            properties["staff_id"] = text(item.get("staff_id")) or ""
        return ChannelEvent(
            event_id=text(item.get("pickup_id")) or f"pickup-{order_id}",
            event_type="order_picked_up",
            channel=Channel.store,
            source=f"pos-{snake(store)}",
            occurred_at=parse_time(item.get("picked_up_at"), "picked_up_at"),
            received_at=received_at,
            identifiers=identifiers(
                [("order_id", order_id), ("loyalty_id", item.get("loyalty_id"))]
            ),
            properties=_truth(item, properties),
        )

    return [_one(payload, build)]


SURVEY_CHANNELS = {c.value for c in Channel} - {Channel.unknown.value}


def _score(value: Any) -> str:
    """A 0-10 recommendation score as text; anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MappingFailure("score: must be a whole number from 0 to 10")
    raw = str(value).strip()
    if not raw.isdigit() or not 0 <= int(raw) <= 10:
        raise MappingFailure("score: must be a whole number from 0 to 10")
    return str(int(raw))


def map_surveys(payload: Any, received_at: datetime) -> Mapped:
    """A survey tool's response: the score only — free-text comments are not carried (they
    are personal data nobody downstream needs for NPS)."""

    def build(item: dict[str, Any]) -> ChannelEvent:
        response = _required(item, "response_id")
        channel = text(item.get("channel")) or Channel.email.value
        if channel not in SURVEY_CHANNELS:
            raise MappingFailure("channel: not a known channel")
        respondent = _obj(item.get("respondent"), "respondent")
        properties = flat_properties(
            {"score": _score(item.get("score")), "survey_id": text(item.get("survey_id"))}
        )
        return ChannelEvent(
            event_id=f"survey-{response}",
            event_type="survey_responded",
            channel=Channel(channel),
            source="survey",
            occurred_at=parse_time(item.get("submitted_at"), "submitted_at"),
            received_at=received_at,
            identifiers=identifiers(
                [
                    ("email", respondent.get("email")),
                    ("phone", respondent.get("phone")),
                    ("customer_id", respondent.get("customer_id")),
                    ("loyalty_id", respondent.get("loyalty_id")),
                ]
            ),
            properties=_truth(item, properties),
        )

    return [_one(item, build) for item in (payload if isinstance(payload, list) else [payload])]


MAPPERS: dict[str, WebhookMapper] = {
    "email": map_email,
    "twilio": map_twilio,
    "messenger": map_messenger,
    "chat": map_chat,
    "calls": map_calls,
    "support": map_support,
    "orders": map_orders,
    "pickups": map_pickups,
    "surveys": map_surveys,
}
