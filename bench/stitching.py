"""`make bench`: the stitching worker next to a plain confluent-kafka loop and a faust
pass-through, the linker alone, two workers, replay, latency and memory, all in one run.

Everything is measured in this one run on this machine, against a real broker (the project's
local stack on free ports, or KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL):

1. N generated events go to fresh topic sets; a plain confluent-kafka loop (bench.raw_loop: the
   practical limit of Python on this machine), the pass-through agent (bench.passthrough_app,
   the worker's faust settings) and `omnistitch worker` each process them. Throughput = events
   / (last - first output record timestamp), so start-up and rebalancing are not counted.
2. The linker alone: intake (``OMNISTITCH_WORKER_STAGES=intake``) fills the accepted topic
   first; then a worker running only the link stage turns its EventBatches into
   OperationBatches: routed events / span of the operation records. Twice: keeping every
   event for splits (the default) and with ``OMNISTITCH_KEEP_EVENTS=false``.
3. Two workers (each intake + link + profile; one of them gets the one-partition linker) on a
   fresh topic set, next to one.
4. Latency: with the worker running, events are produced at a fixed rate (default 1,000/s);
   event-to-profile latency = timestamp of the journey record (sent with the profile update of
   the same batch) minus the time the event was produced; p50 and p99.
5. `omnistitch replay`'s engine over the same events in-process (memory store): events/s, next
   to the rate of parsing and validating the same lines into ChannelEvent alone, and of that
   parse (replay's msgspec fast path) plus normalising every event's identifiers with fresh
   caches (e-mail-validator, phonenumbers): what any replay on these libraries costs before it
   links anything.
3b. One worker with crypto-shredding (docs/erasure.md): the same events sealed as connectors
   seal them, a vault process, an erasure key; its rate next to the plain worker's.
6. Peak RSS of every process: the worker's faust process and its intake process, apart.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.lookups import lookup_latency
from bench.processes import (
    RssWatch,
    broker,
    end_offsets,
    produce,
    read_all,
    span_rate,
    start,
    stop,
    wait_count,
)
from bench.sealed import sealed_worker_rate
from connectors.synthetic.generator import synthetic_stream
from pipeline import garbage
from pipeline.contract.event_json import fast_event
from pipeline.contract.models import ChannelEvent, JourneyEvent
from pipeline.engine.identifiers import Normaliser
from pipeline.replay.runner import replay
from pipeline.stream.batches import EVENT_BATCH, OPERATION_BATCH
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import ACCEPTED, CUSTOMER_OPS, EVENTS, JOURNEYS, create_topics


def routed_operations(bootstrap: str, serde: RegistrySerde, prefix: str, count: int) -> float:
    """Operations/s of the linker: route operations over the span of the OperationBatch
    records holding ``count`` of them."""
    topic = CUSTOMER_OPS.name(prefix)
    deadline = time.monotonic() + 900
    while True:
        records = read_all(bootstrap, topic, end_offsets(bootstrap, topic), 120)
        routes = [
            sum(op["kind"] == "route" for op in batch["operations"])
            for batch in (serde.decode_record(topic, m.value(), OPERATION_BATCH) for m in records)
        ]
        if sum(routes) >= count:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: the linker routed {sum(routes)} of {count} events")
        time.sleep(1.0)
    stamps = sorted(m.timestamp()[1] for m in records)
    # The first record's own events were linked before its timestamp: count from the second.
    first = min(range(len(records)), key=lambda i: records[i].timestamp()[1])
    seconds = (stamps[-1] - stamps[0]) / 1000
    return (sum(routes) - routes[first]) / seconds if seconds > 0 else float("inf")


def accepted_count(bootstrap: str, serde: RegistrySerde, prefix: str) -> int:
    topic = ACCEPTED.name(prefix)
    records = read_all(bootstrap, topic, end_offsets(bootstrap, topic), 120)
    return sum(len(serde.decode_record(topic, m.value(), EVENT_BATCH)["events"]) for m in records)


def parse_and_normalise_rate(lines: list[str]) -> float:
    """Events/s of replay's parse plus identifier normalisation alone, caches cold: a new
    Normaliser, so each distinct e-mail and phone goes through its library once, as in replay."""
    normaliser = Normaliser()
    started = time.perf_counter()
    for line in lines:
        event = fast_event(line) or ChannelEvent.model_validate_json(line)
        normaliser.nodes(event.identifiers, event.traits)
    return len(lines) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--persons", type=int, default=4_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=int, default=1000, help="events/s of the latency phase")
    parser.add_argument("--latency-seconds", type=int, default=20)
    args = parser.parse_args()
    events = synthetic_stream(args.persons, args.events, seed=42)
    work = Path(tempfile.mkdtemp(prefix="omnistitch-bench-work-"))
    print(
        f"bench: {len(events)} events of {args.persons} persons, {args.partitions} partitions",
        flush=True,
    )
    rss: dict[str, int] = {}

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
            env.pop("OMNISTITCH_WORKER_STAGES", None)
            return prefix

        def copy_rate(module: str, name: str) -> float:
            """Events/s of a process that copies the events to an output topic (decoding and
            validating each), on a fresh topic set of its own."""
            output = fresh_input(name) + f"{name}-out"
            admin.create_topics([NewTopic(output, args.partitions, 1)])[output].result(30)
            env["BENCH_PASSTHROUGH_OUTPUT"] = output
            proc = start([sys.executable, "-m", module], env, work / f"{name}.log")
            watch = RssWatch(proc.pid, name)
            wait_count(bootstrap, output, len(events), 900)
            rss.update(watch.stop())
            stop(proc)
            return span_rate(read_all(bootstrap, output, len(events), 120))

        admin = AdminClient({"bootstrap.servers": bootstrap})
        # -- 1. raw loop, pass-through, worker -------------------------------------------------
        results["raw"] = copy_rate("bench.raw_loop", "raw-loop")
        print(f"  raw confluent-kafka loop: {results['raw']:,.0f} events/s", flush=True)
        results["passthrough"] = copy_rate("bench.passthrough_app", "pass-through")
        print(f"  pass-through: {results['passthrough']:,.0f} events/s", flush=True)

        distinct = len({e.event_id for e in events})
        prefix = fresh_input("st")
        proc = start([sys.executable, "-m", "pipeline.cli", "worker"], env, work / "worker.log")
        watch = RssWatch(proc.pid, "worker")
        wait_count(bootstrap, JOURNEYS.name(prefix), distinct, 1800)
        results["worker"] = span_rate(read_all(bootstrap, JOURNEYS.name(prefix), distinct, 120))
        print(f"  stitching worker: {results['worker']:,.0f} events/s", flush=True)

        # -- 4. latency at a fixed rate, worker still running -----------------------------------
        live = synthetic_stream(args.persons, args.rate * args.latency_seconds, seed=43)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        sent_at: dict[str, float] = {}
        topic = EVENTS.name(prefix)
        encoded = [(e.event_id, serde.encode(topic, e)) for e in live]
        t0 = time.time()
        for i, (event_id, value) in enumerate(encoded):
            due = t0 + i / args.rate
            time.sleep(max(0.0, due - time.time()))
            sent_at[event_id] = time.time()
            producer.produce(topic, key=event_id.encode(), value=value)
            producer.poll(0)
        producer.flush(60)
        achieved = len(encoded) / (time.time() - t0)
        wait_count(bootstrap, JOURNEYS.name(prefix), distinct + len(live), 600)
        latencies = []
        for msg in read_all(bootstrap, JOURNEYS.name(prefix), distinct + len(live), 120):
            journey = serde.decode(JOURNEYS.name(prefix), msg.value(), JourneyEvent)
            produced = sent_at.get(journey["event"]["event_id"])
            if produced is not None:
                latencies.append(msg.timestamp()[1] / 1000 - produced)
        rss.update(watch.stop())
        stop(proc)
        print(f"  latency phase: {len(latencies)} events at {achieved:,.0f} ev/s", flush=True)

        # -- 4b. the profile API over what this worker wrote ------------------------------------
        api = lookup_latency(dict(env), events, work)
        print(
            f"  profile API: lookups p50 {api['p50_ms']:.1f} ms, p99 {api['p99_ms']:.1f} ms "
            f"({api['rate']:,.0f}/s); HTTP floor p99 {api['floor_p99_ms']:.1f} ms",
            flush=True,
        )

        # -- 2. the linker alone, keeping events for splits (the default) and not -----------
        for name, keep in (("linker", "true"), ("linker_lean", "false")):
            prefix = fresh_input(name)
            env["OMNISTITCH_WORKER_STAGES"] = "intake"
            proc = start(
                [sys.executable, "-m", "pipeline.cli", "worker"], env, work / f"intake-{name}.log"
            )
            deadline = time.monotonic() + 900
            while accepted_count(bootstrap, serde, prefix) < len(events):
                if time.monotonic() > deadline:
                    raise SystemExit("bench: intake did not accept every event")
                time.sleep(1.0)
            stop(proc)
            env["OMNISTITCH_WORKER_STAGES"] = "link"
            env["OMNISTITCH_KEEP_EVENTS"] = keep
            proc = start(
                [sys.executable, "-m", "pipeline.cli", "worker"], env, work / f"{name}.log"
            )
            watch = RssWatch(proc.pid, "linker alone" + ("" if keep == "true" else ", lean"))
            results[name] = routed_operations(bootstrap, serde, prefix, len(events))
            rss.update(watch.stop())
            stop(proc)
            env.pop("OMNISTITCH_KEEP_EVENTS")
            print(f"  {name}: {results[name]:,.0f} events/s", flush=True)

        # -- 3. two workers ----------------------------------------------------------------------
        prefix = fresh_input("two")
        pair = []
        for n in (1, 2):
            env["OMNISTITCH_DATA_DIR"] = str(work / f"two-{n}")
            pair.append(
                start([sys.executable, "-m", "pipeline.cli", "worker"], env, work / f"two-{n}.log")
            )
        watches = [RssWatch(p.pid, f"worker {n} of 2") for n, p in enumerate(pair, start=1)]
        wait_count(bootstrap, JOURNEYS.name(prefix), distinct, 1800)
        results["two"] = span_rate(read_all(bootstrap, JOURNEYS.name(prefix), distinct, 120))
        for w in watches:
            rss.update(w.stop())
        for p in pair:
            stop(p)
        print(f"  two workers: {results['two']:,.0f} events/s", flush=True)

        # -- 3b. one worker with crypto-shredding: sealed input, sealed changelogs -------------
        results["sealed"] = sealed_worker_rate(env, bootstrap, serde, events, work, fresh_input)
        print(f"  stitching worker, sealed: {results['sealed']:,.0f} events/s", flush=True)

        # -- 5. replay in-process ---------------------------------------------------------------
        jsonl = work / "events.jsonl"
        jsonl.write_text("".join(e.to_json() + "\n" for e in events))
        garbage.tune()  # as `omnistitch replay` does
        summary = replay(jsonl, io.StringIO(), progress=False)
        # The floor of any replay: parsing and validating the lines into the contract's model.
        lines = jsonl.read_text().splitlines()
        started = time.perf_counter()
        for line in lines:
            ChannelEvent.model_validate_json(line)
        parse_rate = len(lines) / (time.perf_counter() - started)
        normalise_rate = parse_and_normalise_rate(lines)

    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
    raw, pt, worker = results["raw"], results["passthrough"], results["worker"]
    replay_rate = summary.events_per_second

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    rows = [
        ("raw confluent-kafka loop (decode, produce)", f"{raw:,.0f} ev/s", ""),
        ("faust pass-through (decode, produce)", f"{pt:,.0f} ev/s", ""),
        ("stitching worker (1)", f"{worker:,.0f} ev/s", ""),
        (
            "ratio worker / raw loop",
            f"{worker / raw:.2f}",
            f">= 0.30 {verdict(worker >= 0.3 * raw)}",
        ),
        ("ratio worker / pass-through", f"{worker / pt:.2f}", ""),
        ("ratio pass-through / raw loop", f"{pt / raw:.2f}", ""),
        (
            "linker alone (batches in, operations out)",
            f"{results['linker']:,.0f} ev/s",
            f">= 20,000 {verdict(results['linker'] >= 20_000)}",
        ),
        (
            "linker alone, events not kept (no splits)",
            f"{results['linker_lean']:,.0f} ev/s",
            f"kept costs {1 - results['linker'] / results['linker_lean']:.0%}",
        ),
        ("two workers", f"{results['two']:,.0f} ev/s", f"{results['two'] / worker:.2f}x one"),
        (
            "stitching worker (1), sealed (vault, docs/erasure.md)",
            f"{results['sealed']:,.0f} ev/s",
            f"{results['sealed'] / worker:.2f}x plain",
        ),
        (
            "replay (in-process, memory store)",
            f"{replay_rate:,.0f} ev/s",
            f">= 50,000 {verdict(replay_rate >= 50_000)}",
        ),
        (
            f"API lookup by e-mail p50, {api['concurrency']} concurrent",
            f"{api['p50_ms']:.1f} ms",
            f"HTTP floor {api['floor_p50_ms']:.1f} ms",
        ),
        (
            f"API lookup by e-mail p99, {api['concurrency']} concurrent",
            f"{api['p99_ms']:.1f} ms",
            f"<= 50 ms {verdict(api['p99_ms'] <= 50)}; HTTP floor {api['floor_p99_ms']:.1f} ms",
        ),
        (
            "API lookups/s (and the HTTP floor's)",
            f"{api['rate']:,.0f}/s",
            f"floor {api['floor_rate']:,.0f}/s; {api['not_found']} of 10,000 not found; "
            f"view built in {api['catch_up_s']:.0f} s",
        ),
        ("parse + validate only (pydantic)", f"{parse_rate:,.0f} ev/s", ""),
        ("parse (fast path) + normalise, fresh caches", f"{normalise_rate:,.0f} ev/s", ""),
        (f"event-to-profile p50 @ {achieved:,.0f} ev/s", f"{p50:.0f} ms", ""),
        (
            f"event-to-profile p99 @ {achieved:,.0f} ev/s",
            f"{p99:.0f} ms",
            f"<= 200 ms {verdict(p99 <= 200)}",
        ),
    ]
    rows += [(f"peak RSS {name}", f"{peak / 2**20:.0f} MiB", "") for name, peak in rss.items()]
    print()
    print(f"| {'measure':<44} | {'value':>12} | target |")
    print(f"|{'-' * 46}|{'-' * 14}|--------|")
    for name, value, target in rows:
        print(f"| {name:<44} | {value:>12} | {target} |")
    print(f"(logs and data: {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
