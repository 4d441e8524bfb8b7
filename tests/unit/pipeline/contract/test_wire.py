"""Every way a Confluent-framed record can be broken gets its own reason."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.contract import schemas
from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.contract.wire import decode_confluent, encode_confluent
from pipeline.exceptions import DecodeError, RegistryUnavailableError
from tests.factories import make_rich_event

SCHEMA_ID = 7
READER = schemas.parsed(schemas.CHANNEL_EVENT)


def lookup(schema_id: int) -> Any:
    if schema_id == SCHEMA_ID:
        return READER
    raise DecodeError(Rejection(Reason.unknown_schema_id, f"id {schema_id} unknown", schema_id))


def _good() -> bytes:
    return encode_confluent(SCHEMA_ID, READER, make_rich_event().to_avro())


def _reason(data: bytes) -> Reason:
    with pytest.raises(DecodeError) as caught:
        decode_confluent(data, lookup, READER)
    return caught.value.rejection.reason


def test_a_good_record_decodes() -> None:
    record = decode_confluent(_good(), lookup, READER)
    assert record["traits"]["first_name"] == "Jürgen"


def test_bad_magic_byte() -> None:
    assert _reason(b"\x01" + _good()[1:]) is Reason.bad_magic_byte
    assert _reason(b'{"event_id": "json instead of avro"}') is Reason.bad_magic_byte
    assert _reason(b"\x00\x00") is Reason.bad_magic_byte


def test_unknown_schema_id() -> None:
    data = _good()
    assert _reason(data[:1] + (999).to_bytes(4, "big") + data[5:]) is Reason.unknown_schema_id


def test_truncated_avro() -> None:
    data = _good()
    for cut in (6, len(data) // 2, len(data) - 1):
        assert _reason(data[:cut]) is Reason.truncated_avro, cut


def test_invalid_utf8() -> None:
    marker = "Jürgen".encode()
    data = _good()
    broken = data.replace(marker, b"\xff\xfe" + marker[2:], 1)
    assert len(broken) == len(data)
    assert _reason(broken) is Reason.invalid_utf8


def test_trailing_bytes() -> None:
    assert _reason(_good() + b"\x00\x00") is Reason.trailing_bytes


def test_registry_outage_is_not_the_records_fault() -> None:
    def unreachable(_schema_id: int) -> Any:
        raise RegistryUnavailableError("connection refused")

    with pytest.raises(RegistryUnavailableError):
        decode_confluent(_good(), unreachable, READER)
