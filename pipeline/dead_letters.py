"""Dead letters: records that could not be decoded or validated, kept with their reason.

A dead letter carries the original key and value bytes unchanged, its origin (topic, partition,
offset) and a machine-readable reason in headers named ``omnistitch.dlq.*``. The detail text
never contains field values (no personal data), only field paths and error kinds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

HEADER_PREFIX = "omnistitch.dlq."


class Reason(StrEnum):
    too_large = "too_large"
    empty_record = "empty_record"
    bad_magic_byte = "bad_magic_byte"
    unknown_schema_id = "unknown_schema_id"
    truncated_avro = "truncated_avro"
    invalid_utf8 = "invalid_utf8"
    malformed_avro = "malformed_avro"
    trailing_bytes = "trailing_bytes"
    missing_event_id = "missing_event_id"
    occurred_at_out_of_window = "occurred_at_out_of_window"
    no_identifiers_or_traits = "no_identifiers_or_traits"
    invalid_event = "invalid_event"
    # A field over a size or count limit (pipeline.limits).
    limit_exceeded = "limit_exceeded"
    # The schema id names a schema that is not Avro (JSON Schema, Protobuf).
    unsupported_schema_type = "unsupported_schema_type"
    # Handling the record raised: the stage and the exception class are in the headers.
    processing_error = "processing_error"
    # Raised by the connectors, before a ChannelEvent exists.
    malformed_json = "malformed_json"
    unmappable_record = "unmappable_record"


@dataclass(frozen=True)
class Rejection:
    """Why one record was refused."""

    reason: Reason
    detail: str
    schema_id: int | None = None


@dataclass(frozen=True)
class Origin:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLetter:
    origin: Origin
    rejection: Rejection
    key: bytes | None
    value: bytes | None
    failed_at: datetime

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("reason", self.rejection.reason.value),
            ("detail", self.rejection.detail),
            ("origin.topic", self.origin.topic),
            ("origin.partition", str(self.origin.partition)),
            ("origin.offset", str(self.origin.offset)),
            ("failed_at", self.failed_at.isoformat()),
        ]
        if self.rejection.schema_id is not None:
            headers.append(("schema_id", str(self.rejection.schema_id)))
        return [(HEADER_PREFIX + name, value.encode()) for name, value in headers]

    @classmethod
    def from_message(
        cls,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> DeadLetter:
        """Read a dead letter back from a consumed message (for consumers and tests)."""
        found = {
            name[len(HEADER_PREFIX) :]: (raw or b"").decode()
            for name, raw in headers
            if name.startswith(HEADER_PREFIX)
        }
        schema_id = found.get("schema_id")
        return cls(
            origin=Origin(
                found["origin.topic"], int(found["origin.partition"]), int(found["origin.offset"])
            ),
            rejection=Rejection(
                Reason(found["reason"]), found["detail"], int(schema_id) if schema_id else None
            ),
            key=key,
            value=value,
            failed_at=datetime.fromisoformat(found["failed_at"]),
        )


class DeadLetterCounts:
    """How many records were dead-lettered, per reason."""

    def __init__(self) -> None:
        self._counts: Counter[Reason] = Counter()

    def add(self, reason: Reason) -> None:
        self._counts[reason] += 1

    def as_dict(self) -> dict[str, int]:
        return {reason.value: count for reason, count in sorted(self._counts.items())}

    def total(self) -> int:
        return sum(self._counts.values())
