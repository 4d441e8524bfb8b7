"""What the throughput benchmarks share: a broker of their own, processes started and stopped,
topics filled and read back, peak memory watched."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from pipeline.contract.models import ChannelEvent
from pipeline.stack.local import LocalStack, StackConfig, free_port
from pipeline.stream.serialization import RegistrySerde

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
            vault_port=free_port(),
            kafka_heap="1g",
        )
        stack = LocalStack(config)
        stack.up()
        try:
            yield config.bootstrap_servers, config.registry_url
        finally:
            stack.down()


class RssWatch:
    """Peak resident memory of a process and of each of its children (the worker's stage
    processes), apart, sampled every 100 ms."""

    def __init__(self, pid: int, name: str) -> None:
        self.name = name
        self.peaks: dict[str, int] = {}
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _label(self, proc: psutil.Process) -> str:
        if proc.pid == self._proc.pid:
            return f"{self.name} (main process)"
        argv = proc.cmdline()
        if "stage" in argv:
            return f"{self.name}: {argv[argv.index('stage') + 1]} process"
        return f"{self.name}: child process"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for proc in [self._proc, *self._proc.children(recursive=True)]:
                    label = self._label(proc)
                    self.peaks[label] = max(self.peaks.get(label, 0), proc.memory_info().rss)
            except psutil.Error:
                pass
            if not self._proc.is_running():
                return
            time.sleep(0.1)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return self.peaks


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


def _settled_end_offsets(bootstrap: str, topic: str) -> int:
    """end_offsets, 0 while the broker still settles a new topic (e.g. not leader yet)."""
    try:
        return end_offsets(bootstrap, topic)
    except KafkaException:
        return 0


def wait_count(bootstrap: str, topic: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _settled_end_offsets(bootstrap, topic) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {topic} did not reach {count} records in {timeout_s}s")
        time.sleep(0.5)


def span_rate(messages: list[Any]) -> float:
    stamps = sorted(m.timestamp()[1] for m in messages)
    seconds = (stamps[-1] - stamps[0]) / 1000
    return len(messages) / seconds if seconds > 0 else float("inf")
