"""Sealing: personal fields encrypted under a record's data key (AES-256-GCM).

A sealed value is ``SEALED_MAGIC`` + a random 96-bit nonce + the ciphertext with its tag; the
key id is the associated data, so a sealed value moved to another record does not open. The
plaintext of an event is JSON of its identifiers, traits and properties (what names or
describes a person); of an operation, its two references and the reason. Key ids, in one place:
``e:<event_id>``, ``o:<operation_id>``, ``d:<random>`` (a connector's dead letter).
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.contract.models import ChannelEvent, Identifier, Traits
from pipeline.exceptions import SealError

SEALED_MAGIC = b"OSV1"
_NONCE = 12
# The Kafka header that names the key of a sealed record (events, operations, dead letters).
KEY_HEADER = "omnistitch.key"


def event_key_id(event_id: str) -> str:
    return "e:" + event_id


def operation_key_id(operation_id: str) -> str:
    return "o:" + operation_id


def dead_letter_key_id() -> str:
    return "d:" + secrets.token_hex(12)


def seal(key: bytes, key_id: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return SEALED_MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, key_id.encode())


def unseal(key: bytes, key_id: str, sealed: bytes) -> bytes:
    if not sealed.startswith(SEALED_MAGIC) or len(sealed) < len(SEALED_MAGIC) + _NONCE + 16:
        raise SealError("not a sealed value")
    start = len(SEALED_MAGIC)
    nonce, body = sealed[start : start + _NONCE], sealed[start + _NONCE :]
    try:
        return AESGCM(key).decrypt(nonce, body, key_id.encode())
    except InvalidTag:
        raise SealError("the sealed value does not open with its key") from None


def is_sealed(value: bytes | None) -> bool:
    return bool(value) and bytes(value or b"").startswith(SEALED_MAGIC)


# -- events ---------------------------------------------------------------------------------


def seal_event(event: ChannelEvent, key: bytes) -> ChannelEvent:
    """The event with its identifiers, traits and properties moved into ``sealed``."""
    payload = {
        "identifiers": [[i.namespace, i.value] for i in event.identifiers],
        "traits": event.traits.model_dump(exclude_none=True),
        "properties": event.properties,
    }
    sealed = seal(key, event_key_id(event.event_id), msgspec.json.encode(payload))
    return event.model_copy(
        update={"identifiers": [], "traits": Traits(), "properties": {}, "sealed": sealed}
    )


def open_event_record(record: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A decoded (Avro form) sealed event record with its fields restored, ``sealed`` None.
    Raises SealError when it does not open or its plaintext is not what sealing writes."""
    plaintext = unseal(key, event_key_id(str(record["event_id"])), record["sealed"])
    try:
        payload = msgspec.json.decode(plaintext)
        identifiers = [{"namespace": ns, "value": v} for ns, v in payload["identifiers"]]
        traits = {**dict.fromkeys(Traits.model_fields), **payload["traits"]}
        properties = dict(payload["properties"])
    except (msgspec.DecodeError, KeyError, TypeError, ValueError):
        raise SealError("the sealed event's content is malformed") from None
    return {
        **record,
        "identifiers": identifiers,
        "traits": traits,
        "properties": properties,
        "sealed": None,
    }


def opened_event(event: ChannelEvent, key: bytes) -> ChannelEvent:
    """A sealed ChannelEvent, opened (for tools that hold the model, not the record)."""
    record = open_event_record(event.to_avro(), key)
    return ChannelEvent.model_validate(
        {
            **record,
            "identifiers": [Identifier(**i) for i in record["identifiers"]],
            "traits": {k: v for k, v in record["traits"].items() if v is not None},
        }
    )


# -- operations -----------------------------------------------------------------------------


def seal_operation(record: dict[str, Any], key: bytes) -> dict[str, Any]:
    """An IdentityOperation record (Avro form) with its references and reason sealed."""
    payload = {name: str(record.get(name) or "") for name in ("left", "right", "reason")}
    sealed = seal(key, operation_key_id(str(record["operation_id"])), msgspec.json.encode(payload))
    return {**record, "left": "", "right": "", "reason": "", "sealed": sealed}


def open_operation_record(record: dict[str, Any], key: bytes) -> dict[str, Any]:
    plaintext = unseal(key, operation_key_id(str(record["operation_id"])), record["sealed"])
    try:
        payload = msgspec.json.decode(plaintext)
        fields = {name: str(payload[name]) for name in ("left", "right", "reason")}
    except (msgspec.DecodeError, KeyError, TypeError):
        raise SealError("the sealed operation's content is malformed") from None
    return {**record, **fields, "sealed": None}


# -- profiles -------------------------------------------------------------------------------


def seal_profile(record: dict[str, Any], key: bytes, key_id: str) -> dict[str, Any]:
    """A CustomerProfile record (Avro form) with its identifiers, traits and computed traits
    (purchases, products viewed: personal data too) sealed."""
    traits = {k: v for k, v in (record.get("traits") or {}).items() if v is not None}
    payload = {"identifiers": record.get("identifiers") or {}, "traits": traits}
    if record.get("computed") is not None:
        payload["computed"] = record["computed"]
    sealed = seal(key, key_id, msgspec.json.encode(payload))
    hidden: dict[str, Any] = {"identifiers": {}, "traits": {}, "computed": None}
    return {**record, **hidden, "sealed": sealed, "sealed_key": key_id}


def open_profile(record: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A sealed CustomerProfile record with its identifiers, traits and computed traits
    restored (the computed traits' times as ISO strings)."""
    key_id = str(record["sealed_key"])
    try:
        payload = msgspec.json.decode(unseal(key, key_id, record["sealed"]))
        traits = {**dict.fromkeys(Traits.model_fields), **payload["traits"]}
        identifiers = {str(ns): list(values) for ns, values in payload["identifiers"].items()}
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
        raise SealError("the sealed profile's content is malformed") from None
    return {
        **record,
        "identifiers": identifiers,
        "traits": traits,
        "computed": payload.get("computed", record.get("computed")),
        "sealed": None,
        "sealed_key": None,
    }
