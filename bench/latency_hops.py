"""`make bench-latency`: where event-to-journey latency goes, hop by hop, at a fixed input rate.

Starts its own broker and one `omnistitch worker`, produces generated events at `--rate` per
second for `--seconds`, then reads the record timestamps of every hop: the EventBatch record
that carried the event (intake), the OperationBatch record that routed it (linker) and its
journey event (profile stage), each minus the time the event was produced; p50 and p99 per hop.
Also prints the CPU seconds each process of the run used (the broker's included), to show
what saturates first on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from confluent_kafka import Producer

from bench.processes import broker, end_offsets, read_all, start, stop
from connectors.synthetic.generator import synthetic_stream
from pipeline.contract.models import JourneyEvent
from pipeline.contract.schemas import CHANNEL_EVENT
from pipeline.stream.batches import EVENT_BATCH, OPERATION_BATCH
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import ACCEPTED, CUSTOMER_OPS, EVENTS, JOURNEYS, create_topics


def _pct(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return f"p50 {statistics.median(ordered) * 1000:7.0f} ms   p99 {p99 * 1000:7.0f} ms"


def _cpu_seconds() -> dict[str, float]:
    found: dict[str, float] = {}
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        argv = proc.info["cmdline"] or []
        if argv and "java" in argv[0]:
            name = "kafka broker" if "kafka" in " ".join(argv) else "schema registry"
        elif "stage" in argv:
            name = f"worker {argv[argv.index('stage') + 1]} process"
        else:
            continue
        times = proc.info["cpu_times"]
        found[name] = found.get(name, 0.0) + times.user + times.system
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--persons", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="omnistitch-latency-"))
    with broker() as (bootstrap, registry):
        serde = RegistrySerde(registry)
        prefix = f"lat-{uuid.uuid4().hex[:6]}."
        create_topics(bootstrap, prefix, 4)
        env = {
            "OMNISTITCH_BOOTSTRAP_SERVERS": bootstrap,
            "OMNISTITCH_SCHEMA_REGISTRY_URL": registry,
            "OMNISTITCH_PARTITIONS": "4",
            "OMNISTITCH_TOPIC_PREFIX": prefix,
            "OMNISTITCH_APP_ID": prefix + "app",
            "OMNISTITCH_DATA_DIR": str(work / "data"),
        }
        worker = start([sys.executable, "-m", "pipeline.cli", "worker"], env, work / "worker.log")
        time.sleep(20)  # every stage assigned and ready
        topic = EVENTS.name(prefix)
        live = synthetic_stream(args.persons, args.rate * args.seconds, seed=43)
        encoded = [(e.event_id, serde.encode(topic, e)) for e in live]
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        cpu_before = _cpu_seconds()
        sent: dict[str, float] = {}
        began = time.time()
        for i, (event_id, value) in enumerate(encoded):
            time.sleep(max(0.0, began + i / args.rate - time.time()))
            sent[event_id] = time.time()
            producer.produce(topic, key=event_id.encode(), value=value)
            producer.poll(0)
        producer.flush(30)
        achieved = len(encoded) / (time.time() - began)
        deadline = time.monotonic() + 300
        while end_offsets(bootstrap, JOURNEYS.name(prefix)) < len(sent):
            if time.monotonic() > deadline:
                raise SystemExit("bench-latency: journeys incomplete")
            time.sleep(1)
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in _cpu_seconds().items()}
        wall = time.time() - began
        stop(worker)
        from confluent_kafka.admin import AdminClient

        names = sorted(
            t
            for t in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
            if t.startswith(prefix)
        )
        records = {name: end_offsets(bootstrap, name) for name in names}

        def stamps(name: str) -> list[object]:
            return read_all(bootstrap, name, end_offsets(bootstrap, name), 120)

        accepted: dict[str, float] = {}
        for m in stamps(ACCEPTED.name(prefix)):
            for entry in serde.decode_record(ACCEPTED.name(prefix), m.value(), EVENT_BATCH)[
                "events"
            ]:
                event = serde.decode_body(entry["event"], entry["event_schema_id"], CHANNEL_EVENT)
                accepted[event["event_id"]] = m.timestamp()[1] / 1000
        routed: dict[str, float] = {}
        for m in stamps(CUSTOMER_OPS.name(prefix)):
            batch = serde.decode_record(CUSTOMER_OPS.name(prefix), m.value(), OPERATION_BATCH)
            for op in batch["operations"]:
                if op["kind"] == "route":
                    event = serde.decode_body(op["event"], op["event_schema_id"], CHANNEL_EVENT)
                    routed[event["event_id"]] = m.timestamp()[1] / 1000
        journeys: dict[str, float] = {}
        for m in stamps(JOURNEYS.name(prefix)):
            record = serde.decode(JOURNEYS.name(prefix), m.value(), JourneyEvent)
            journeys[record["event"]["event_id"]] = m.timestamp()[1] / 1000
    ids = [e for e in sent if e in accepted and e in routed and e in journeys]
    print(f"{len(ids)} of {len(sent)} events at {achieved:,.0f} ev/s")
    hops = [
        ("produced -> EventBatch (intake)", [accepted[e] - sent[e] for e in ids]),
        ("EventBatch -> OperationBatch (link)", [routed[e] - accepted[e] for e in ids]),
        ("OperationBatch -> journey (profile)", [journeys[e] - routed[e] for e in ids]),
        ("produced -> journey", [journeys[e] - sent[e] for e in ids]),
    ]
    for name, delays in hops:
        print(f"{name:<36} {_pct(delays)}")
    print(f"records written per topic, per input event ({len(sent)} events):")
    for name, count in sorted(records.items(), key=lambda kv: -kv[1]):
        print(f"  {name.removeprefix(prefix):<36} {count:8d}  {count / len(sent):6.2f}")
    print(f"CPU seconds over {wall:.0f} s of wall time (2 cores: {2 * wall:.0f} CPU seconds):")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<24} {seconds:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
