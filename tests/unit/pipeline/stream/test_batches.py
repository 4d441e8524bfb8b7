"""The internal batch records: operations survive their Avro form, batches are cut by count
and bytes, and operations land where a record keyed by the customer id would."""

from __future__ import annotations

import io

import fastavro
import pytest
from aiokafka.partitioner import DefaultPartitioner

from pipeline.contract import schemas
from pipeline.contract.models import Identifier
from pipeline.engine.identifiers import Node
from pipeline.engine.messages import fold_message, possible_message, route_message
from pipeline.stream.batches import (
    EVENT_BATCH,
    OPERATION_BATCH,
    accepted_event,
    chunks,
    event_body,
    message_of,
    operation,
    partition_for,
)
from tests.factories import make_event


def _round_trip(name: str, record: dict) -> dict:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schemas.parsed(name), record)
    out.seek(0)
    return fastavro.schemaless_reader(out, schemas.parsed(name), schemas.parsed(name))


def test_every_kind_of_operation_survives_its_avro_form() -> None:
    event = make_event(identifiers=[Identifier(namespace="email", value="a@example.com")])
    messages = [
        ("c1", route_message(event, [Node("email", "a@example.com")], repeat=True)),
        ("c1", route_message(event, [])),
        ("c2", fold_message("c1")),
        ("c1", {"kind": "absorb", "loser": "c2", "state": {"ids": {"email": ["x"]}, "n": 3}}),
        ("c3", possible_message("c1")),
    ]
    encoded: list[dict] = []

    def encode(record: dict) -> tuple[bytes, int]:
        encoded.append(record)
        return event_body(record), 7

    def decode(data: bytes, schema_id: int) -> dict:
        assert schema_id == 7
        parsed = schemas.parsed("io.omnistitch.ChannelEvent")
        return fastavro.schemaless_reader(io.BytesIO(data), parsed, parsed)

    records = [operation(c, m, encode) for c, m in messages]
    assert len(encoded) == 2, "routes without their event's bytes are encoded"
    batch = _round_trip(OPERATION_BATCH, {"operations": records})
    back = [message_of(record, decode) for record in batch["operations"]]
    assert [c for c, _ in back] == [c for c, _ in messages]
    assert [m for _, m in back][2:] == [m for _, m in messages][2:]
    first = back[0][1]
    assert first["repeat"] is True and first["nodes"] == [["email", "a@example.com"]]
    assert first["event"] == event.to_avro()
    assert first["event_bytes"] == (event_body(event.to_avro()), 7)
    # A route that carries its event's bytes passes them on untouched.
    again = operation("c1", first)
    assert (again["event"], again["event_schema_id"]) == first["event_bytes"]


def test_an_unknown_kind_is_refused_both_ways() -> None:
    with pytest.raises(ValueError, match="unknown operation kind"):
        operation("c1", {"kind": "explode"})
    with pytest.raises(ValueError, match="unknown operation kind"):
        message_of({"customer_id": "c1", "kind": "explode"}, lambda _d, _i: {})
    with pytest.raises(ValueError, match="needs an encoder"):
        operation("c1", route_message(make_event(), []))


def test_an_event_batch_keeps_events_and_their_origins() -> None:
    events = [make_event(event_id=f"e{n}") for n in range(3)]
    entries = [
        accepted_event((event_body(e.to_avro()), 3), "t", 2, 40 + n, [("email", "x@y.de")])
        for n, e in enumerate(events)
    ]
    batch = _round_trip(EVENT_BATCH, {"events": entries})
    assert [e["event"] for e in batch["events"]] == [event_body(e.to_avro()) for e in events]
    assert [e["offset"] for e in batch["events"]] == [40, 41, 42]
    assert batch["events"][0]["nodes"] == [{"namespace": "email", "value": "x@y.de"}]


def test_chunks_are_cut_by_count_and_by_bytes_but_never_split_an_item() -> None:
    assert list(chunks([(n, 1) for n in range(5)], max_items=2)) == [[0, 1], [2, 3], [4]]
    sized = [("a", 40), ("b", 40), ("c", 40), ("big", 500), ("d", 1)]
    assert list(chunks(sized, max_items=10, max_bytes=100)) == [
        ["a", "b"],
        ["c"],
        ["big"],
        ["d"],
    ]
    assert list(chunks([], max_items=3)) == []


@pytest.mark.parametrize("partitions", [1, 4, 7])
def test_operations_go_where_kafka_puts_a_record_keyed_by_the_customer(partitions: int) -> None:
    every = list(range(partitions))
    for n in range(200):
        customer = f"cus-{n:05d}"
        expected = DefaultPartitioner()(customer.encode(), every, every)
        assert partition_for(customer, partitions) == expected
