"""``omnistitch replay``: the stitching engine in-process over a JSON-lines file, no Kafka.

Every line is a ChannelEvent in the contract's JSON form. The output has one line per input
line, in input order: ``{"event_id": ..., "customer_id": ...}`` with the customer id after all
merges (``customer_id`` null and ``rejected`` set for an event the intake refused). A line
``{"operation": {...}}`` is an operator's decision (pipeline.engine.operations: link, accept,
reject), applied in order with the events; its output line is the outcome
(``operation_id``, ``status``, ``detail``, ``customer_id``, ``changes``). A line that is not a
JSON object, or a broken operation, stops the replay with an error naming the line.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from pipeline.clock import Clock, system_clock
from pipeline.contract.dead_letters import Rejection
from pipeline.contract.event_json import fast_event
from pipeline.contract.intake import check, encodable, validate
from pipeline.contract.models import ChangeType, ChannelEvent, CustomerProfile
from pipeline.engine.links import public_change
from pipeline.engine.operations import Operation
from pipeline.engine.state import MemoryStore, Store
from pipeline.engine.stitcher import Outputs, StitchConfig, Stitcher
from pipeline.exceptions import ConfigurationError, UnreadableInputError

PROGRESS_MIN_BYTES = 5 * 1024 * 1024


@dataclass
class ReplaySummary:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dropped_identifiers: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)
    profiles: int = 0
    seconds: float = 0.0
    matching: Counter[str] | None = None  # None: probabilistic matching was off
    operations: Counter[str] = field(default_factory=Counter)  # operator decisions by status

    @property
    def events_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    def render(self) -> str:
        rows = [
            ("events read", f"{self.lines}"),
            ("accepted", f"{self.accepted} ({self.duplicates} repeated event ids)"),
            ("rejected", f"{sum(self.rejected.values())} {dict(sorted(self.rejected.items()))}"),
            (
                "identifiers dropped",
                f"{sum(self.dropped_identifiers.values())} "
                f"{dict(sorted(self.dropped_identifiers.items()))}",
            ),
            ("profiles", f"{self.profiles}"),
            ("merges", f"{self.changes.get(ChangeType.merged.value, 0)}"),
            ("conflicts", f"{self.changes.get(ChangeType.conflict.value, 0)}"),
            ("quarantined", f"{self.changes.get(ChangeType.quarantined.value, 0)}"),
            (
                "probabilistic",
                "off"
                if self.matching is None
                else f"{self.matching.get('auto_links', 0)} links, "
                f"{self.changes.get(ChangeType.possible_match.value, 0)} possible matches, "
                f"{self.matching.get('compared', 0)} comparisons, "
                f"{self.matching.get('oversized_blocks_skipped', 0)} oversized blocks skipped",
            ),
            ("time", f"{self.seconds:.2f}s, {self.events_per_second:,.0f} events/s"),
        ]
        if self.operations:
            rows.insert(-1, ("operations", f"{dict(sorted(self.operations.items()))}"))
        return "\n".join(f"{name:>20}: {value}" for name, value in rows)


@contextmanager
def open_stores(kind: str, state_dir: Path | None) -> Iterator[tuple[Store, Store]]:
    if kind == "memory":
        yield MemoryStore(), MemoryStore()
        return
    from pipeline.replay.stores import RocksDBStore

    if state_dir is None:
        raise ConfigurationError("--store rocksdb needs --state-dir")
    graph, book = RocksDBStore(state_dir / "graph"), RocksDBStore(state_dir / "profiles")
    try:
        yield graph, book
    finally:
        graph.close()
        book.close()


def _lines(path: Path, progress: bool) -> Iterator[tuple[int, str]]:
    size = path.stat().st_size
    with path.open(encoding="utf-8", errors="strict") as fh:
        bar = None
        if progress and size >= PROGRESS_MIN_BYTES:
            from tqdm import tqdm

            bar = tqdm(total=size, unit="B", unit_scale=True, desc="replay", leave=False)
        try:
            for number, line in enumerate(fh, start=1):
                if bar is not None:
                    bar.update(len(line.encode("utf-8")))
                yield number, line
        except UnicodeDecodeError as exc:
            raise UnreadableInputError(
                f"{path}: not UTF-8 after line {number}: {exc.reason}"
            ) from exc
        finally:
            if bar is not None:
                bar.close()


def _read_event(
    path: Path, number: int, line: str, now: datetime, config: StitchConfig
) -> tuple[ChannelEvent | Rejection, str | None]:
    """Parse one line: the typed fast path (pipeline.contract.event_json), then pydantic's JSON
    parser; the slow path only to explain a failure."""
    event = fast_event(line)
    if event is None:
        try:
            event = ChannelEvent.model_validate_json(line)
        except ValidationError:
            event = None
    if event is not None:
        return _writable(check(event, now, config.intake), line), event.event_id
    try:
        data: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UnreadableInputError(
            f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})"
        ) from exc
    if not isinstance(data, dict):
        raise UnreadableInputError(f"{path}:{number}: not a JSON object")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    return _writable(validate(data, now, config.intake), line), event_id


def _read_operation(path: Path, number: int, line: str) -> Operation | None:
    """An operator's decision, ``{"operation": {...}}`` (pipeline.engine.operations), or None
    when the line is not one. A line that says it is one but is broken stops the replay."""
    if '"operation"' not in line:
        return None
    try:
        data: Any = json.loads(line)
    except json.JSONDecodeError:
        return None  # reported as an unreadable event by the event path
    if not isinstance(data, dict) or not isinstance(data.get("operation"), dict):
        return None
    try:
        return Operation.from_json(data["operation"])
    except ConfigurationError as exc:
        raise UnreadableInputError(f"{path}:{number}: {exc}") from exc


def _writable(outcome: ChannelEvent | Rejection, line: str) -> ChannelEvent | Rejection:
    """Only an escaped surrogate (\\udXXX) can make an event unwritable: check those lines."""
    if isinstance(outcome, ChannelEvent) and "\\ud" in line.lower():
        return encodable(outcome)
    return outcome


def _write_outputs(
    out: Outputs,
    changes_out: IO[str] | None,
    journeys_out: IO[str] | None,
    latest: dict[str, CustomerProfile] | None,
) -> None:
    if changes_out is not None:
        changes_out.writelines(public_change(change).to_json() + "\n" for change in out.changes)
    if journeys_out is not None:
        journeys_out.writelines(j.to_json() + "\n" for j in out.journeys)
    if latest is not None:
        for gone in out.tombstones:
            latest.pop(gone, None)
        latest.update((p.customer_id, p) for p in out.profiles)


def replay(
    input_path: Path,
    output: IO[str],
    config: StitchConfig | None = None,
    store: str = "memory",
    state_dir: Path | None = None,
    clock: Clock = system_clock,
    profiles_out: IO[str] | None = None,
    changes_out: IO[str] | None = None,
    journeys_out: IO[str] | None = None,
    progress: bool = True,
    inspect: Callable[[Stitcher], None] | None = None,
) -> ReplaySummary:
    """Replay ``input_path``; ``inspect`` sees the stitcher at the end, before its stores
    close (evaluation reads the matcher's features there)."""
    config = config or StitchConfig()
    summary = ReplaySummary()
    started = time.perf_counter()
    # (event_id, rejection reason), or an operation's outcome, in input order.
    routed: list[tuple[str | None, str | None] | dict[str, Any]] = []
    latest: dict[str, CustomerProfile] = {}
    with ExitStack() as stack:
        graph_store, profile_store = stack.enter_context(open_stores(store, state_dir))
        emit = profiles_out is not None or journeys_out is not None
        stitcher = Stitcher(
            graph_store, profile_store, config, clock, emit_outputs=emit, keep_events=True
        )
        for number, line in _lines(input_path, progress):
            if not line.strip():
                continue
            summary.lines += 1
            operation = _read_operation(input_path, number, line)
            if operation is not None:
                done, out = stitcher.operate(operation)
                summary.operations[done.status] += 1
                if operation.kind == "erase" and done.status == "done":
                    for used in (graph_store, profile_store):
                        purge = getattr(used, "purge", None)  # RocksDB: out of the files too
                        if purge is not None:
                            purge()
                routed.append(done.to_json())
                _write_outputs(out, changes_out, journeys_out, latest if profiles_out else None)
                continue
            outcome, event_id = _read_event(input_path, number, line, clock(), config)
            if isinstance(outcome, Rejection):
                summary.rejected[outcome.reason.value] += 1
                routed.append((event_id, outcome.reason.value))
                continue
            out = stitcher.process(outcome, line)
            if out.erased:  # an erased person's identifier: dropped, nothing kept
                summary.rejected["erased"] += 1
                routed.append((outcome.event_id, "erased"))
                continue
            summary.accepted += 1
            routed.append((outcome.event_id, None))
            _write_outputs(out, changes_out, journeys_out, latest if profiles_out else None)
        for entry in routed:
            if isinstance(entry, dict):
                customer = entry["customer_id"]
                entry["customer_id"] = stitcher.graph.resolve(customer) if customer else None
                output.write(json.dumps(entry, ensure_ascii=False) + "\n")
                continue
            event_id, reason = entry
            if reason is not None:
                record = {"event_id": event_id, "customer_id": None, "rejected": reason}
            else:
                assert event_id is not None
                record = {"event_id": event_id, "customer_id": stitcher.customer_of_event(event_id)}
            output.write(json.dumps(record, ensure_ascii=False) + "\n")
        if profiles_out is not None:
            profiles_out.writelines(p.to_json() + "\n" for p in latest.values())
        counts = stitcher.counts
        summary.duplicates = counts.duplicates
        summary.dropped_identifiers = Counter(
            {k.value: v for k, v in counts.dropped_identifiers.items()}
        )
        summary.changes = Counter({k.value: v for k, v in counts.changes.items()})
        summary.profiles = counts.profiles
        if stitcher.graph.matcher is not None:
            summary.matching = Counter(stitcher.graph.matcher.stats)
        if inspect is not None:
            inspect(stitcher)
    summary.seconds = time.perf_counter() - started
    return summary
