"""A worker deployment on the real broker for integration tests: its own topics, consumer group
and data folders, events in, the output topics read back (the ``run_factory`` fixture of
conftest makes one)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from pipeline.contract.models import ChannelEvent, CustomerProfile, IdentityChange, JourneyEvent
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import EVENTS, IDENTITY_CHANGES, JOURNEYS, PROFILES, create_topics
from tests.conftest import REPO_ROOT
from tests.factories import Clustering, journey_clustering
from tests.integration.conftest import KafkaEndpoints, WorkerProcess, drain


class Run:
    """One worker deployment on its own topics, consumer group and data folders."""

    def __init__(
        self,
        kafka: KafkaEndpoints,
        unique_name: Callable[[str], str],
        worker_process: Callable[..., WorkerProcess],
        tmp_path: Path,
        partitions: int,
    ) -> None:
        self.kafka = kafka
        self.prefix = unique_name("stitch") + "."
        self.serde = RegistrySerde(kafka.registry_url)
        create_topics(kafka.bootstrap_servers, self.prefix, partitions)
        self.env = {
            "OMNISTITCH_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "OMNISTITCH_SCHEMA_REGISTRY_URL": kafka.registry_url,
            "OMNISTITCH_TOPIC_PREFIX": self.prefix,
            "OMNISTITCH_PARTITIONS": str(partitions),
            "OMNISTITCH_APP_ID": unique_name("app"),
            "OMNISTITCH_STATS_INTERVAL_S": "2",
            "OMNISTITCH_SESSION_TIMEOUT_S": "10",
        }
        self.tmp_path = tmp_path
        self.worker_process = worker_process
        self.workers: list[WorkerProcess] = []

    def worker(self, name: str) -> WorkerProcess:
        worker = self.worker_process(
            [sys.executable, "-m", "pipeline.cli", "worker"],
            {**self.env, "OMNISTITCH_DATA_DIR": str(self.tmp_path / f"data-{name}")},
            name=name,
        )
        self.workers.append(worker)
        return worker

    def cli(self, *args: str) -> tuple[int, str]:
        """``omnistitch ARGS`` against this deployment: exit code and standard output."""
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.stdout.strip(), done.stderr
        return done.returncode, done.stdout

    def ready_worker(self, name: str) -> WorkerProcess:
        """A worker started and settled (ready after its partition assignment)."""
        worker = self.worker(name)
        worker.start()
        wait_ready([worker])
        return worker

    def produce(self, events: list[ChannelEvent]) -> None:
        producer = Producer(
            {"bootstrap.servers": self.kafka.bootstrap_servers, "enable.idempotence": True}
        )
        topic = EVENTS.name(self.prefix)
        for event in events:
            producer.produce(
                topic, key=event.event_id.encode(), value=self.serde.encode(topic, event)
            )
        assert producer.flush(60) == 0

    def journeys(self) -> list[JourneyEvent]:
        topic = JOURNEYS.name(self.prefix)
        return [
            JourneyEvent.from_avro(self.serde.decode(topic, m.value(), JourneyEvent))
            for m in drain(self.kafka.bootstrap_servers, topic, idle_s=1.0)
        ]

    def wait_for_journeys(self, expected: set[str], timeout_s: float = 240) -> list[JourneyEvent]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            journeys = self.journeys()
            if {j.event.event_id for j in journeys} >= expected:
                return self.journeys()  # once more, to see late duplicates too
            time.sleep(2)
        missing = sorted(expected - {j.event.event_id for j in journeys})
        tails = "\n".join(w.tail(3000) for w in self.workers)
        pytest.fail(
            f"journeys incomplete after {timeout_s}s: {len(missing)} missing, e.g. "
            f"{missing[:5]}\n{tails}"
        )

    def changes(self) -> list[IdentityChange]:
        topic = IDENTITY_CHANGES.name(self.prefix)
        return [
            IdentityChange.from_avro(self.serde.decode(topic, m.value(), IdentityChange))
            for m in drain(self.kafka.bootstrap_servers, topic)
        ]

    def profiles(self) -> dict[str, CustomerProfile]:
        topic = PROFILES.name(self.prefix)
        latest: dict[str, CustomerProfile | None] = {}
        for m in drain(self.kafka.bootstrap_servers, topic):
            key = m.key().decode()
            value = m.value()
            latest[key] = (
                None
                if value is None
                else CustomerProfile.from_avro(self.serde.decode(topic, value, CustomerProfile))
            )
        return {k: v for k, v in latest.items() if v is not None}

    def clustering(self, journeys: list[JourneyEvent]) -> Clustering:
        return journey_clustering(journeys, self.changes())


def settled(worker: WorkerProcess) -> bool:
    log = worker.tail(1_000_000)
    assigned = log.rfind("Setting newly assigned partitions")
    return assigned >= 0 and log.rfind("Worker ready") > assigned


def wait_ready(workers: list[WorkerProcess], timeout_s: float = 120) -> None:
    """Until every worker is ready after its last partition assignment, for 3 s in a row."""
    deadline = time.monotonic() + timeout_s
    stable_since = None
    while time.monotonic() < deadline:
        if all(settled(w) for w in workers):
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 3:
                return
        else:
            stable_since = None
        time.sleep(0.5)
    pytest.fail("workers did not settle:\n" + "\n".join(w.tail(2000) for w in workers))


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    pytest.fail(f"not within {timeout_s}s: {what}")
