"""The worker's stateful stages, one batch record at a time, without faust or a Kafka client.

``LinkStage`` takes the events of an EventBatch and ``ProfileStage`` the operations of an
OperationBatch (pipeline.stream.batches). Each runs the pure engine (pipeline.engine.graph,
pipeline.engine.profile) over the batch against a working set (``StagedStore``): a key read twice in
a batch is read once from the table, a key changed k times is written once, when the whole
batch was handled (``commit``). What the batch sends comes back as ``Output`` tuples, in order;
the caller (pipeline.stream.app) sends them, then lets its consumer commit the batch's offset.

A record whose handling raises does not stop the batch: the batch is handled again from its
first record with that record left out (nothing of the first attempt was written), and the
record is reported in ``Outcome.failures`` for a ``processing_error`` dead letter. A value that
would exceed the state bound is found the same way (``strict`` runs check each record's
writes). A schema registry that cannot be reached raises RegistryUnavailableError: the caller
rolls back and retries the whole batch.

Outputs are coalesced where the contract allows: a customer changed k times in a batch gets one
profile record, its latest state, written before the tombstones of customers merged into it;
journeys and identity changes stay one per event / change.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.clock import Clock
from pipeline.contract.dead_letters import Origin
from pipeline.contract.models import ChannelEvent, CustomerProfile, IdentityChange, JourneyEvent
from pipeline.contract.schemas import (
    CHANNEL_EVENT,
    IDENTITY_OPERATION,
    OPERATION_RESULT,
)
from pipeline.contract.wire import MAGIC_BYTE
from pipeline.engine.erasure import Shred
from pipeline.engine.graph import Graph
from pipeline.engine.identifiers import Node
from pipeline.engine.journey import Journal
from pipeline.engine.links import public_change
from pipeline.engine.messages import (
    erase_message,
    fold_message,
    possible_message,
    rebuild_message,
    reset_message,
)
from pipeline.engine.operations import Operation, Operations
from pipeline.engine.profile import ProfileBook
from pipeline.engine.state import StagedStore, Store
from pipeline.engine.stitcher import StitchConfig
from pipeline.exceptions import (
    OmnistitchError,
    OutputTooLargeError,
    RegistryUnavailableError,
    StateValueTooLargeError,
    VaultUnavailableError,
)
from pipeline.stream.batches import (
    MAX_BATCH_BYTES,
    OPERATION_BATCH,
    EventBytes,
    chunks,
    event_body,
    message_of,
    operation,
    partition_for,
)
from pipeline.stream.delivery import Output
from pipeline.stream.serialization import Serde

# Far below Kafka's default 1 MiB message size: a table value (changelog record) or an output
# larger than this is refused before anything is written (limits make it unreachable).
MAX_STATE_VALUE_BYTES = 512 * 1024
MAX_OUTPUT_BYTES = 900 * 1024


def keep(event: EventBytes) -> str:
    """An event's bytes as the linker keeps them with its decision (``<schema id>:<base64>``),
    so that a split can rebuild the parts from their own events."""
    return f"{event[1]}:{base64.b64encode(event[0]).decode('ascii')}"


def offset_key(topic: str, partition: int) -> str:
    """The key under which a stage's table keeps the last offset it handled of an input
    partition (``o|<topic>|<partition>``; pipeline.stream.app.handle_batch)."""
    return f"o|{topic}|{partition}"


@dataclass(frozen=True)
class Topics:
    """The names of the topics the stages write (with the deployment's prefix)."""

    events: str
    operations: str
    changes: str
    profiles: str
    journeys: str
    # Where the linking stage answers operators' decisions (OperationResult records).
    results: str


@dataclass
class Outcome:
    outputs: list[Output] = field(default_factory=list)
    # (index in the batch, what it raised): records left out, for dead letters.
    failures: list[tuple[int, Exception]] = field(default_factory=list)


class _Again(OmnistitchError):
    """A record failed: handle the batch again without it."""


def _checked(output: Output) -> Output:
    value = output[2]
    if value is not None and len(value) > MAX_OUTPUT_BYTES:
        raise OutputTooLargeError(f"{len(value)} bytes")
    return output


class BatchStage:
    """The batch discipline shared by both stages (see the module doc)."""

    def __init__(
        self,
        store: Store,
        serde: Serde,
        topics: Topics,
        clock: Clock,
        partitions: int,
        batch_size: int,
    ) -> None:
        self.state = StagedStore(store, MAX_STATE_VALUE_BYTES)
        self.serde = serde
        self.topics = topics
        self.clock = clock
        # The profile stage's partitions and the operations per OperationBatch.
        self.partitions = partitions
        self.batch_size = batch_size
        self.items: list[dict[str, Any]] = []  # the batch being handled
        # The batch erased a person (the caller purges the state files after committing).
        self.erasing = False
        # The batch erased, split or reset: earlier versions of what it wrote are to become
        # unreadable (the caller re-keys them, pipeline.vault.tables).
        self.forgetting = False

    # The stage's part: per attempt, per record, at the end of an attempt.
    def start(self, items: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def one(self, index: int, now: datetime, strict: bool) -> list[Output]:
        raise NotImplementedError

    def finish(self, now: datetime, strict: bool) -> list[Output]:
        raise NotImplementedError

    def undo(self) -> None:
        """Forget what an abandoned attempt changed outside the state (default: nothing)."""

    def run(self, items: list[dict[str, Any]]) -> Outcome:
        """Handle a batch and commit its state; see the module doc."""
        failures: dict[int, Exception] = {}
        strict = False
        while True:
            self.state.rollback()
            self.items = items
            self.erasing = False
            self.forgetting = False
            self.start(items)
            now = self.clock()
            outputs: list[Output] = []
            try:
                for index in range(len(items)):
                    if index in failures:
                        continue
                    self.state.begin()
                    try:
                        outputs += map(_checked, self.one(index, now, strict))
                        if strict:
                            self.state.check_recent()
                    except (RegistryUnavailableError, VaultUnavailableError):
                        raise
                    except Exception as exc:
                        failures[index] = exc
                        raise _Again from exc
                outputs += map(_checked, self.finish(now, strict))
                self.state.commit()
                return Outcome(outputs, sorted(failures.items()))
            except _Again:
                self.undo()
            except (StateValueTooLargeError, OutputTooLargeError):
                # Found only at the end of the batch: find the record, one check per record.
                self.undo()
                if strict:
                    raise
                strict = True
            except BaseException:
                self.undo()
                self.state.rollback()
                raise

    def rollback(self) -> None:
        self.state.rollback()
        self.undo()

    def decode_event(self, data: bytes, schema_id: int) -> dict[str, Any]:
        return self.serde.decode_body(data, schema_id, CHANNEL_EVENT)

    def encode_event(self, record: dict[str, Any]) -> EventBytes:
        return event_body(record), self.serde.schema_id(self.topics.events, CHANNEL_EVENT)

    def operation_batches(self, operations: list[tuple[str, dict[str, Any]]]) -> list[Output]:
        """Operations grouped by the profile partition of their customer, in order, as
        OperationBatch records of at most batch_size operations and MAX_BATCH_BYTES."""
        by_partition: dict[int, list[dict[str, Any]]] = {}
        for customer_id, message in operations:
            partition = partition_for(customer_id, self.partitions)
            by_partition.setdefault(partition, []).append(
                operation(customer_id, message, self.encode_event)
            )
        out: list[Output] = []
        for partition, records in by_partition.items():
            for batch in chunks(((r, 1) for r in records), self.batch_size):
                out += self._encoded_operations(batch, partition)
        return out

    def _encoded_operations(self, batch: list[dict[str, Any]], partition: int) -> list[Output]:
        topic = self.topics.operations
        value = self.serde.encode_record(topic, OPERATION_BATCH, {"operations": batch})
        if len(value) > MAX_BATCH_BYTES and len(batch) > 1:
            half = len(batch) // 2
            return self._encoded_operations(batch[:half], partition) + self._encoded_operations(
                batch[half:], partition
            )
        return [(topic, None, value, partition)]


class LinkStage(BatchStage):
    """Linking (the single writer of the customer graph) over an EventBatch's events."""

    def __init__(
        self,
        store: Store,
        serde: Serde,
        topics: Topics,
        clock: Clock,
        stitch: StitchConfig,
        partitions: int,
        batch_size: int,
        keep_events: bool = True,
        shred: Shred | None = None,
        seal_result: Callable[[Operation, dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """``keep_events``: keep every event with its decision (splits rebuild from them);
        ``shred``: deletes data keys in the vault (an erase; a resent erased event)."""
        super().__init__(store, serde, topics, clock, partitions, batch_size)
        self.stitch = stitch
        self.keep_events = keep_events
        self.graph = Graph(self.state, stitch.rules, stitch.matching, stitch.suppression)
        self.shred = shred
        self.seal_result = seal_result  # an explain's answer, sealed (pipeline.vault)
        self.decisions = Operations(
            self.graph, stitch.normaliser, self.read_kept if keep_events else None, shred
        )
        # Indexes of the batch's events that carried an erased person's identifier.
        self.erased: list[int] = []
        self.operations: list[tuple[str, dict[str, Any]]] = []

    def start(self, items: list[dict[str, Any]]) -> None:
        self.operations = []
        self.erased = []

    def one(self, index: int, now: datetime, strict: bool) -> list[Output]:
        item = self.items[index]
        if item.get("operation") is not None:
            return self.decide(Operation.from_json(item["operation"]), now)
        given_bytes = (item["event"], item["event_schema_id"])
        record = self.decode_event(*given_bytes)
        event = ChannelEvent.trusted(record)  # validated by intake
        given = item.get("nodes")
        if given is None:
            nodes, _dropped = self.stitch.normaliser.nodes(event.identifiers, event.traits)
        else:  # normalised by intake, with the same settings
            nodes = [Node(n["namespace"], n["value"]) for n in given]
        linked = self.graph.link(event, nodes, now, keep(given_bytes) if self.keep_events else None)
        if linked.erased:  # nothing linked or kept; the caller writes a dead letter
            self.erased.append(index)
            if self.shred is not None:  # its sealed copy on the events topic goes dark too
                self.shred([event.event_id], [])
            return []
        topic = self.topics.changes
        out: list[Output] = [
            (
                topic,
                change.customer_id.encode(),
                self.serde.encode(topic, public_change(change)),
                None,
            )
            for change in linked.changes
        ]
        ops = self.operations
        ops.extend((fold.loser, fold_message(fold.winner)) for fold in linked.folds)
        for a, b in linked.possible:
            ops += [(a, possible_message(b)), (b, possible_message(a))]
        route: dict[str, Any] = {
            "kind": "route",
            "event": record,
            "event_bytes": given_bytes,  # passed on as they came, not encoded again
            "nodes": [[n.namespace, n.value] for n in linked.nodes],
        }
        if linked.duplicate:
            route["repeat"] = True
        ops.append((linked.customer_id, route))
        return out

    def decide(self, operation: Operation, now: datetime) -> list[Output]:
        """An operator's decision (pipeline.engine.operations): its identity changes, the folds
        of a merge for the profile stage, and its result on the results topic."""
        outcome = self.decisions.apply(operation, now)
        changes = self.topics.changes
        out: list[Output] = [
            (
                changes,
                change.customer_id.encode(),
                self.serde.encode(changes, public_change(change)),
                None,
            )
            for change in outcome.linked.changes
        ]
        ops = self.operations
        ops.extend((fold.loser, fold_message(fold.winner)) for fold in outcome.linked.folds)
        ops.extend((gone, erase_message()) for gone in outcome.erased)
        self.erasing |= bool(outcome.erased)
        self.forgetting |= bool(outcome.erased or outcome.rebuilds)
        for rebuild in outcome.rebuilds:  # a split: each part starts again from its events
            reset = reset_message(rebuild.merged, outcome.operation_id)
            ops.append((rebuild.customer_id, reset))
            ops.extend(
                (rebuild.customer_id, rebuild_message(event, nodes, corrects))
                for event, nodes, corrects in rebuild.events
            )
        results = self.topics.results
        result = outcome.to_result(operation.kind, now)
        if operation.kind == "explain" and self.seal_result is not None:
            result = self.seal_result(operation, result)  # the path names identifiers
        value = self.serde.encode_record(results, OPERATION_RESULT, result)
        return [*out, (results, operation.operation_id.encode(), value, None)]

    def _changes(self, changes: list[IdentityChange]) -> list[Output]:
        """Identity changes as their topic carries them (hashed identifiers: public_change)."""
        topic = self.topics.changes
        return [
            (topic, c.customer_id.encode(), self.serde.encode(topic, public_change(c)), None)
            for c in changes
        ]

    def read_kept(self, body: str) -> ChannelEvent:
        """An event kept with its linking decision (``keep``) read back."""
        schema_id, data = body.split(":", 1)
        return ChannelEvent.trusted(self.decode_event(base64.b64decode(data), int(schema_id)))

    def finish(self, now: datetime, strict: bool) -> list[Output]:
        return self.operation_batches(self.operations)

    def failure_result(self, index: int, error: Exception) -> list[Output]:
        """An operation whose handling raised still gets its answer (``failed``, nothing
        applied), so that whoever waits for it is not left waiting; an event: nothing."""
        operation = self.items[index].get("operation")
        if operation is None:
            return []
        operation_id = str(operation.get("operation_id", ""))
        result: dict[str, Any] = {
            "operation_id": operation_id,
            "kind": str(operation.get("kind", "")),
            "status": "failed",
            "detail": f"processing_error: {type(error).__name__}; nothing applied, dead-lettered",
            "customer_id": None,
            "change_ids": [],
            "decided_at": self.clock(),
        }
        topic = self.topics.results
        value = self.serde.encode_record(topic, OPERATION_RESULT, result)
        return [(topic, operation_id.encode(), value, None)]

    def origin(self, index: int) -> Origin:
        item = self.items[index]
        return Origin(item["topic"], item["partition"], item["offset"])

    def dead_letter(self, index: int) -> tuple[Origin, bytes | None, bytes | None]:
        """Where the failed event came from, its event id and its bytes as a ChannelEvent
        record in the Confluent wire format."""
        item = self.items[index]
        origin = self.origin(index)
        if item.get("operation") is not None:  # the operation as an IdentityOperation record
            try:
                operation = item["operation"]
                encoded = self.serde.encode_record(item["topic"], IDENTITY_OPERATION, operation)
            except Exception:  # the record may be what broke: keep the dead letter anyway
                encoded = None
            return origin, str(item["operation"].get("operation_id", "")).encode(), encoded
        value = bytes([MAGIC_BYTE]) + item["event_schema_id"].to_bytes(4, "big") + item["event"]
        try:
            key: bytes | None = self.decode_event(item["event"], item["event_schema_id"])[
                "event_id"
            ].encode()
        except Exception:  # the record may be what broke: keep the dead letter anyway
            key = None
        return origin, key, value


class ProfileStage(BatchStage):
    """Profiles and journeys over the operations of one partition's OperationBatch."""

    def __init__(
        self,
        store: Store,
        serde: Serde,
        topics: Topics,
        clock: Clock,
        stitch: StitchConfig,
        journal: Journal,
        partitions: int,
        batch_size: int,
    ) -> None:
        super().__init__(store, serde, topics, clock, partitions, batch_size)
        self.journal = journal
        self.book = ProfileBook(
            self.state,
            stitch.survivorship,
            journal=journal,
            rules=stitch.rules,
            coalesce=True,
            journey_properties=stitch.journey_properties,
        )
        self.touched: dict[str, None] = {}
        # The profiles of the batch's outputs by customer id (sealing re-encodes from them).
        self.built: dict[str, CustomerProfile] = {}
        self.tombstones: list[str] = []
        self.forwards: list[tuple[str, dict[str, Any]]] = []

    def start(self, items: list[dict[str, Any]]) -> None:
        self.touched = {}
        self.built = {}
        self.tombstones = []
        self.forwards = []
        self.journal.begin()

    def undo(self) -> None:
        self.journal.rollback()

    def one(self, index: int, now: datetime, strict: bool) -> list[Output]:
        customer_id, message = message_of(self.items[index], self.decode_event)
        self.erasing |= message["kind"] == "erase"
        self.forgetting |= message["kind"] in ("erase", "reset")
        produced = self.book.handle(customer_id, message, now)
        out: list[Output] = [self._journey(journey) for journey in produced.journeys]
        self.touched.update(dict.fromkeys(produced.touched))
        self.tombstones += produced.tombstones
        self.forwards += produced.forwards
        if strict:  # each record's profiles now, so that a failing one is found
            out += self._profiles(now)
        return out

    def _journey(self, journey: JourneyEvent) -> Output:
        topic = self.topics.journeys
        return (topic, journey.customer_id.encode(), self.serde.encode(topic, journey), None)

    def _profiles(self, now: datetime) -> list[Output]:
        """The latest profile of every customer changed, then the tombstones of customers
        merged into them."""
        topic = self.topics.profiles
        out: list[Output] = []
        for customer_id in self.touched:
            profile = self.book.snapshot(customer_id, now)
            if profile is not None:
                self.built[customer_id] = profile
                out.append((topic, customer_id.encode(), self.serde.encode(topic, profile), None))
        out += [(topic, gone.encode(), None, None) for gone in self.tombstones]
        self.touched, self.tombstones = {}, []
        return out

    def finish(self, now: datetime, strict: bool) -> list[Output]:
        return self._profiles(now) + self.operation_batches(self.forwards)

    def dead_letter(self, index: int) -> bytes | None:
        """The failed operation alone, as an OperationBatch record."""
        try:
            return self.serde.encode_record(
                self.topics.operations, OPERATION_BATCH, {"operations": [self.items[index]]}
            )
        except Exception:  # the record may be what broke: keep the dead letter anyway
            return None
