"""`make bench`: stitching throughput next to a Faust pass-through, replay speed, latency, RSS.

Everything is measured in this one run on this machine, against a real broker (the project's
local stack on free ports, or KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL):

1. N generated events go to fresh topic sets; a plain confluent-kafka loop (bench.raw_loop: the
   practical limit of Python on this machine), the pass-through agent (bench.passthrough_app)
   and `omnistitch worker` each process them. Throughput = events / (last - first output record
   timestamp), so start-up and rebalancing are not counted; printed side by side with the ratio.
   Two more sets go through bench.skeleton_app: the worker's three stages (intake, one-partition
   linking, profiles by customer) with their Kafka work, one table write per stateful stage and
   no stitching, and the same with linking and profiles in one stage: the floors of those
   topologies, printed next to both.
2. `omnistitch replay`'s engine over the same events in-process (memory store): events/s, next
   to the rate of parsing and validating the same lines into ChannelEvent alone (its floor).
3. Latency: with the worker running, events are produced at a fixed rate; event-to-profile
   latency = timestamp of the journey record (written in the same step as the profile update)
   minus the time the event was produced; p50 and p99.
4. Peak RSS of the worker (its faust process and its intake process together) during 1 and 3.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.generator import synthetic_stream
from pipeline.contract import ChannelEvent, JourneyEvent
from pipeline.replay import replay
from pipeline.serialization import RegistrySerde
from pipeline.stack import LocalStack, StackConfig, free_port
from pipeline.topics import EVENTS, JOURNEYS, create_topics

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def broker() -> Iterator[tuple[str, str]]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["SCHEMA_REGISTRY_URL"]
        return
    with tempfile.TemporaryDirectory(prefix="omnistitch-bench-") as home:
        config = StackConfig(
            home=Path(home),
            lib_dir=REPO / "stack" / "lib",
            kafka_port=free_port(),
            controller_port=free_port(),
            registry_port=free_port(),
            kafka_heap="1g",
        )
        stack = LocalStack(config)
        stack.up()
        try:
            yield config.bootstrap_servers, config.registry_url
        finally:
            stack.down()


class RssWatch:
    """Peak resident memory of a process and its children (the worker's intake process),
    sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                family = [self._proc, *self._proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in family))
            except psutil.Error:
                return
            time.sleep(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def produce(bootstrap: str, serde: RegistrySerde, topic: str, events: list[ChannelEvent]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
    )
    for event in events:
        producer.produce(topic, key=event.event_id.encode(), value=serde.encode(topic, event))
        producer.poll(0)
    producer.flush(120)


def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, count: int, timeout_s: float) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < count and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if not msg.error():
                    got.append(msg)
    finally:
        consumer.close()
    return got


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_count(bootstrap: str, topic: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while end_offsets(bootstrap, topic) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {topic} did not reach {count} records in {timeout_s}s")
        time.sleep(0.5)


def span_rate(messages: list[Any]) -> float:
    stamps = sorted(m.timestamp()[1] for m in messages)
    seconds = (stamps[-1] - stamps[0]) / 1000
    return len(messages) / seconds if seconds > 0 else float("inf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--persons", type=int, default=4_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=int, default=200, help="events/s of the latency phase")
    parser.add_argument("--latency-seconds", type=int, default=20)
    args = parser.parse_args()
    events = synthetic_stream(args.persons, args.events, seed=42)
    work = Path(tempfile.mkdtemp(prefix="omnistitch-bench-work-"))
    print(
        f"bench: {len(events)} events of {args.persons} persons, {args.partitions} partitions",
        flush=True,
    )

    with broker() as (bootstrap, registry):
        serde = RegistrySerde(registry)
        results: dict[str, float] = {}
        env = {
            "OMNISTITCH_BOOTSTRAP_SERVERS": bootstrap,
            "OMNISTITCH_SCHEMA_REGISTRY_URL": registry,
            "OMNISTITCH_PARTITIONS": str(args.partitions),
        }

        def fresh_input(name: str) -> str:
            """A new topic set holding the events, and env pointing at it; its prefix."""
            prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}."
            create_topics(bootstrap, prefix, args.partitions)
            produce(bootstrap, serde, EVENTS.name(prefix), events)
            env["OMNISTITCH_TOPIC_PREFIX"] = prefix
            env["OMNISTITCH_APP_ID"] = prefix + "app"
            env["OMNISTITCH_DATA_DIR"] = str(work / name)
            return prefix

        def copy_rate(module: str, name: str) -> float:
            """Events/s of a process that copies the events to an output topic (decoding and
            validating each), on a fresh topic set of its own."""
            output = fresh_input(name) + f"{name}-out"
            admin.create_topics([NewTopic(output, args.partitions, 1)])[output].result(30)
            env["BENCH_PASSTHROUGH_OUTPUT"] = output
            proc = start([sys.executable, "-m", module], env, work / f"{name}.log")
            wait_count(bootstrap, output, len(events), 900)
            stop(proc)
            return span_rate(read_all(bootstrap, output, len(events), 120))

        admin = AdminClient({"bootstrap.servers": bootstrap})
        # -- 1a. pass-through baseline, and the same work as a plain confluent-kafka loop ------
        results["passthrough"] = copy_rate("bench.passthrough_app", "pt")
        print(f"  pass-through: {results['passthrough']:,.0f} events/s", flush=True)
        results["raw"] = copy_rate("bench.raw_loop", "raw")
        print(f"  raw confluent-kafka loop: {results['raw']:,.0f} events/s", flush=True)

        distinct = len({e.event_id for e in events})

        # -- 1b. the worker's topology without stitching (the floor of that design) -------------
        for stages in (3, 2):
            prefix = fresh_input(f"sk{stages}")
            env["BENCH_SKELETON_STAGES"] = str(stages)
            log = work / f"skeleton-{stages}.log"
            proc = start([sys.executable, "-m", "bench.skeleton_app"], env, log)
            wait_count(bootstrap, JOURNEYS.name(prefix), len(events), 1800)
            stop(proc)
            journeys = read_all(bootstrap, JOURNEYS.name(prefix), len(events), 120)
            results[f"floor{stages}"] = span_rate(journeys)
            rate = results[f"floor{stages}"]
            print(f"  {stages} stages, no stitching: {rate:,.0f} events/s", flush=True)

        # -- 1c. stitching worker --------------------------------------------------------------
        prefix = fresh_input("st")
        proc = start([sys.executable, "-m", "pipeline.cli", "worker"], env, work / "worker.log")
        rss = RssWatch(proc.pid)
        wait_count(bootstrap, JOURNEYS.name(prefix), distinct, 1800)
        results["worker"] = span_rate(read_all(bootstrap, JOURNEYS.name(prefix), distinct, 120))
        print(f"  stitching worker: {results['worker']:,.0f} events/s", flush=True)

        # -- 3. latency at a fixed rate, worker still running -----------------------------------
        live = synthetic_stream(args.persons, args.rate * args.latency_seconds, seed=43)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        sent_at: dict[str, float] = {}
        topic = EVENTS.name(prefix)
        t0 = time.time()
        for i, event in enumerate(live):
            due = t0 + i / args.rate
            time.sleep(max(0.0, due - time.time()))
            sent_at[event.event_id] = time.time()
            producer.produce(topic, key=event.event_id.encode(), value=serde.encode(topic, event))
            producer.poll(0)
        producer.flush(60)
        wait_count(bootstrap, JOURNEYS.name(prefix), distinct + len(live), 600)
        latencies = []
        for msg in read_all(bootstrap, JOURNEYS.name(prefix), distinct + len(live), 120):
            journey = serde.decode(JOURNEYS.name(prefix), msg.value(), JourneyEvent)
            produced = sent_at.get(journey["event"]["event_id"])
            if produced is not None:
                latencies.append(msg.timestamp()[1] / 1000 - produced)
        peak_rss = rss.stop()
        stop(proc)

        # -- 2. replay in-process ---------------------------------------------------------------
        jsonl = work / "events.jsonl"
        jsonl.write_text("".join(e.to_json() + "\n" for e in events))
        summary = replay(jsonl, io.StringIO(), progress=False)
        # The floor of any replay: parsing and validating the lines into the contract's model.
        lines = jsonl.read_text().splitlines()
        started = time.perf_counter()
        for line in lines:
            ChannelEvent.model_validate_json(line)
        parse_rate = len(lines) / (time.perf_counter() - started)

    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
    pt = results["passthrough"]
    ratio = results["worker"] / pt
    print()
    raw = results["raw"]
    print(f"{'measure':<40} {'value':>14}  target")
    print(f"{'raw confluent-kafka loop (decode, produce)':<40} {raw:>10,.0f} ev/s")
    print(f"{'pass-through (faust, decode, produce)':<40} {results['passthrough']:>10,.0f} ev/s")
    print(f"{'stitching worker':<40} {results['worker']:>10,.0f} ev/s")
    met_raw = "met" if results["worker"] / raw >= 0.3 else "NOT met"
    print(f"{'ratio worker / raw loop':<40} {results['worker'] / raw:>14.2f}  >= 0.30 {met_raw}")
    print(f"{'ratio pass-through / raw loop':<40} {pt / raw:>14.2f}")
    met_ratio = "met" if ratio >= 0.5 else "NOT met"
    replay_rate = summary.events_per_second
    met_replay = "met" if replay_rate >= 50_000 else "NOT met"
    print(f"{'ratio worker / pass-through':<40} {ratio:>14.2f}  >= 0.50 {met_ratio}")
    for stages in (3, 2):
        floor = results[f"floor{stages}"]
        name = f"{stages} stages, no stitching (floor)"
        print(f"{name:<40} {floor:>10,.0f} ev/s  ratio to pass-through {floor / pt:.2f}")
    print(f"{'ratio worker / 3-stage floor':<40} {results['worker'] / results['floor3']:>14.2f}")
    replay_name = "replay (in-process, memory store)"
    print(f"{replay_name:<40} {replay_rate:>10,.0f} ev/s  >= 50,000 {met_replay}")
    parse_name = "parse + validate only (replay's floor)"
    print(f"{parse_name:<40} {parse_rate:>10,.0f} ev/s")
    print(f"{'event-to-profile latency p50 @ ' + str(args.rate) + ' ev/s':<40} {p50:>11.1f} ms")
    print(f"{'event-to-profile latency p99 @ ' + str(args.rate) + ' ev/s':<40} {p99:>11.1f} ms")
    print(f"{'worker peak RSS':<40} {peak_rss / 2**20:>11.0f} MiB")
    print(f"(logs and data: {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
