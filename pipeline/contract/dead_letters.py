"""Dead letters: records that could not be decoded or validated, kept with their reason.

A dead letter carries the original key and value bytes unchanged, its origin (topic, partition,
offset) and a machine-readable reason in headers named ``omnistitch.dlq.*``. The detail text
never contains field values (no personal data), only field paths and error kinds; a
``processing_error`` names the stage and the exception class, never its message.

One exception to "unchanged": a value larger than ``MAX_KEPT_BYTES`` (a record over the size
limit, possibly decompressed from far less on the wire) cannot be written back to Kafka whole;
its first ``MAX_KEPT_BYTES`` are kept, with headers ``original_bytes`` (the full size),
``sha256`` (of the full value) and ``truncated=true``.

Dead letters hold personal data (the original bytes): their topic's retention is
``OMNISTITCH_DEAD_LETTER_RETENTION_DAYS`` and ``purge`` (pipeline.stream.topics) deletes them
earlier.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

HEADER_PREFIX = "omnistitch.dlq."
# The most bytes of an original value a dead letter keeps (far below Kafka's 1 MiB).
MAX_KEPT_BYTES = 512 * 1024


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
    # An IdentityOperation on the operations topic that is not a valid operation.
    invalid_operation = "invalid_operation"
    # The event carries an identifier of a person who was erased: dropped, kept without payload.
    erased = "erased"
    # Sealed fields (pipeline.vault) that do not open: no key for them, or altered bytes.
    unreadable_seal = "unreadable_seal"
    # A field over a size or count limit (pipeline.contract.limits).
    limit_exceeded = "limit_exceeded"
    # The schema id names a schema that is not Avro (JSON Schema, Protobuf).
    unsupported_schema_type = "unsupported_schema_type"
    # Handling the record raised: the stage and the exception class are in the headers.
    processing_error = "processing_error"
    # Raised by the connectors, before a ChannelEvent exists.
    malformed_json = "malformed_json"
    unmappable_record = "unmappable_record"
    # A destination (pipeline.activation.delivery) refused an audience change or never
    # acknowledged it within its attempts.
    undeliverable = "undeliverable"


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
    # processing_error only: the stage that failed and the exception's class name.
    stage: str | None = None
    exception: str | None = None
    # Set by ``bounded()`` when the value was cut to MAX_KEPT_BYTES.
    original_bytes: int | None = None
    sha256: str | None = None
    # The vault key id the value is sealed under (pipeline.vault), when it is.
    sealed_key: str | None = None

    def bounded(self) -> DeadLetter:
        """This dead letter with its value cut to MAX_KEPT_BYTES when it is larger."""
        if self.value is None or len(self.value) <= MAX_KEPT_BYTES:
            return self
        return replace(
            self,
            value=self.value[:MAX_KEPT_BYTES],
            original_bytes=len(self.value),
            sha256=hashlib.sha256(self.value).hexdigest(),
        )

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
        extras = (("stage", self.stage), ("exception", self.exception))
        for name, extra in (*extras, ("sealed_key", self.sealed_key)):
            if extra is not None:
                headers.append((name, extra))
        if self.original_bytes is not None and self.sha256 is not None:
            headers += [
                ("truncated", "true"),
                ("original_bytes", str(self.original_bytes)),
                ("sha256", self.sha256),
            ]
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
        original = found.get("original_bytes")
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
            stage=found.get("stage"),
            exception=found.get("exception"),
            original_bytes=int(original) if original else None,
            sha256=found.get("sha256"),
            sealed_key=found.get("sealed_key"),
        )


def processing_error(stage: str, exc: BaseException) -> Rejection:
    """The rejection of a record whose handling raised: the class, never the message (which
    may quote personal data)."""
    return Rejection(Reason.processing_error, f"{stage} raised {type(exc).__name__}")


def log_processing_error(
    log: logging.Logger, stage: str, exc: BaseException, origin: Origin
) -> None:
    """The log line of a processing error: the stage, the exception's class and where it was
    raised, the record's origin — never the exception's message (it may quote personal data)."""
    frame = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f"{frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno}" if frame else "?"
    log.warning(
        "processing error: stage=%s exception=%s at=%s origin=%s/%d@%d",
        stage,
        type(exc).__name__,
        where,
        origin.topic,
        origin.partition,
        origin.offset,
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
