"""The worker's internal hops, one Kafka record per batch (issue #11).

Between the stages a record carries many events or operations (schemas
``io.omnistitch.internal.EventBatch`` and ``.OperationBatch``, see docs/contract.md), so faust's
per-record cost is paid once per batch, not once per event. Public topics are unchanged.

* intake → linking: an EventBatch of up to ``batch_size`` accepted events (and at most
  ``MAX_BATCH_BYTES`` of them), with the offset each was read at.
* linking → profiles: an OperationBatch per partition of the profile stage; every operation's
  customer id hashes to that partition with Kafka's murmur2, exactly where a record keyed by
  the customer id would go, so the profile stage's state stays where earlier versions put it.

Operations travel as the profile stage's messages (``pipeline.engine.profile``): ``route``,
``fold``, ``absorb`` and ``possible``; this module converts them to and from their Avro form.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import fastavro
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from pipeline.contract import schemas

EVENT_BATCH = f"{schemas.NAMESPACE}.internal.EventBatch"
OPERATION_BATCH = f"{schemas.NAMESPACE}.internal.OperationBatch"
# A batch record stays far below Kafka's 1 MiB default message size: batches are cut at this
# many bytes of their events (a single event is at most intake's record limit, <= 512 KiB).
MAX_BATCH_BYTES = 512 * 1024


def partition_for(customer_id: str, partitions: int) -> int:
    """The partition a record keyed by ``customer_id`` goes to (Kafka's default partitioner)."""
    hashed: int = murmur2(customer_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def chunks(
    items: Iterable[tuple[Any, int]], max_items: int, max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[list[Any]]:
    """Consecutive batches of ``(item, size)`` pairs: at most ``max_items`` items and, unless a
    single item is larger, at most ``max_bytes`` of their sizes."""
    batch: list[Any] = []
    size = 0
    for item, item_size in items:
        if batch and (len(batch) >= max_items or size + item_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


# An event as the hops carry it: its ChannelEvent Avro binary and that schema's registry id.
EventBytes = tuple[bytes, int]


def event_body(record: dict[str, Any]) -> bytes:
    """A ChannelEvent record in Avro binary with this version's schema (no framing)."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schemas.parsed(schemas.CHANNEL_EVENT), record)
    return out.getvalue()


def accepted_event(
    event: EventBytes,
    topic: str,
    partition: int,
    offset: int,
    nodes: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """One entry of an EventBatch: the event's bytes, where intake read it and, when intake
    normalised them, its nodes as (namespace, value) pairs."""
    return {
        "event": event[0],
        "event_schema_id": event[1],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "nodes": None if nodes is None else [{"namespace": n, "value": v} for n, v in nodes],
    }


def operation(
    customer_id: str,
    message: dict[str, Any],
    encode_event: Callable[[dict[str, Any]], EventBytes] | None = None,
) -> dict[str, Any]:
    """A profile-stage message (pipeline.engine.profile) as an Operation record. A route carries its
    event's bytes as they came (``message["event_bytes"]``), or ``encode_event`` makes them."""
    kind = message["kind"]
    record: dict[str, Any] = {
        "customer_id": customer_id,
        "kind": kind,
        "event": None,
        "event_schema_id": 0,
        "nodes": [],
        "repeat": False,
        "other": None,
        "state": None,
        "rebuild": False,
        "corrects": None,
        "merged": [],
    }
    if kind == "route":
        given = message.get("event_bytes")
        if given is None:
            if encode_event is None:
                raise ValueError("a route without its event's bytes needs an encoder")
            given = encode_event(message["event"])
        record["event"], record["event_schema_id"] = given
        record["nodes"] = [{"namespace": ns, "value": value} for ns, value in message["nodes"]]
        record["repeat"] = bool(message.get("repeat"))
        record["rebuild"] = bool(message.get("rebuild"))
        record["corrects"] = message.get("corrects")
    elif kind == "reset":
        record["merged"] = list(message["merged"])
        record["other"] = message.get("operation")
    elif kind == "erase":
        pass  # the customer id says it all
    elif kind == "fold":
        record["other"] = message["winner"]
    elif kind == "absorb":
        record["other"] = message["loser"]
        record["state"] = json.dumps(message["state"], separators=(",", ":"), ensure_ascii=False)
    elif kind == "possible":
        record["other"] = message["other"]
    else:
        raise ValueError(f"unknown operation kind {kind!r}")
    return record


def message_of(
    record: dict[str, Any], decode_event: Callable[[bytes, int], dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """An Operation record back as (customer id, profile-stage message); a route's event is
    decoded (``decode_event(bytes, schema id)``) and its bytes kept as ``event_bytes``."""
    kind = record["kind"]
    message: dict[str, Any] = {"kind": kind}
    if kind == "route":
        given = (record["event"], record["event_schema_id"])
        message["event"] = decode_event(*given)
        message["event_bytes"] = given
        message["nodes"] = [[n["namespace"], n["value"]] for n in record["nodes"]]
        if record.get("repeat"):
            message["repeat"] = True
        if record.get("rebuild"):
            message["rebuild"] = True
            message["corrects"] = record.get("corrects")
    elif kind == "reset":
        message["merged"] = list(record.get("merged") or [])
        message["operation"] = record.get("other")
    elif kind == "erase":
        pass
    elif kind == "fold":
        message["winner"] = record["other"]
    elif kind == "absorb":
        message["loser"] = record["other"]
        message["state"] = json.loads(record["state"])
    elif kind == "possible":
        message["other"] = record["other"]
    else:
        raise ValueError(f"unknown operation kind {kind!r}")
    return record["customer_id"], message
