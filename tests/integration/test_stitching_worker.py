"""The stitching worker on the real broker: the same input gives the same clustering with 1 and
4 partitions, with 1 and 2 workers, and equals the in-process replay; a worker killed with
SIGKILL mid-stream loses nothing and duplicates no journey event."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.contract.models import (
    ChangeType,
    Identifier,
    Traits,
)
from pipeline.engine.graph import merge_forwarding
from pipeline.stream.topics import (
    ACCEPTED,
    CUSTOMER_OPS,
    JOURNEYS,
)
from tests.factories import (
    make_event,
    make_stream,
    replay_clustering,
)
from tests.integration.deployments import Run, wait_ready

pytestmark = pytest.mark.integration


EVENTS_IN = make_stream(persons=40, events=300, seed=11, duplicates=15)
DISTINCT = {e.event_id for e in EVENTS_IN}


@pytest.mark.parametrize(
    ("partitions", "workers"), [(1, 1), (4, 1), (4, 2)], ids=["1p-1w", "4p-1w", "4p-2w"]
)
def test_same_clustering_whatever_the_partitions_and_workers_and_equal_to_replay(
    run_factory: Callable[[int], Run], partitions: int, workers: int
) -> None:
    run = run_factory(partitions)
    started = [run.worker(f"w{n}") for n in range(workers)]
    for worker in started:
        worker.start()
    # Every worker joined and the group settled (each worker ready after the last rebalance),
    # then the events come. A rebalance in the middle of processing once stalled consumption
    # of customer-ops in CI; that is tracked in the stitching issue, not hidden here.
    wait_ready(started)
    run.produce(EVENTS_IN)
    journeys = run.wait_for_journeys(DISTINCT)

    per_event = Counter(j.event.event_id for j in journeys)
    assert set(per_event) == DISTINCT
    assert max(per_event.values()) == 1, "every accepted event exactly once in the journeys"

    expected = replay_clustering(EVENTS_IN)
    assert run.clustering(journeys) == expected

    profiles = run.profiles()
    assert len(profiles) == len(expected), "one live profile per customer in the compacted topic"
    assert sorted(p.event_count for p in profiles.values()) == sorted(len(g) for g in expected)
    for worker in run.workers:
        assert worker.stop() == 0


BIG_STREAM = make_stream(persons=300, events=2500, seed=23, duplicates=50)
BIG_DISTINCT = {e.event_id for e in BIG_STREAM}


def test_sigkill_mid_stream_loses_nothing_and_duplicates_no_journey(
    run_factory: Callable[[int], Run],
) -> None:
    run = run_factory(4)
    run.produce(BIG_STREAM)
    worker = run.worker("victim")
    watcher = Consumer(
        {
            "bootstrap.servers": run.kafka.bootstrap_servers,
            "group.id": f"watch-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
        }
    )
    watcher.subscribe([JOURNEYS.name(run.prefix)])
    worker.start()
    seen, deadline = 0, time.monotonic() + 120
    while seen < 200 and time.monotonic() < deadline:
        msg = watcher.poll(0.05)
        seen += msg is not None and not msg.error()
    worker.kill()  # SIGKILL: no graceful shutdown, no final commit
    watcher.close()
    before_restart = {j.event.event_id for j in run.journeys()}
    assert 0 < len(before_restart) < len(BIG_DISTINCT), "the kill must land mid-stream"
    worker.start()
    journeys = run.wait_for_journeys(BIG_DISTINCT)
    per_event = Counter(j.event.event_id for j in journeys)
    assert set(per_event) == BIG_DISTINCT, "nothing lost"
    duplicated = [e for e, c in per_event.items() if c > 1]
    detail = [
        (j.event.event_id, j.customer_id, j.sequence_number)
        for j in journeys
        if j.event.event_id in duplicated[:3]
    ]
    assert not duplicated, f"{len(duplicated)} duplicated journeys: {detail}"
    assert run.clustering(journeys) == replay_clustering(BIG_STREAM)
    assert worker.stop() == 0


def test_the_worker_links_a_probabilistic_match_and_reports_a_possible_one(
    run_factory: Callable[[int], Run],
) -> None:
    run = run_factory(4)
    run.ready_worker("w0")
    person = {"last_name": "Müller", "birth_date": "1980-02-03", "postal_code": "10115"}
    events = [
        make_event(
            event_id="pm-crm",
            identifiers=[Identifier(namespace="customer_id", value="CRM-7")],
            traits=Traits(first_name="Jürgen", **person),
        ),
        make_event(
            event_id="pm-till",
            identifiers=[Identifier(namespace="loyalty_id", value="LC-7")],
            traits=Traits(first_name="Juergen", **{**person, "last_name": "MUELLER"}),
        ),
        make_event(
            event_id="pm-web",
            identifiers=[Identifier(namespace="customer_id", value="CRM-8")],
            traits=Traits(first_name="Katharina", last_name="Schmidt", city="Köln"),
        ),
        make_event(
            event_id="pm-chat",
            identifiers=[Identifier(namespace="anonymous_id", value="a-8")],
            traits=Traits(first_name="Kathi", last_name="Schmidt", city="Köln"),
        ),
    ]
    run.produce(events)
    journeys = run.wait_for_journeys({e.event_id for e in events})
    changes = run.changes()
    final = merge_forwarding(changes)
    customer = {j.event.event_id: final(j.customer_id) for j in journeys}

    assert customer["pm-crm"] == customer["pm-till"]
    (link,) = [c for c in changes if c.change_type is ChangeType.merged]
    assert link.evidence[0].rule == "probabilistic"
    assert link.evidence[0].score is not None and link.evidence[0].score >= 0.95
    assert link.evidence[0].details["birth_date"].startswith("exact")

    assert customer["pm-web"] != customer["pm-chat"]
    (possible,) = [c for c in changes if c.change_type is ChangeType.possible_match]
    assert {possible.customer_id, *possible.old_customer_ids} == {
        customer["pm-web"],
        customer["pm-chat"],
    }
    assert 0.6 <= (possible.evidence[0].score or 0) < 0.95
    profiles = run.profiles()
    assert profiles[customer["pm-web"]].possible_matches == [customer["pm-chat"]]
    assert profiles[customer["pm-chat"]].possible_matches == [customer["pm-web"]]


def _tables(data_dir: Path) -> dict[str, dict[bytes, bytes]]:
    """Every RocksDB table partition under a worker's data directory: file name → its keys
    and values as stored (faust's own bookkeeping keys left out)."""
    from rocksdict import AccessType, Options, Rdict

    found: dict[str, dict[bytes, bytes]] = {}
    for path in sorted(data_dir.rglob("*.db")):
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            found[path.name] = {
                key: value for key, value in db.items() if not key.startswith(b"__faust")
            }
        finally:
            db.close()
    return found


def _wait_committed(run: Run, groups: dict[str, str], timeout_s: float = 120) -> None:
    """Until each stage's consumer group (topic → group) has committed every partition of its
    topic to its end: every batch record handled, nothing in flight."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        behind = []
        for topic, group in groups.items():
            consumer = Consumer(
                {"bootstrap.servers": run.kafka.bootstrap_servers, "group.id": group}
            )
            try:
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                for partition in partitions:
                    tp = TopicPartition(topic, partition)
                    low, high = consumer.get_watermark_offsets(tp, timeout=10)
                    (committed,) = consumer.committed([tp], timeout=10)
                    if high > low and committed.offset < high:
                        behind.append((topic, partition, committed.offset, high))
            finally:
                consumer.close()
        if not behind:
            return
        time.sleep(1)
    pytest.fail(f"offsets not committed to the end: {behind}")


@pytest.mark.parametrize("partitions", [1, 4], ids=["1p", "4p"])
def test_state_restored_from_the_changelogs_equals_the_state_before_the_restart(
    run_factory: Callable[[int], Run], tmp_path: Path, partitions: int
) -> None:
    run = run_factory(partitions)
    run.produce(EVENTS_IN)
    first = run.worker("first")
    first.start()
    run.wait_for_journeys(DISTINCT)
    app_id = run.env["OMNISTITCH_APP_ID"]
    _wait_committed(
        run,
        {
            ACCEPTED.name(run.prefix): app_id,
            CUSTOMER_OPS.name(run.prefix): f"{app_id}.profile",
        },
    )
    assert first.stop() == 0
    before = _tables(tmp_path / "data-first")
    # A worker with an empty data directory rebuilds every table from its changelog topic.
    second = run.worker("second")
    second.start()
    wait_ready([second])
    assert second.stop() == 0
    after = _tables(tmp_path / "data-second")

    graph = [name for name in before if name.startswith("graph-")]
    customers = [name for name in before if name.startswith("customers-")]
    assert len(graph) == 1 and len(customers) == partitions, sorted(before)
    assert sum(len(before[name]) for name in graph) > len(DISTINCT), "graph keys were written"
    assert all(before[name] for name in customers), "every customers partition holds state"
    assert after == before


def test_a_worker_joining_mid_stream_loses_nothing_and_duplicates_no_journey(
    run_factory: Callable[[int], Run],
) -> None:
    """Two workers started together: the first takes every partition and starts on the
    backlog, then the second joins and partitions move while batches are in flight. faust
    committed offsets past batch records nobody handled in that moment (with the gap repair
    disabled this test lost 123 and 254 of 12,000 journeys); the stages now handle such gaps
    first."""
    stream = make_stream(persons=2000, events=12000, seed=31)
    run = run_factory(4)
    # The default session timeout, as in a deployment (and in the run that lost journeys).
    run.env.pop("OMNISTITCH_SESSION_TIMEOUT_S")
    run.produce(stream)
    workers = [run.worker("first"), run.worker("second")]
    for worker in workers:
        worker.start()
    expected = {e.event_id for e in stream}
    journeys = run.wait_for_journeys(expected)
    per_event = Counter(j.event.event_id for j in journeys)
    assert set(per_event) == expected, "nothing lost"
    assert max(per_event.values()) == 1, "no journey twice"
    assert run.clustering(journeys) == replay_clustering(stream)
    for worker in workers:
        assert worker.stop() == 0
