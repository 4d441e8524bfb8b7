"""Intake: turn one raw record from the events topic into a valid ChannelEvent, or a Rejection.

Pure: the decoder and "now" are passed in, so the same rules run in the worker, in replay and in
plain unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.contract.limits import DEFAULT_LIMITS, Limits
from pipeline.contract.models import ChannelEvent
from pipeline.exceptions import DecodeError


@dataclass(frozen=True)
class IntakePolicy:
    """What the intake accepts. The record size limit applies to the value as consumed, that
    is after decompression, whatever codec it travelled with."""

    max_event_age: timedelta = timedelta(days=5 * 365)
    max_future_skew: timedelta = timedelta(minutes=5)
    limits: Limits = DEFAULT_LIMITS

    @property
    def max_record_bytes(self) -> int:
        return self.limits.max_record_bytes


def _validation_detail(exc: ValidationError) -> str:
    # Field paths and error kinds only: never the offending values (they may be personal data).
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '<record>'}: {error['type']}"
        for error in exc.errors(include_input=False, include_url=False)
    ]
    return "; ".join(parts[:5])


def validate(
    record: dict[str, Any], now: datetime, policy: IntakePolicy
) -> ChannelEvent | Rejection:
    """Check a decoded record against the contract and the policy."""
    event_id = record.get("event_id")
    if not isinstance(event_id, str) or not event_id.strip():
        return Rejection(Reason.missing_event_id, "event_id is missing or blank")
    try:
        event = ChannelEvent.model_validate(record)
    except ValidationError as exc:
        return Rejection(Reason.invalid_event, _validation_detail(exc))
    return check(event, now, policy)


def admissible(event: ChannelEvent, limits: Limits = DEFAULT_LIMITS) -> ChannelEvent | Rejection:
    """What the connectors check before they produce: the event is writable and within the
    limits (the worker checks the same again, see ``check``)."""
    written = encodable(event)
    if isinstance(written, Rejection):
        return written
    return limits.check(event) or event


def encodable(event: ChannelEvent) -> ChannelEvent | Rejection:
    """The event, or a Rejection when it cannot be written: JSON text may carry lone UTF-16
    surrogates ("\\ud800") that no UTF-8 encoder accepts. Records read from JSON are checked
    (connectors, replay); Avro input cannot carry them (its strings are UTF-8)."""
    try:
        event.model_dump_json()
    except PydanticSerializationError:
        return Rejection(Reason.invalid_utf8, "a text value is not valid Unicode (lone surrogate)")
    return event


def check(event: ChannelEvent, now: datetime, policy: IntakePolicy) -> ChannelEvent | Rejection:
    """The policy rules on an event that is already a valid ChannelEvent."""
    if not event.event_id.strip():
        return Rejection(Reason.missing_event_id, "event_id is missing or blank")
    earliest, latest = now - policy.max_event_age, now + policy.max_future_skew
    if not earliest <= event.occurred_at <= latest:
        return Rejection(
            Reason.occurred_at_out_of_window,
            f"occurred_at must lie within [{earliest.isoformat()}, {latest.isoformat()}]",
        )
    if not event.identifiers and event.traits.is_empty():
        return Rejection(Reason.no_identifiers_or_traits, "the event names nobody")
    return policy.limits.check(event) or event


def accept(
    data: bytes | None,
    decode: Callable[[bytes], dict[str, Any]],
    now: datetime,
    policy: IntakePolicy,
) -> ChannelEvent | Rejection:
    """Size check, decoding, validation. RegistryUnavailableError propagates (retry, not reject)."""
    if not data:
        return Rejection(Reason.empty_record, "the record has no value")
    if len(data) > policy.max_record_bytes:
        return Rejection(
            Reason.too_large, f"{len(data)} bytes, the limit is {policy.max_record_bytes}"
        )
    try:
        record = decode(data)
    except DecodeError as exc:
        return exc.rejection
    return validate(record, now, policy)
