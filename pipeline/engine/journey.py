"""Journey context: where an event sits in its customer's history of touches.

A touch is ``[occurred_at_ms, channel]``; touches are kept sorted by event time, so an event that
arrives late still gets the touch that really came before it as its predecessor.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from pipeline.contract.models import Channel, ChannelEvent, JourneyEvent, Traits
from pipeline.engine.identifiers import Node

NO_TRAITS = Traits()
# The properties a journey event keeps (the KPIs', docs/kpis.md, and the commerce and service
# ids next to them): journeys go to every consumer and cannot be crypto-shredded, so any other
# property (a free-form analytics.js property, an IP address) stays on the sealed event only.
# OMNISTITCH_JOURNEY_PROPERTIES changes the list.
JOURNEY_PROPERTIES = frozenset(
    {
        "amount",
        "total",
        "revenue",
        "currency",
        "order_id",
        "receipt_id",
        "pickup_id",
        "pickup_store_id",
        "store_id",
        "till_id",
        "fulfilment",
        "ticket_id",
        "status",
        "survey_id",
        "response_id",
        "score",
        "campaign",
        "product_id",
        "sku",
        "category",
        "quantity",
        "message_id",
        "conversation_id",
        "call_id",
        "agent_id",
        "staff_id",
        "page_id",
        "truth_person_id",
    }
)


@dataclass(frozen=True)
class JourneyContext:
    sequence_number: int
    previous_channel: Channel | None
    channel_switch: bool
    time_since_previous_ms: int | None


_time = itemgetter(0)


def _describe(
    touches: list[list[Any]], index: int, at_ms: int, channel: Channel | None
) -> JourneyContext:
    previous = touches[index - 1] if index else None
    previous_channel = Channel(str(previous[1])) if previous else None
    return JourneyContext(
        sequence_number=index + 1,
        previous_channel=previous_channel,
        channel_switch=previous_channel is not None and previous_channel != channel,
        time_since_previous_ms=(at_ms - int(previous[0])) if previous else None,
    )


def place(touches: list[list[Any]], at_ms: int, channel: Channel) -> JourneyContext:
    """Insert the touch into the sorted list and describe its position."""
    index = bisect.bisect_right(touches, at_ms, key=_time)
    touches.insert(index, [at_ms, channel.value])
    return _describe(touches, index, at_ms, channel)


def context_of(touches: list[list[Any]], at_ms: int) -> JourneyContext:
    """The context of a touch already in the list (to emit its journey event again)."""
    index = bisect.bisect_left(touches, at_ms, key=_time)
    channel = Channel(str(touches[index][1])) if index < len(touches) else None
    return _describe(touches, index, at_ms, channel)


def merge_touches(left: list[list[Any]], right: list[list[Any]]) -> list[list[Any]]:
    return sorted(left + right, key=lambda t: (t[0], str(t[1])))


class Journal:
    """Which journey events reached the journeys topic recently (the worker reads the topic's
    last ``window_ms`` after every partition assignment and adds what it emits itself).

    It closes both gaps of at-least-once processing after a crash: an event whose state change
    survived but whose journey event did not is emitted again; an event whose journey event
    reached Kafka but whose state change did not is applied without repeating it. A seen-mark
    older than the window predates any uncommitted work and is a plain duplicate.
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.since_ms = 0
        self.emitted: dict[str, int] = {}
        # Noted since ``begin``: forgotten again by ``rollback`` (a batch handled anew).
        self._noted: list[str] = []

    def reset(self, tail: dict[str, int], now_ms: int) -> None:
        self.emitted = dict(tail)
        self.since_ms = now_ms - self.window_ms

    def begin(self) -> None:
        self._noted.clear()

    def rollback(self) -> None:
        for event_id in self._noted:
            self.emitted.pop(event_id, None)
        self._noted.clear()

    def note(self, event_id: str, now_ms: int) -> None:
        if event_id not in self.emitted:
            self._noted.append(event_id)
        self.emitted[event_id] = now_ms
        if len(self.emitted) > 100_000:  # keep memory bounded: drop what left the window
            horizon = now_ms - self.window_ms
            self.emitted = {e: t for e, t in self.emitted.items() if t >= horizon}

    def lost(self, event_id: str, marked_ms: int) -> bool:
        """Seen recently, yet not on the topic: its journey event was lost in a crash."""
        return marked_ms >= self.since_ms and event_id not in self.emitted


def journey_event(
    customer_id: str,
    event: ChannelEvent,
    nodes: Sequence[Node],
    context: JourneyContext,
    corrects: str | None,
    shown: frozenset[str],
) -> JourneyEvent:
    """The journey event: the event without personal data — its identifiers of this customer
    as hashes of their normalised values, no traits (the profile has them), only the
    properties ``shown``."""
    properties = {k: v for k, v in event.properties.items() if k in shown}
    touch = event.model_copy(
        update={
            "identifiers": [node.hashed() for node in nodes],
            "traits": NO_TRAITS,
            "properties": properties,
            "sealed": None,
        }
    )
    return JourneyEvent.from_valid(  # every value valid by construction
        {
            "customer_id": customer_id,
            "event": touch,
            "sequence_number": context.sequence_number,
            "previous_channel": context.previous_channel,
            "channel_switch": context.channel_switch,
            "time_since_previous_ms": context.time_since_previous_ms,
            "corrects": corrects,
        }
    )
