"""`make bench-commit-lag`: the committed offsets of the profile stage's input (customer-ops)
next to its end offsets, every 5 s, while a worker works through a backlog — restarted with
SIGTERM every ROUND_S seconds. Shows whether commits stand still while records are processed
(docs/architecture.md, "Delivery guarantees"). Own broker on free ports."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.synthetic.generator import synthetic_stream
from pipeline.stack.local import LocalStack, StackConfig, free_port
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import CUSTOMER_OPS, EVENTS, create_topics

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=16_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--round-s", type=int, default=25)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="omnistitch-commit-lag-"))
    config = StackConfig(
        home=home,
        lib_dir=REPO / "stack" / "lib",
        kafka_port=free_port(),
        controller_port=free_port(),
        registry_port=free_port(),
        vault_port=free_port(),
    )
    stack = LocalStack(config)
    stack.up()
    try:
        prefix, partitions = "lag.", 4
        create_topics(config.bootstrap_servers, prefix, partitions)
        serde = RegistrySerde(config.registry_url)
        producer = Producer({"bootstrap.servers": config.bootstrap_servers, "linger.ms": 20})
        topic = EVENTS.name(prefix)
        for event in synthetic_stream(args.events // 5, args.events, seed=3):
            producer.produce(topic, key=event.event_id.encode(), value=serde.encode(topic, event))
            producer.poll(0)
        producer.flush()
        env = {
            **os.environ,
            "OMNISTITCH_BOOTSTRAP_SERVERS": config.bootstrap_servers,
            "OMNISTITCH_SCHEMA_REGISTRY_URL": config.registry_url,
            "OMNISTITCH_TOPIC_PREFIX": prefix,
            "OMNISTITCH_APP_ID": "lag-app",
            "OMNISTITCH_DATA_DIR": str(home / "worker"),
        }
        ops = CUSTOMER_OPS.name(prefix)
        tps = [TopicPartition(ops, p) for p in range(partitions)]
        probe = Consumer({"bootstrap.servers": config.bootstrap_servers, "group.id": "lag-app"})
        with (home / "worker.log").open("ab") as log:
            for round_ in range(args.rounds):
                worker = subprocess.Popen(
                    [sys.executable, "-m", "pipeline.cli", "worker"],
                    env=env,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                started = time.monotonic()
                while time.monotonic() - started < args.round_s:
                    time.sleep(5)
                    committed = [tp.offset for tp in probe.committed(tps, timeout=10)]
                    ends = [probe.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
                    print(
                        f"round {round_} t={time.monotonic() - started:.0f}s "
                        f"committed={committed} end={ends}",
                        flush=True,
                    )
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
        probe.close()
        print(f"(worker log: {home / 'worker.log'})")
    finally:
        stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
