"""Intake rules: what is accepted, and the reason for everything that is not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pipeline.contract import schemas
from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.contract.intake import IntakePolicy, accept, validate
from pipeline.contract.limits import Limits
from pipeline.contract.models import ChannelEvent, Identifier, Traits
from pipeline.contract.wire import decode_confluent, encode_confluent
from tests.factories import NOW, make_event, make_rich_event

READER = schemas.parsed(schemas.CHANNEL_EVENT)
POLICY = IntakePolicy(
    max_event_age=timedelta(days=30), limits=Limits(max_record_bytes=4096, max_property_bytes=4096)
)


def _decode(data: bytes) -> dict[str, Any]:
    return decode_confluent(data, lambda _id: READER, READER)


def _encode(event: ChannelEvent) -> bytes:
    return encode_confluent(1, READER, event.to_avro())


def _accept(data: bytes | None, policy: IntakePolicy = POLICY) -> ChannelEvent | Rejection:
    return accept(data, _decode, NOW, policy)


def test_a_valid_event_is_accepted_unchanged() -> None:
    event = make_rich_event()
    assert _accept(_encode(event)) == event


def test_the_largest_allowed_record_is_accepted_and_one_byte_more_is_not() -> None:
    base = make_event(properties={"pad": ""})
    size = len(_encode(base))
    # Grow the padding until the record is exactly at the limit (varint length may shift).
    pad = POLICY.max_record_bytes - size
    event = make_event(properties={"pad": "x" * pad})
    while len(_encode(event)) > POLICY.max_record_bytes:
        pad -= 1
        event = make_event(properties={"pad": "x" * pad})
    data = _encode(event)
    assert len(data) == POLICY.max_record_bytes
    assert isinstance(_accept(data), ChannelEvent)
    over = _accept(
        data, IntakePolicy(limits=Limits(max_record_bytes=len(data) - 1, max_property_bytes=4096))
    )
    assert isinstance(over, Rejection) and over.reason is Reason.too_large


@pytest.mark.parametrize("event_id", ["", "   "])
def test_missing_event_id(event_id: str) -> None:
    rejected = _accept(_encode(make_event(event_id=event_id)))
    assert isinstance(rejected, Rejection) and rejected.reason is Reason.missing_event_id


def test_missing_event_id_in_the_json_form() -> None:
    record = make_event().model_dump()
    del record["event_id"]
    rejected = validate(record, NOW, POLICY)
    assert isinstance(rejected, Rejection) and rejected.reason is Reason.missing_event_id


@pytest.mark.parametrize(
    "occurred_at",
    [NOW - timedelta(days=31), NOW + timedelta(minutes=6)],
    ids=["too-old", "in-the-future"],
)
def test_occurred_at_outside_the_window(occurred_at: Any) -> None:
    rejected = _accept(_encode(make_event(occurred_at=occurred_at)))
    assert isinstance(rejected, Rejection) and rejected.reason is Reason.occurred_at_out_of_window


def test_occurred_at_at_the_edges_of_the_window_is_accepted() -> None:
    for occurred_at in (NOW - timedelta(days=30), NOW + timedelta(minutes=5)):
        assert isinstance(_accept(_encode(make_event(occurred_at=occurred_at))), ChannelEvent)


def test_an_event_that_names_nobody_is_refused() -> None:
    nobody = make_event(identifiers=[], traits=Traits(first_name="  "))
    rejected = _accept(_encode(nobody))
    assert isinstance(rejected, Rejection) and rejected.reason is Reason.no_identifiers_or_traits


def test_traits_alone_or_identifiers_alone_are_enough() -> None:
    assert isinstance(
        _accept(_encode(make_event(identifiers=[], traits=Traits(last_name="Zoë")))),
        ChannelEvent,
    )
    only_id = make_event(identifiers=[Identifier(namespace="email", value="a@b.de")])
    assert isinstance(_accept(_encode(only_id)), ChannelEvent)


def test_empty_record() -> None:
    for data in (None, b""):
        rejected = _accept(data)
        assert isinstance(rejected, Rejection) and rejected.reason is Reason.empty_record


def test_validation_detail_names_fields_but_never_values() -> None:
    record = make_rich_event().model_dump()
    record["identifiers"] = [{"namespace": "", "value": "Jürgen.Müller@example.de"}]
    rejected = validate(record, NOW, POLICY)
    assert isinstance(rejected, Rejection) and rejected.reason is Reason.invalid_event
    assert "identifiers.0.namespace" in rejected.detail
    assert "Jürgen" not in rejected.detail and "example" not in rejected.detail
