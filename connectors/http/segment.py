"""Segment's HTTP Tracking API spec → ChannelEvent (pure).

One Segment call (identify, track, page, screen, alias, group) becomes one ChannelEvent; the
field-by-field mapping is documented in docs/connectors.md ("Segment calls").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from connectors.mapping import (
    TRUTH_PROPERTY,
    MappingFailure,
    birth_date,
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
from pipeline.contract.models import Channel, ChannelEvent, Traits

CALL_TYPES = ("identify", "track", "page", "screen", "alias", "group")
# analytics.js posts to one-letter paths (/v1/t, /v1/p, ...).
SHORT_TYPES = {t[0]: t for t in CALL_TYPES}
APP_OS = frozenset({"ios", "android", "ipados", "tvos", "watchos"})
ORDER_EVENTS = frozenset({"order_completed", "order_placed", "checkout_completed"})


def _dict(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MappingFailure(f"{field}: must be an object")
    return value


def _maybe_dict(value: Any) -> dict[str, Any]:
    """A nested object, or {} for anything else (lenient, for optional context)."""
    return value if isinstance(value, dict) else {}


def _channel(call_type: str, context: Mapping[str, Any]) -> Channel:
    device = _maybe_dict(context.get("device"))
    os_info = _maybe_dict(context.get("os"))
    device_type = str(device.get("type") or "").lower()
    os_name = str(os_info.get("name") or "").lower().replace(" ", "")
    if call_type == "screen" or context.get("app") or device_type in APP_OS or os_name in APP_OS:
        return Channel.app
    return Channel.web


def _traits(values: Mapping[str, Any]) -> Traits:
    first = values.get("firstName", values.get("first_name"))
    last = values.get("lastName", values.get("last_name"))
    if not text(first) and not text(last):
        first, last = split_name(text(values.get("name")))
    address = _maybe_dict(values.get("address"))
    street, number = split_street(text(address.get("street")))
    return traits(
        {
            "first_name": first,
            "last_name": last,
            "birth_date": birth_date(values.get("birthday", values.get("birth_date"))),
            "street": street,
            "house_number": address.get("house_number") or number,
            "postal_code": address.get("postalCode", address.get("postal_code")),
            "city": address.get("city"),
            "region": address.get("state"),
            "country": address.get("country"),
            "email": values.get("email"),
            "phone": values.get("phone"),
        }
    )


def _event_type(call_type: str, call: Mapping[str, Any]) -> str:
    if call_type == "track":
        name = text(call.get("event"))
        if not name or not snake(name):
            raise MappingFailure("event: a track call needs an event name")
        return snake(name)
    return {
        "identify": "identify",
        "page": "page_viewed",
        "screen": "screen_viewed",
        "alias": "alias",
        "group": "group_joined",
    }[call_type]


def _occurred_at(call: Mapping[str, Any], received_at: datetime, batch_sent_at: Any) -> datetime:
    stamp = call.get("timestamp", call.get("originalTimestamp"))
    if stamp is None:
        return received_at
    moment = parse_time(stamp, "timestamp")
    sent = call.get("sentAt", batch_sent_at)
    if sent is not None:
        # Segment's clock-skew correction: the client's clock is off by (sentAt - receivedAt).
        moment += received_at - parse_time(sent, "sentAt")
    return moment


def call_digest(call: Mapping[str, Any]) -> str:
    """A stable id for a call without messageId (sentAt excluded: it changes on retries)."""
    stable = {k: v for k, v in call.items() if k not in ("sentAt", "writeKey")}
    canonical = json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def map_call(
    call: Any,
    *,
    source: str,
    received_at: datetime,
    call_type: str | None = None,
    batch_sent_at: Any = None,
    user_id_namespace: str = "customer_id",
) -> ChannelEvent | Rejection:
    """One Segment call as a ChannelEvent, or the Rejection that says why not.

    ``call_type`` comes from the endpoint (/v1/track); inside a batch it is the call's ``type``.
    """
    try:
        return admissible(
            _map(call, source, received_at, call_type, batch_sent_at, user_id_namespace)
        )
    except MappingFailure as exc:
        return Rejection(Reason.unmappable_record, str(exc))
    except ValidationError as exc:
        return Rejection(Reason.unmappable_record, invalid_fields(exc))


def _map(
    call: Any,
    source: str,
    received_at: datetime,
    call_type: str | None,
    batch_sent_at: Any,
    user_id_namespace: str,
) -> ChannelEvent:
    if not isinstance(call, dict):
        raise MappingFailure("a call must be a JSON object")
    kind = call_type or text(call.get("type"))
    kind = SHORT_TYPES.get(kind or "", kind)
    if kind not in CALL_TYPES:
        raise MappingFailure(f"type: must be one of {', '.join(CALL_TYPES)}")
    context = _dict(call.get("context"), "context")
    device = _dict(context.get("device"), "context.device")
    own_traits = _dict(call.get("traits"), "traits") if kind == "identify" else {}
    person = {**_dict(context.get("traits"), "context.traits"), **own_traits}
    props = _dict(call.get("properties"), "properties")
    user_id, anonymous_id = text(call.get("userId")), text(call.get("anonymousId"))
    if kind == "alias":
        if not user_id or not text(call.get("previousId")):
            raise MappingFailure("alias: needs userId and previousId")
    elif not user_id and not anonymous_id:
        raise MappingFailure("userId or anonymousId: one of them is required")
    event_type = _event_type(kind, call)

    properties = flat_properties(props)
    for field in ("name", "category"):
        if text(call.get(field)):
            properties[f"page_{field}"] = text(call.get(field)) or ""
    if kind == "group" and text(call.get("groupId")):
        properties["group_id"] = text(call.get("groupId")) or ""
    if text(context.get("ip")):
        properties["ip"] = text(context.get("ip")) or ""
    truth = text(context.get(TRUTH_PROPERTY)) or text(props.get(TRUTH_PROPERTY))
    if truth:
        properties[TRUTH_PROPERTY] = truth
    if "total" in properties and "amount" not in properties:
        properties["amount"] = properties["total"]
    elif "revenue" in properties and "amount" not in properties:
        properties["amount"] = properties["revenue"]

    pairs: list[tuple[str, Any]] = [
        (user_id_namespace, user_id),
        ("anonymous_id", anonymous_id),
        ("anonymous_id", call.get("previousId") if kind == "alias" else None),
        ("device_id", device.get("id")),
        ("advertising_id", device.get("advertisingId")),
        ("loyalty_id", person.get("loyaltyId", person.get("loyalty_id"))),
    ]
    # Segment's context.externalIds: [{"id": ..., "type": ...}], e.g. a linked Messenger id.
    external = context.get("externalIds")
    for entry in external if isinstance(external, list) else []:
        if isinstance(entry, dict) and text(entry.get("type")):
            pairs.append((snake(str(entry["type"])), entry.get("id")))
    if event_type in ORDER_EVENTS:
        pairs.append(("order_id", props.get("order_id", props.get("orderId"))))

    consent_raw = _dict(context.get("consent"), "context.consent").get("categoryPreferences")
    consent = (
        {snake(str(k)): bool(v) for k, v in consent_raw.items() if isinstance(v, bool)}
        if isinstance(consent_raw, dict)
        else None
    )
    message_id = text(call.get("messageId")) or f"seg-{call_digest(call)}"
    return ChannelEvent(
        event_id=message_id,
        event_type=event_type,
        channel=_channel(kind, context),
        source=source,
        occurred_at=_occurred_at(call, received_at, batch_sent_at),
        received_at=received_at,
        identifiers=identifiers(pairs),
        traits=_traits(person),
        properties=properties,
        consent=consent or None,
    )
