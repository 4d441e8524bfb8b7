"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, Avro binary.

Pure (fastavro only): used by the registry serde, by replay and by tests.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import fastavro

from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.exceptions import DecodeError

MAGIC_BYTE = 0
HEADER_SIZE = 5


def decode_confluent(
    data: bytes, writer_schema: Callable[[int], Any], reader_schema: Any
) -> dict[str, Any]:
    """Decode one Confluent-framed Avro record. Pure apart from ``writer_schema(id)``.

    ``writer_schema`` returns the parsed writer schema for an id, raises DecodeError when the
    id is unknown, RegistryUnavailableError when it cannot tell.
    """
    if len(data) < HEADER_SIZE or data[0] != MAGIC_BYTE:
        first = f"0x{data[0]:02x}" if data else "none"
        raise DecodeError(
            Rejection(
                Reason.bad_magic_byte, f"expected magic byte 0x00 and a schema id, got {first}"
            )
        )
    schema_id = int.from_bytes(data[1:HEADER_SIZE], "big")
    writer = writer_schema(schema_id)
    payload = io.BytesIO(data[HEADER_SIZE:])
    try:
        record = fastavro.schemaless_reader(payload, writer, reader_schema)
    except UnicodeDecodeError as exc:
        raise DecodeError(
            Rejection(Reason.invalid_utf8, f"string is not UTF-8 at byte {exc.start}", schema_id)
        ) from exc
    except (EOFError, StopIteration) as exc:
        raise DecodeError(
            Rejection(Reason.truncated_avro, "record ends before its schema does", schema_id)
        ) from exc
    except Exception as exc:  # bad union index, bad enum index, negative length, ...
        raise DecodeError(Rejection(Reason.malformed_avro, type(exc).__name__, schema_id)) from exc
    rest = len(data) - HEADER_SIZE - payload.tell()
    if rest:
        raise DecodeError(
            Rejection(Reason.trailing_bytes, f"{rest} bytes after the record", schema_id)
        )
    if not isinstance(record, dict):
        raise DecodeError(Rejection(Reason.malformed_avro, "not a record", schema_id))
    return record


def encode_confluent(schema_id: int, schema: Any, record: dict[str, Any]) -> bytes:
    """Frame one record written with ``schema`` (parsed) under ``schema_id``."""
    out = io.BytesIO()
    out.write(bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# Avro binary of a few primitives, to wrap a record that is already encoded
# (pipeline.stream.batches):
# a journey event is its customer id, the event's bytes as they came and four small fields.
# --------------------------------------------------------------------------------------------
