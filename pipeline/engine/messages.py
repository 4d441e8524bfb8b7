"""The messages the profile stage takes (pipeline.engine.profile), one per customer id: an event
routed to it, a fold and an absorb of a merge, a possible match, a reset and rebuilt routes of a
split, an erase. The worker carries them in OperationBatch records (pipeline.stream.batches)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.contract.models import ChannelEvent
from pipeline.engine.identifiers import Node


def route_message(
    event: ChannelEvent, nodes: Sequence[Node], repeat: bool = False
) -> dict[str, Any]:
    """``repeat``: the linker had seen the event id before (see ProfileBook.add_event)."""
    message: dict[str, Any] = {
        "kind": "route",
        "event": event.to_avro(),
        "nodes": [[n.namespace, n.value] for n in nodes],
    }
    if repeat:
        message["repeat"] = True
    return message


def erase_message() -> dict[str, Any]:
    return {"kind": "erase"}


def reset_message(merged: list[str], operation_id: str) -> dict[str, Any]:
    return {"kind": "reset", "merged": list(merged), "operation": operation_id}


def rebuild_message(
    event: ChannelEvent, nodes: Sequence[Node], corrects: str | None
) -> dict[str, Any]:
    return route_message(event, nodes) | {"rebuild": True, "corrects": corrects}


def fold_message(winner: str) -> dict[str, Any]:
    return {"kind": "fold", "winner": winner}


def possible_message(other: str) -> dict[str, Any]:
    return {"kind": "possible", "other": other}
