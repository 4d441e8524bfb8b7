"""A journey event wrapped around an event's existing bytes equals fastavro's encoding."""

from __future__ import annotations

import io

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract import schemas
from pipeline.contract.models import Channel
from pipeline.contract.wire import avro_long, journey_body
from tests.factories import make_event, make_rich_event

CHANNELS = schemas.load("io.omnistitch.Channel")["symbols"]


def _fastavro(name: str, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schemas.parsed(name), record)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=40),
    st.integers(0, 2**62),
    st.one_of(st.none(), st.sampled_from(list(Channel))),
    st.booleans(),
    st.one_of(st.none(), st.integers(-(2**62), 2**62)),
    st.booleans(),
)
def test_the_wrapped_journey_is_what_fastavro_writes(
    customer_id: str,
    sequence: int,
    previous: Channel | None,
    switch: bool,
    since: int | None,
    rich: bool,
) -> None:
    event = (make_rich_event() if rich else make_event()).to_avro()
    body = _fastavro("io.omnistitch.ChannelEvent", event)
    expected = _fastavro(
        "io.omnistitch.JourneyEvent",
        {
            "customer_id": customer_id,
            "event": event,
            "sequence_number": sequence,
            "previous_channel": previous,
            "channel_switch": switch,
            "time_since_previous_ms": since,
        },
    )
    index = None if previous is None else CHANNELS.index(previous.value)
    assert journey_body(customer_id, body, sequence, index, switch, since) == expected


def test_longs_are_zigzag_varints() -> None:
    assert [avro_long(v) for v in (0, -1, 1, -64, 64)] == [
        b"\x00",
        b"\x01",
        b"\x02",
        b"\x7f",
        b"\x80\x01",
    ]
