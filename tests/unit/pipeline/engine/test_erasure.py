"""Erase (GDPR Art. 17) in the engine, over both stores: nothing of the person is left in the
graph or profile state, the suppression entries hold no value, and replaying the whole input
afterwards never brings the person back."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract.models import ChangeType, ChannelEvent, Identifier, Traits
from pipeline.engine import composition
from pipeline.engine.erasure import Suppression
from pipeline.engine.identifiers import Node
from pipeline.engine.matching import MatchConfig
from pipeline.engine.operations import Operation
from pipeline.engine.state import MemoryStore, Store
from pipeline.engine.stitcher import StitchConfig, Stitcher
from tests.factories import NOW, make_event

SECRET = Suppression(b"k" * 32)
ANN_PII = ["annegret.voss@example.de", "+4915199887766", "Annegret", "Voss", "ann-cookie-"]
BEN_PII = ["ben.hart@example.de", "Hartmann"]


def _stitcher(store_factory: Callable[[], Store], suppression: Suppression | None = SECRET) -> Any:
    config = StitchConfig(matching=MatchConfig.default(), suppression=suppression)
    graph, profiles = store_factory(), store_factory()
    stitcher = Stitcher(graph, profiles, config, lambda: NOW, keep_events=True)
    return stitcher, graph, profiles


def _events() -> list[ChannelEvent]:
    ann = Identifier(namespace="email", value=ANN_PII[0])
    phone = Identifier(namespace="phone", value=ANN_PII[1])
    ben = Identifier(namespace="email", value=BEN_PII[0])
    names = Traits(first_name="Annegret", last_name="Voss", birth_date="1971-04-05")
    many = 2 * composition.CHUNK + 7  # several history chunks, cookies rolled off
    events = [
        make_event(
            event_id=f"ann-{n}",
            occurred_at=NOW - timedelta(minutes=many - n),
            identifiers=[ann, Identifier(namespace="anonymous_id", value=f"ann-cookie-{n}")],
            traits=names if n % 50 == 0 else Traits(),
        )
        for n in range(many)
    ]
    events.append(make_event(event_id="ann-phone", identifiers=[phone, ann]))
    events.append(
        make_event(
            event_id="ben-1",
            identifiers=[ben],
            traits=Traits(first_name="Benedikt", last_name="Hartmann"),
        )
    )
    return events


def _op(kind: str, left: str, n: int = 1) -> Operation:
    return Operation.from_json(
        {
            "operation_id": f"op-{kind}-{n}",
            "kind": kind,
            "left": left,
            "right": "",
            "operator": "dpo",
            "reason": "Art. 17 request 2026-118",
            "requested_at": "2026-11-27T10:00:00Z",
        }
    )


def _dump(store: Store) -> str:
    """Every key and value of a store as text (MemoryStore or RocksDB)."""
    if isinstance(store, MemoryStore):
        items = list(store.data.items())
    else:
        items = [(k.decode(), v.decode()) for k, v in store.db.items()]  # type: ignore[attr-defined]
    return json.dumps(items, ensure_ascii=False, default=str)


def test_erase_leaves_nothing_of_the_person_and_a_replay_never_brings_them_back(
    store_factory: Callable[[], Store],
) -> None:
    stitcher, graph, profiles = _stitcher(store_factory)
    events = _events()
    for event in events:
        stitcher.process(event)
    ann = stitcher.graph.customer_of_node(Node("email", ANN_PII[0].lower()))
    assert ann is not None
    assert all(pii in _dump(graph) + _dump(profiles) for pii in ANN_PII)

    outcome, out = stitcher.operate(_op("erase", f"email:{ANN_PII[0]}"))
    assert outcome.status == "done", outcome.detail
    assert "identifiers" in outcome.detail and "events" in outcome.detail
    (change,) = out.changes
    assert change.change_type is ChangeType.erased and change.customer_id == ann
    assert change.evidence[0].identifiers == [], "the erase itself names no identifier"
    assert ann in out.tombstones
    for store in (graph, profiles):
        left = [pii for pii in ANN_PII if pii.lower() in _dump(store).lower()]
        assert not left, f"still in the state: {left}"
    assert all(pii in _dump(graph) + _dump(profiles) for pii in BEN_PII), "Ben untouched"

    # The whole input again (a late delivery, a replay from the topic's start).
    for event in events:
        again = stitcher.process(event)
        assert again.erased == event.event_id.startswith("ann"), event.event_id
    for store in (graph, profiles):
        assert not [pii for pii in ANN_PII if pii.lower() in _dump(store).lower()]
    assert stitcher.counts.erased == len(events) - 1


def test_erase_is_refused_without_a_key_and_idempotent_with_one() -> None:
    stitcher, _graph, _profiles = _stitcher(lambda: MemoryStore(), suppression=None)
    stitcher.process(make_event(identifiers=[Identifier(namespace="email", value="a@b.de")]))
    outcome, _ = stitcher.operate(_op("erase", "email:a@b.de"))
    assert outcome.status == "refused" and "OMNISTITCH_ERASURE_KEY" in outcome.detail

    stitcher, _graph, _profiles = _stitcher(lambda: MemoryStore())
    first = stitcher.process(
        make_event(identifiers=[Identifier(namespace="email", value="a@b.de")])
    )
    outcome, _ = stitcher.operate(_op("erase", first.customer_id, 2))
    assert outcome.status == "done"
    again, out = stitcher.operate(_op("erase", first.customer_id, 2))
    assert again.status == "repeat" and out.changes == []
    unknown, _ = stitcher.operate(_op("erase", "email:nobody@b.de", 3))
    assert unknown.status == "unknown"


def test_the_suppression_key_depends_on_the_secret_and_hides_the_value() -> None:
    other = Suppression(b"o" * 32)
    key = SECRET.key("email|a@b.de")
    assert key.startswith("x|") and "a@b.de" not in key
    assert key != other.key("email|a@b.de") and key == SECRET.key("email|a@b.de")


def test_replay_erases_out_of_the_rocksdb_files_and_drops_what_comes_later(
    tmp_path: Path,
) -> None:
    from pipeline.replay.runner import replay

    events = _events()
    erase = {"operation": {**_op("erase", f"email:{ANN_PII[0]}").to_json()}}
    erase["operation"]["requested_at"] = "2026-11-27T10:00:00Z"
    lines = [e.to_json() for e in events]
    lines += [json.dumps(erase)] + [e.to_json() for e in events[:5]]  # late repeats
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    config = StitchConfig(suppression=SECRET)
    summary = replay(
        source, out, config, store="rocksdb", state_dir=tmp_path / "state", progress=False
    )
    assert summary.operations["done"] == 1 and summary.rejected["erased"] == 5
    leftovers = [
        (path.name, pii)
        for path in (tmp_path / "state").rglob("*")
        if path.is_file()
        for pii in ANN_PII
        if pii.encode() in path.read_bytes()
    ]
    assert not leftovers, f"personal data left in the state files: {leftovers[:5]}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000))
def test_erase_then_a_replay_in_any_order_never_brings_the_person_back(seed: int) -> None:
    """Random histories of three persons who share a store tablet now and then: whoever is
    erased (with whatever the tablet merged into them), the whole input replayed in a shuffled
    order re-creates none of their identifiers, and every shred names their events."""
    rng = random.Random(seed)
    persons = [[("email", f"p{n}@example.com"), ("phone", f"+49151000000{n}")] for n in range(3)]
    tablet = ("anonymous_id", "tablet-shared")
    events = []
    for n in range(rng.randint(3, 14)):
        ids = rng.sample(rng.choice(persons), rng.randint(1, 2))
        if rng.random() < 0.2:
            ids.append(tablet)
        events.append(
            make_event(
                event_id=f"e{n}",
                occurred_at=NOW - timedelta(minutes=100 - n),
                identifiers=[Identifier(namespace=ns, value=v) for ns, v in ids],
            )
        )
    shredded: list[tuple[list[str], list[str]]] = []
    config = StitchConfig(suppression=SECRET)
    stitcher = Stitcher(MemoryStore(), MemoryStore(), config, lambda: NOW, keep_events=True)
    stitcher.operations.shred = lambda ids, tags: shredded.append((ids, tags))
    for event in events:
        stitcher.process(event)
    target = rng.choice([ns_v for p in persons for ns_v in p])
    gone = stitcher.graph.customer_of_node(Node(*target))
    outcome, _ = stitcher.operate(_op("erase", f"{target[0]}:{target[1]}"))
    if gone is None:
        assert outcome.status == "unknown"
        return
    assert outcome.status == "done"
    ((ids, tags),) = shredded  # one shred, before the state changed
    everyone = [*(ns_v for p in persons for ns_v in p), tablet]
    erased = {ns_v for ns_v in everyone if SECRET.key(Node(*ns_v).key) in tags}
    assert target in erased and set(ids) <= {e.event_id for e in events} and ids
    replayed = events[:]
    rng.shuffle(replayed)
    for event in replayed:
        stitcher.process(event)
    for ns_v in erased:
        assert stitcher.graph.customer_of_node(Node(*ns_v)) is None, ns_v
