"""`make demo`: the main job end to end on the local stack.

Sends synthetic omnichannel events (with a few broken records) to the events topic, runs the
stitching worker until every event is in a journey, and prints what happened. Connectors (HTTP
collector, file drops, webhooks) replace the direct producer once they exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.generator import synthetic_stream
from pipeline.contract import ChangeType, IdentityChange, JourneyEvent
from pipeline.graph import merge_forwarding
from pipeline.serialization import RegistrySerde
from pipeline.settings import Settings
from pipeline.topics import DEAD_LETTERS, EVENTS, IDENTITY_CHANGES, JOURNEYS, create_topics

CUSTOMERS = int(os.environ.get("DEMO_CUSTOMERS", "2000"))


def _read(bootstrap: str, topic: str, since: dict[int, int]) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4().hex}"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, since.get(p, 0)) for p in partitions])
    out: list[Any] = []
    idle = 0
    while idle < 3:
        batch = consumer.consume(1000, 0.5)
        idle = 0 if batch else idle + 1
        out.extend(m for m in batch if not m.error())
    consumer.close()
    return out


def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4().hex}"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in partitions
    }
    consumer.close()
    return ends


def main() -> int:
    settings = Settings()
    prefix, bootstrap = settings.topic_prefix, settings.bootstrap_servers
    create_topics(bootstrap, prefix, settings.partitions)
    serde = RegistrySerde(settings.schema_registry_url)
    start = {
        t.suffix: _ends(bootstrap, t.name(prefix))
        for t in (JOURNEYS, IDENTITY_CHANGES, DEAD_LETTERS)
    }
    events = synthetic_stream(
        CUSTOMERS, CUSTOMERS * 4, seed=int(time.time()), duplicates=CUSTOMERS // 10
    )
    topic = EVENTS.name(prefix)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    for event in events:
        producer.produce(topic, key=event.event_id.encode(), value=serde.encode(topic, event))
        producer.poll(0)
    for broken in (b'{"event_id": "not avro"}', b"\x00\x00\x01\x86\xa0garbage"):
        producer.produce(topic, key=b"demo-broken", value=broken)
    producer.flush(60)
    distinct = {e.event_id for e in events}
    print(
        f"demo: sent {len(events)} events ({len(distinct)} distinct, {len(events) - len(distinct)} "
        f"repeated) of {CUSTOMERS} synthetic customers and 2 broken records to {topic}",
        flush=True,
    )

    log = Path(settings.stack_dir) / "demo-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"], stdout=out, stderr=subprocess.STDOUT
        )
    began = time.monotonic()
    try:
        while True:
            done = sum(_ends(bootstrap, JOURNEYS.name(prefix)).values()) - sum(
                start[JOURNEYS.suffix].values()
            )
            print(f"\rdemo: worker caught up {done}/{len(distinct)} events", end="", flush=True)
            if done >= len(distinct):
                break
            if worker.poll() is not None or time.monotonic() - began > 900:
                print(f"\ndemo: the worker stopped or stalled; see {log}", file=sys.stderr)
                return 1
            time.sleep(1)
    finally:
        worker.terminate()
        worker.wait(60)
    print(f"\ndemo: stitched in {time.monotonic() - began:.0f}s\n")

    journeys = [
        JourneyEvent.from_avro(serde.decode(JOURNEYS.name(prefix), m.value(), JourneyEvent))
        for m in _read(bootstrap, JOURNEYS.name(prefix), start[JOURNEYS.suffix])
    ]
    changes = [
        IdentityChange.from_avro(
            serde.decode(IDENTITY_CHANGES.name(prefix), m.value(), IdentityChange)
        )
        for m in _read(bootstrap, IDENTITY_CHANGES.name(prefix), start[IDENTITY_CHANGES.suffix])
    ]
    letters = _read(bootstrap, DEAD_LETTERS.name(prefix), start[DEAD_LETTERS.suffix])
    kinds = Counter(c.change_type for c in {c.change_id: c for c in changes}.values())
    final = merge_forwarding(changes)

    paths: dict[str, list[JourneyEvent]] = defaultdict(list)
    for journey in journeys:
        paths[final(journey.customer_id)].append(journey)
    transitions = Counter(
        f"{j.previous_channel.value} → {j.event.channel.value}"
        for j in journeys
        if j.channel_switch and j.previous_channel is not None
    )
    truth = len({e.properties["truth_person_id"] for e in events})
    print(f"  events in            {len(events)}")
    print(f"  profiles             {len(paths)}  (synthetic persons: {truth})")
    print(f"  merges               {kinds[ChangeType.merged]}")
    print(f"  conflicts            {kinds[ChangeType.conflict]}")
    print(f"  quarantined values   {kinds[ChangeType.quarantined]}")
    print(f"  dead letters         {len(letters)}")
    print(
        "  top channel switches " + ", ".join(f"{k} ({v})" for k, v in transitions.most_common(5))
    )
    customer, history = max(paths.items(), key=lambda kv: len(kv[1]))
    print(f"\n  example customer {customer}: {len(history)} touches")
    for j in sorted(history, key=lambda j: j.event.occurred_at)[:12]:
        when = f"{j.event.occurred_at:%Y-%m-%d %H:%M}"
        print(f"    {when}  {j.event.channel.value:<12} {j.event.event_type}")
    print(
        f"\nTopics: {prefix}profiles.v1 (compacted), {prefix}journeys.v1, "
        f"{prefix}identity-changes.v1, {prefix}dead-letters.v1. Stop the stack with: make down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
