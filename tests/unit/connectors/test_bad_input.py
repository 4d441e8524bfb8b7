"""Bad input never crashes a mapper: any JSON gives a ChannelEvent or a Rejection (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.files.mappings import DEFAULT_MAPPINGS, map_row
from connectors.http.segment import map_call
from connectors.http.webhooks import MAPPERS
from pipeline.contract.dead_letters import Rejection
from pipeline.contract.models import ChannelEvent

RECEIVED = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
KEYS = st.sampled_from(
    ["type", "event", "userId", "anonymousId", "messageId", "timestamp", "sentAt", "context",
     "traits", "properties", "previousId", "groupId", "device", "address", "email", "phone",
     "sg_event_id", "From", "To", "MessageSid", "object", "entry", "messaging", "sender",
     "message", "visitor", "conversation_id", "message_id", "sent_at", "caller", "call_id",
     "started_at", "id", "ticket", "requester", "occurred_at", "total_price", "currency",
     "created_at", "fulfilment", "order_id", "store_id", "picked_up_at", "externalIds", "x"]
)  # fmt: skip
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12)
    | st.sampled_from(["track", "identify", "page", "screen", "alias", "group", "page",
                       "2026-11-20T10:00:00Z", "1795651200", "click", "ticket.solved",
                       "click_and_collect", "whatsapp:+4917012345678", "\ud800"])
)  # fmt: skip
JSON: Any = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=8),
    max_leaves=25,
)


def _ok(result: object) -> None:
    assert isinstance(result, ChannelEvent | Rejection)
    if isinstance(result, ChannelEvent):
        result.model_dump_json()  # it can be written


@settings(max_examples=300, deadline=None)
@given(payload=JSON, call_type=st.sampled_from([None, "track", "identify", "alias", "t"]))
def test_segment_mapper_never_raises(payload: Any, call_type: str | None) -> None:
    _ok(map_call(payload, source="s", received_at=RECEIVED, call_type=call_type))


@settings(max_examples=300, deadline=None)
@given(payload=JSON, source=st.sampled_from(sorted(MAPPERS)))
def test_webhook_mappers_never_raise(payload: Any, source: str) -> None:
    for _item, result in MAPPERS[source](payload, RECEIVED):
        _ok(result)


@settings(max_examples=300, deadline=None)
@given(
    row=st.dictionaries(st.text(max_size=12) | KEYS, st.text(max_size=20), max_size=10),
    kind=st.sampled_from(sorted(DEFAULT_MAPPINGS)),
)
def test_file_rows_never_raise(row: dict[str, str], kind: str) -> None:
    _ok(map_row(row, DEFAULT_MAPPINGS[kind], file_id=f"{kind}:f:x", line=2, received_at=RECEIVED))
