"""The worker's stages batch by batch, in-process (no faust, no broker): batches give the
engine's clustering, a batch handled twice changes nothing, profiles are coalesced with the
loser's tombstone after the winner's profile, and a record that fails is left out alone."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pytest

from pipeline.contract.models import (
    ChangeType,
    ChannelEvent,
    CustomerProfile,
    Identifier,
    IdentityChange,
    JourneyEvent,
    Traits,
)
from pipeline.contract.schemas import IDENTITY_OPERATION, OPERATION_RESULT
from pipeline.engine.journey import Journal
from pipeline.engine.operations import Operation
from pipeline.engine.state import MemoryStore
from pipeline.engine.stitcher import StitchConfig, Stitcher
from pipeline.exceptions import StateValueTooLargeError
from pipeline.stream.batches import OPERATION_BATCH, accepted_event
from pipeline.stream.stages import LinkStage, Outcome, ProfileStage, Topics
from tests.factories import (
    NOW,
    Clustering,
    MemorySerde,
    journey_clustering,
    make_event,
    make_shared_tablet,
    make_stream,
    replay_clustering,
)

TOPICS = Topics("events", "ops", "changes", "profiles", "journeys", "results")
PARTITIONS = 4


class Deployment:
    """A linker and the profile stage of every partition over memory stores, the operation
    topic simulated as one queue of batch records per partition."""

    def __init__(self, stitch: StitchConfig | None = None) -> None:
        self.serde = MemorySerde()
        self.graph, self.customers = MemoryStore(), MemoryStore()
        stitch = stitch or StitchConfig()
        self.linker = LinkStage(
            self.graph, self.serde, TOPICS, lambda: NOW, stitch, PARTITIONS, batch_size=50
        )
        self.profiles = ProfileStage(
            self.customers,
            self.serde,
            TOPICS,
            lambda: NOW,
            stitch,
            Journal(600_000),
            PARTITIONS,
            batch_size=50,
        )
        self.queues: dict[int, list[bytes]] = defaultdict(list)
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    def collect(self, outcome: Outcome) -> None:
        for topic, key, value, partition in outcome.outputs:
            if topic == TOPICS.operations:
                assert partition is not None and value is not None
                self.queues[partition].append(value)
            else:
                self.sent.append((topic, key, value))

    def link(self, events: list[ChannelEvent], normalised: bool = False) -> Outcome:
        """``normalised``: intake normalised the identifiers (else the linker does)."""
        normaliser = self.linker.stitch.normaliser
        outcome = self.linker.run(
            [
                accepted_event(
                    self.linker.encode_event(e.to_avro()),
                    "events",
                    0,
                    n,
                    [
                        (node.namespace, node.value)
                        for node in normaliser.nodes(e.identifiers, e.traits)[0]
                    ]
                    if normalised
                    else None,
                )
                for n, e in enumerate(events)
            ]
        )
        self.collect(outcome)
        return outcome

    def drain(self) -> list[Outcome]:
        outcomes = []
        while any(self.queues.values()):
            for partition in sorted(self.queues):
                if self.queues[partition]:
                    value = self.queues[partition].pop(0)
                    batch = self.serde.decode_record(TOPICS.operations, value, OPERATION_BATCH)
                    outcome = self.profiles.run(batch["operations"])
                    self.collect(outcome)
                    outcomes.append(outcome)
        return outcomes

    def journeys(self) -> list[JourneyEvent]:
        return [
            JourneyEvent.from_avro(self.serde.decode(t, v, JourneyEvent))
            for t, _k, v in self.sent
            if t == TOPICS.journeys and v is not None
        ]

    def latest_profiles(self) -> dict[str, CustomerProfile]:
        latest: dict[str, CustomerProfile | None] = {}
        for topic, key, value in self.sent:
            if topic == TOPICS.profiles and key is not None:
                latest[key.decode()] = (
                    None
                    if value is None
                    else CustomerProfile.from_avro(self.serde.decode(topic, value, CustomerProfile))
                )
        return {k: v for k, v in latest.items() if v is not None}

    def clustering(self) -> Clustering:
        from pipeline.contract.models import IdentityChange

        changes = [
            IdentityChange.from_avro(self.serde.decode(t, v, IdentityChange))
            for t, _k, v in self.sent
            if t == TOPICS.changes and v is not None
        ]
        return journey_clustering(self.journeys(), changes)


STREAM = make_stream(persons=40, events=400, seed=5, duplicates=20)


@pytest.mark.parametrize("normalised", [False, True], ids=["linker", "intake"])
def test_batches_give_the_engines_clustering_and_one_journey_per_event(normalised: bool) -> None:
    deployment = Deployment()
    for start in range(0, len(STREAM), 50):
        deployment.link(STREAM[start : start + 50], normalised)
        deployment.drain()
    journeys = Counter(j.event.event_id for j in deployment.journeys())
    assert set(journeys) == {e.event_id for e in STREAM}
    assert max(journeys.values()) == 1
    expected = replay_clustering(STREAM)
    assert deployment.clustering() == expected
    profiles = deployment.latest_profiles()
    assert sorted(p.event_count for p in profiles.values()) == sorted(len(g) for g in expected)


def test_a_batch_handled_twice_changes_nothing() -> None:
    deployment = Deployment()
    batch = STREAM[:120]
    deployment.link(batch)
    records = {p: list(q) for p, q in deployment.queues.items()}
    deployment.drain()
    graph, customers = dict(deployment.graph.data), dict(deployment.customers.data)
    journeys = len(deployment.journeys())

    again = deployment.link(batch)  # redelivered after a crash before its offset commit
    assert again.failures == []
    deployment.queues.clear()
    deployment.queues.update({p: list(q) for p, q in records.items()})
    deployment.drain()
    assert deployment.graph.data == graph
    assert deployment.customers.data == customers
    assert len(deployment.journeys()) == journeys, "no journey event twice"


def test_one_profile_per_customer_and_batch_and_the_loser_tombstone_after_the_winner() -> None:
    deployment = Deployment()
    email = Identifier(namespace="email", value="ann@example.com")
    phone = Identifier(namespace="phone", value="+4915112345678")
    first = [
        make_event(event_id=f"a{n}", identifiers=[email], traits=Traits(first_name="Ann"))
        for n in range(5)
    ]
    deployment.link(first)
    deployment.drain()
    profile_keys = [k for t, k, _ in deployment.sent if t == TOPICS.profiles]
    assert len(profile_keys) == 1, "five events of one customer in a batch: one profile"

    deployment.sent.clear()
    deployment.link([make_event(event_id="b1", identifiers=[phone])])
    deployment.drain()
    deployment.sent.clear()
    # Later, one event carries both: the customers merge.
    deployment.link([make_event(event_id="c1", identifiers=[email, phone])])
    deployment.drain()
    profile_records = [(k, v) for t, k, v in deployment.sent if t == TOPICS.profiles]
    tombstones = [k for k, v in profile_records if v is None]
    assert len(tombstones) == 1
    (loser,) = tombstones
    winner_at = max(i for i, (k, v) in enumerate(profile_records) if v is not None and k != loser)
    assert winner_at < profile_records.index((loser, None))
    (winner,) = deployment.latest_profiles().values()
    assert winner.event_count == 7 and loser.decode() in winner.merged_ids


def test_a_record_that_raises_is_left_out_alone_and_the_rest_is_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = Deployment()
    events = STREAM[:30]
    broken = events[7].event_id
    link = deployment.linker.graph.link

    def fragile(event: ChannelEvent, *args: Any) -> Any:
        if event.event_id == broken:
            raise RuntimeError("boom")
        return link(event, *args)

    monkeypatch.setattr(deployment.linker.graph, "link", fragile)
    outcome = deployment.link(events)
    assert [(index, type(exc).__name__) for index, exc in outcome.failures] == [(7, "RuntimeError")]
    assert deployment.graph.get("e|" + broken) is None
    others = {e.event_id for e in events} - {broken}
    assert all(deployment.graph.get("e|" + event_id) for event_id in others)
    origin, key, value = deployment.linker.dead_letter(7)
    assert (origin.topic, origin.offset, key) == ("events", 7, broken.encode())
    assert value is not None
    restored = ChannelEvent.from_avro(deployment.serde.decode("events", value, ChannelEvent))
    assert restored == events[7]
    deployment.drain()
    assert {j.event.event_id for j in deployment.journeys()} == others


def test_a_value_over_the_state_bound_is_traced_to_its_record() -> None:
    deployment = Deployment()
    many = [Identifier(namespace="loyalty_id", value=f"L-{n:04d}-" + "x" * 200) for n in range(8)]
    events = [
        make_event(event_id="small-1", identifiers=[Identifier(namespace="email", value="a@b.de")]),
        make_event(event_id="big", identifiers=many),
        make_event(event_id="small-2", identifiers=[Identifier(namespace="email", value="c@d.de")]),
    ]
    deployment.linker.state.max_value_bytes = 1500
    outcome = deployment.link(events)
    assert [(i, type(e)) for i, e in outcome.failures] == [(1, StateValueTooLargeError)]
    assert deployment.graph.get("e|small-1") and deployment.graph.get("e|small-2")
    assert deployment.graph.get("e|big") is None


def _operation_item(operation_id: str, kind: str, left: str, right: str, offset: int) -> Any:
    entry = accepted_event((b"", 0), "operations", 0, offset)
    entry["operation"] = Operation(
        operation_id, kind, left, right, "ops-team", "checked by phone", NOW
    ).to_json()
    return entry


def _results(deployment: Deployment) -> list[dict[str, Any]]:
    return [
        deployment.serde.decode_record(t, v, OPERATION_RESULT)
        for t, _k, v in deployment.sent
        if t == TOPICS.results and v is not None
    ]


def test_an_operation_in_the_batch_is_applied_in_order_and_answered_once_per_id() -> None:
    deployment = Deployment()
    email = Identifier(namespace="email", value="ann@example.com")
    phone = Identifier(namespace="phone", value="+4915112345678")
    deployment.link([make_event(event_id="a1", identifiers=[email])])
    deployment.link([make_event(event_id="b1", identifiers=[phone])])
    deployment.drain()
    assert len(deployment.latest_profiles()) == 2

    link = _operation_item("op-1", "link", "email:ann@example.com", "phone:+4915112345678", 0)
    outcome = deployment.linker.run([link])
    deployment.collect(outcome)
    deployment.drain()
    (result,) = _results(deployment)
    assert (result["operation_id"], result["status"], result["kind"]) == ("op-1", "done", "link")
    (profile,) = deployment.latest_profiles().values()
    assert profile.customer_id == result["customer_id"] and profile.event_count == 2
    changes = [
        IdentityChange.from_avro(deployment.serde.decode(t, v, IdentityChange))
        for t, _k, v in deployment.sent
        if t == TOPICS.changes and v is not None
    ]
    merged = [c for c in changes if c.change_type is ChangeType.merged]
    assert [c.change_id for c in merged] == result["change_ids"]
    assert merged[0].evidence[0].rule == "operator"
    assert merged[0].evidence[0].source == "operator:ops-team"

    # The same operation again (a redelivery, or an operator retrying): the first result.
    deployment.sent.clear()
    deployment.collect(deployment.linker.run([link]))
    deployment.drain()
    (again,) = _results(deployment)
    assert (again["status"], again["customer_id"]) == ("repeat", result["customer_id"])
    # What the first application decided is sent again (a crash may have lost it), and
    # changes nothing: the same identity change, a fold already folded.
    resent = [
        IdentityChange.from_avro(deployment.serde.decode(t, v, IdentityChange)).change_id
        for t, _k, v in deployment.sent
        if t == TOPICS.changes and v is not None
    ]
    assert resent == result["change_ids"]
    assert not [k for t, k, _v in deployment.sent if t == TOPICS.profiles], "folded before"


def test_a_reject_between_events_keeps_a_later_shared_identifier_from_merging() -> None:
    deployment = Deployment()
    email = Identifier(namespace="email", value="ann@example.com")
    phone = Identifier(namespace="phone", value="+4915112345678")
    reject = _operation_item("op-r", "reject", "email:ann@example.com", "phone:+4915112345678", 0)
    events = [
        accepted_event(deployment.linker.encode_event(e.to_avro()), "events", 0, n)
        for n, e in enumerate(
            [
                make_event(event_id="a1", identifiers=[email]),
                make_event(event_id="b1", identifiers=[phone]),
            ]
        )
    ]
    together = make_event(event_id="c1", identifiers=[email, phone])
    later = accepted_event(deployment.linker.encode_event(together.to_avro()), "events", 0, 2)
    deployment.collect(deployment.linker.run([*events, reject, later]))
    deployment.drain()
    (result,) = _results(deployment)
    assert result["status"] == "done"
    assert len(deployment.latest_profiles()) == 2, "the event after the reject does not merge"


def test_an_operation_that_raises_is_dead_lettered_as_it_came(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = Deployment()
    deployment.link([make_event(event_id="a1")])

    def broken(*_args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(deployment.linker.decisions, "apply", broken)
    item = _operation_item("op-x", "link", "email:a@b.de", "email:c@d.de", 4)
    outcome = deployment.linker.run([item])
    assert [index for index, _exc in outcome.failures] == [0]
    origin, key, value = deployment.linker.dead_letter(0)
    assert (origin.topic, origin.offset, key) == ("operations", 4, b"op-x")
    assert value is not None
    restored = deployment.serde.decode_record("operations", value, IDENTITY_OPERATION)
    assert restored["operation_id"] == "op-x" and restored["kind"] == "link"
    # Whoever waits for it gets an answer: failed, nothing applied.
    ((topic, key, answer, _partition),) = deployment.linker.failure_result(0, RuntimeError())
    found = deployment.serde.decode_record(topic, answer, OPERATION_RESULT)
    assert (topic, key, found["status"]) == (TOPICS.results, b"op-x", "failed")
    assert "RuntimeError" in found["detail"]


def test_a_split_in_the_worker_gives_the_profiles_and_journeys_of_replay() -> None:
    deployment = Deployment()
    events = _family(deployment)
    assert len(deployment.latest_profiles()) == 1
    split = _operation_item("op-s", "split", "email:ann@example.com", "event:b2", 9)
    deployment.collect(deployment.linker.run([split]))
    deployment.drain()
    (result,) = _results(deployment)
    assert (result["status"], result["detail"]) == ("done", "2 parts")

    replay = Stitcher(MemoryStore(), MemoryStore(), clock=lambda: NOW, keep_events=True)
    for event in events:
        replay.process(event)
    _outcome, out = replay.operate(Operation.from_json(split["operation"]))
    expected = {p.customer_id: p for p in out.profiles}
    found = deployment.latest_profiles()
    assert set(found) == set(expected)

    def comparable(profile: CustomerProfile) -> dict[str, Any]:
        return profile.model_dump(exclude={"updated_at", "version"})

    assert {k: comparable(v) for k, v in found.items()} == {
        k: comparable(v) for k, v in expected.items()
    }
    corrected = [j for j in deployment.journeys() if j.corrects is not None]
    assert sorted((j.event.event_id, j.customer_id, j.corrects) for j in corrected) == sorted(
        (j.event.event_id, j.customer_id, j.corrects) for j in out.journeys
    )
    assert len(corrected) == 2


def test_an_erase_in_the_worker_tombstones_the_profile_and_drops_later_events() -> None:
    from pipeline.engine.erasure import Suppression

    deployment = Deployment(StitchConfig(suppression=Suppression(b"s" * 32)))
    ann = Identifier(namespace="email", value="ann@example.com")
    deployment.link([make_event(event_id="a1", identifiers=[ann], traits=Traits(first_name="Ann"))])
    deployment.drain()
    (customer,) = deployment.latest_profiles()
    erase = _operation_item("op-e", "erase", "email:ann@example.com", "", 3)
    deployment.collect(deployment.linker.run([erase]))
    assert deployment.linker.erasing
    deployment.drain()
    (result,) = _results(deployment)
    assert result["status"] == "done" and result["detail"].startswith("erased:")
    assert deployment.latest_profiles() == {}
    tombstones = [k for t, k, v in deployment.sent if t == TOPICS.profiles and v is None]
    assert tombstones == [customer.encode()]
    assert "ann@example.com" not in json.dumps(list(deployment.graph.data.items()))
    assert "ann@example.com" not in json.dumps(list(deployment.customers.data.items()))
    later = make_event(event_id="a2", identifiers=[ann])
    outcome = deployment.link([make_event(event_id="b1"), later])
    assert deployment.linker.erased == [1] and outcome.failures == []
    assert deployment.linker.origin(1).offset == 1


def test_an_erase_shreds_the_persons_keys_first_and_waits_while_the_vault_is_down() -> None:
    from pipeline.engine.erasure import Suppression
    from pipeline.exceptions import VaultUnavailableError

    suppression = Suppression(b"s" * 32)
    deployment = Deployment(StitchConfig(suppression=suppression))
    ann = Identifier(namespace="email", value="ann@example.com")
    deployment.link([make_event(event_id="a1", identifiers=[ann])])
    deployment.drain()
    calls: list[tuple[list[str], list[str]]] = []

    def down(ids: list[str], tags: list[str]) -> int:
        raise VaultUnavailableError("vault unreachable")

    deployment.linker.shred = deployment.linker.decisions.shred = down
    erase = _operation_item("op-e", "erase", "email:ann@example.com", "", 3)
    with pytest.raises(VaultUnavailableError):  # not a failure of the record: the batch waits
        deployment.linker.run([erase])
    assert "ann@example.com" in json.dumps(list(deployment.graph.data.items()))  # nothing erased

    def up(ids: list[str], tags: list[str]) -> int:
        calls.append((ids, tags))
        return len(ids) + len(tags)

    deployment.linker.shred = deployment.linker.decisions.shred = up
    deployment.collect(deployment.linker.run([erase]))
    assert calls == [(["a1"], [suppression.key("email|ann@example.com")])]
    assert deployment.linker.forgetting  # the caller re-keys what the batch wrote
    (result,) = _results(deployment)
    assert "keys shredded 2" in result["detail"]
    outcomes = deployment.drain()
    assert any(deployment.profiles.forgetting for _ in outcomes)
    deployment.link([make_event(event_id="a2", identifiers=[ann])])  # she comes back: dropped
    assert calls[-1] == (["a2"], [])


def _family(deployment: Deployment) -> list[ChannelEvent]:
    """The shared tablet's events, one batch each: the merge happens in the last."""
    events = make_shared_tablet()
    for event in events:
        deployment.link([event])
        deployment.drain()
    return events


def test_a_split_whose_outputs_were_lost_is_sent_again_when_repeated() -> None:
    deployment = Deployment()
    _family(deployment)
    split = _operation_item("op-s", "split", "email:ann@example.com", "event:b2", 9)
    deployment.linker.run([split])  # committed, then the worker died before sending
    assert len(deployment.latest_profiles()) == 1, "the profile stage never heard of it"
    deployment.collect(deployment.linker.run([split]))  # the batch read again after restart
    deployment.drain()
    (result,) = _results(deployment)
    assert result["status"] == "repeat"
    profiles = deployment.latest_profiles()
    assert sorted(p.event_count for p in profiles.values()) == [2, 2]


def test_a_split_repeated_later_does_not_undo_what_came_after_it() -> None:
    deployment = Deployment()
    _family(deployment)
    split = _operation_item("op-s", "split", "email:ann@example.com", "event:b2", 9)
    deployment.collect(deployment.linker.run([split]))
    deployment.drain()
    ben = Identifier(namespace="email", value="ben@example.com")
    deployment.link([make_event(event_id="b3", identifiers=[ben])])
    deployment.drain()
    before = {k: p.event_count for k, p in deployment.latest_profiles().items()}
    assert sorted(before.values()) == [2, 3]
    deployment.collect(deployment.linker.run([split]))  # an operator retries the same id
    deployment.drain()
    after = {k: p.event_count for k, p in deployment.latest_profiles().items()}
    assert after == before
