from __future__ import annotations

import hashlib

from pipeline.contract.dead_letters import (
    MAX_KEPT_BYTES,
    DeadLetter,
    DeadLetterCounts,
    Origin,
    Reason,
    Rejection,
    processing_error,
)
from tests.factories import NOW


def test_headers_round_trip_with_original_bytes() -> None:
    letter = DeadLetter(
        Origin("omnistitch.events.v1", 3, 1234),
        Rejection(Reason.unknown_schema_id, "schema id 99 is not registered", 99),
        key=b"evt-1",
        value=b"\x00\x00\x00\x00\x63\xff",
        failed_at=NOW,
    )
    headers = letter.headers()
    assert all(name.startswith("omnistitch.dlq.") for name, _ in headers)
    assert ("omnistitch.dlq.reason", b"unknown_schema_id") in headers
    back = DeadLetter.from_message(letter.key, letter.value, headers)
    assert back == letter


def test_counts_per_reason() -> None:
    counts = DeadLetterCounts()
    for reason in (Reason.too_large, Reason.too_large, Reason.invalid_utf8):
        counts.add(reason)
    assert counts.as_dict() == {"invalid_utf8": 1, "too_large": 2}
    assert counts.total() == 3


def test_a_value_over_the_kept_size_is_cut_with_its_size_and_digest() -> None:
    original = bytes(range(256)) * (MAX_KEPT_BYTES // 256 + 10)
    letter = DeadLetter(
        Origin("t", 0, 1), Rejection(Reason.too_large, "big"), None, original, NOW
    ).bounded()
    assert letter.value == original[:MAX_KEPT_BYTES]
    back = DeadLetter.from_message(None, letter.value, letter.headers())
    assert back.original_bytes == len(original)
    assert back.sha256 == hashlib.sha256(original).hexdigest()
    assert ("omnistitch.dlq.truncated", b"true") in letter.headers()
    small = DeadLetter(Origin("t", 0, 1), Rejection(Reason.too_large, "x"), None, b"abc", NOW)
    assert small.bounded() is small


def test_a_processing_error_names_stage_and_class_never_the_message() -> None:
    try:
        raise KeyError("jane.doe@example.de")
    except KeyError as exc:
        rejection = processing_error("link", exc)
    letter = DeadLetter(
        Origin("t", 0, 1), rejection, None, b"v", NOW, stage="link", exception="KeyError"
    )
    assert rejection.reason is Reason.processing_error
    assert "jane" not in rejection.detail and "KeyError" in rejection.detail
    back = DeadLetter.from_message(None, b"v", letter.headers())
    assert back.stage == "link" and back.exception == "KeyError"
