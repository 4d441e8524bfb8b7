from __future__ import annotations

from pipeline.dead_letters import DeadLetter, DeadLetterCounts, Origin, Reason, Rejection
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
