"""One real Kafka broker (and schema registry) for the whole integration session.

Chosen in this order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: use that broker (and ``SCHEMA_REGISTRY_URL`` if set);
2. a working Docker engine: testcontainers runs the same images as docker-compose.yml;
3. otherwise: the project's own stack code starts Kafka and Apicurio from the jars that
   ``make setup`` fetched, on free ports, in a temporary folder, and stops them at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message

from pipeline.stack.local import (
    KAFKA_VERSION,
    REGISTRY_API_PATH,
    REGISTRY_VERSION,
    LocalStack,
    StackConfig,
    free_port,
)
from pipeline.stream.batches import EVENT_BATCH
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import ACCEPTED, ALL_TOPICS, create_topics
from tests.conftest import REPO_ROOT


@dataclass(frozen=True)
class KafkaEndpoints:
    bootstrap_servers: str
    registry_url: str
    provider: str


def _docker_works() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


def _wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - test URL
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


def _start_containers(stack: ExitStack) -> KafkaEndpoints:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    kafka = (
        DockerContainer(f"apache/kafka:{KAFKA_VERSION}")
        .with_bind_ports(port, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://0.0.0.0:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        )
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    stack.enter_context(kafka)
    wait_for_logs(kafka, "Kafka Server started", timeout=120)
    registry = DockerContainer(
        f"apicurio/apicurio-registry-mem:{REGISTRY_VERSION}"
    ).with_exposed_ports(8080)
    stack.enter_context(registry)
    host = registry.get_container_host_ip()
    base = f"http://{host}:{registry.get_exposed_port(8080)}{REGISTRY_API_PATH}"
    _wait_http(f"{base}/subjects", 120)
    return KafkaEndpoints(f"127.0.0.1:{port}", base, "testcontainers")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaEndpoints]:
    """The session's broker and registry endpoints."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield KafkaEndpoints(
            os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            os.environ.get("SCHEMA_REGISTRY_URL", f"http://127.0.0.1:8081{REGISTRY_API_PATH}"),
            "environment",
        )
        return
    with ExitStack() as stack:
        if _docker_works():
            yield _start_containers(stack)
            return
        config = StackConfig(
            home=tmp_path_factory.mktemp("stack"),
            lib_dir=REPO_ROOT / "stack" / "lib",
            kafka_port=free_port(),
            controller_port=free_port(),
            registry_port=free_port(),
            vault_port=free_port(),
        )
        local = LocalStack(config)
        local.up()
        stack.callback(local.down)
        yield KafkaEndpoints(config.bootstrap_servers, config.registry_url, "local-jars")


@pytest.fixture
def project_topics(
    kafka: KafkaEndpoints, unique_name: Callable[[str], str]
) -> Callable[[int], str]:
    """Factory: create the project's topics under a fresh prefix; returns that prefix."""

    def make(partitions: int = 4) -> str:
        prefix = unique_name("t") + "."
        create_topics(kafka.bootstrap_servers, prefix, partitions, specs=ALL_TOPICS)
        return prefix

    return make


class WorkerProcess:
    """A worker (or any long-running command) as a real child process with its own log."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv = argv
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **extra_env: str) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env={**os.environ, **self.env, **extra_env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait: a graceful stop that commits offsets."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory of worker processes; every one is killed at the end of the test."""
    made: list[WorkerProcess] = []

    def make(argv: list[str], env: dict[str, str], name: str = "worker") -> WorkerProcess:
        worker = WorkerProcess(argv, env, tmp_path / f"{name}-{len(made)}.log")
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.kill()


def _reader(bootstrap_servers: str, topic: str) -> Consumer:
    """A consumer of the whole topic from the beginning, in a group of its own."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    return consumer


def consume(
    bootstrap_servers: str, topic: str, count: int, timeout_s: float, on_timeout: str = ""
) -> list[Message]:
    """Read ``count`` messages of a topic from the beginning (fails the test on timeout)."""
    consumer = _reader(bootstrap_servers, topic)
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg)
        # Anything beyond the expected count is a duplicate or a stray: read a little longer.
        extra_deadline = time.monotonic() + 1.0
        while time.monotonic() < extra_deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                got.append(msg)
    finally:
        consumer.close()
    if len(got) < count:
        pytest.fail(f"{topic}: expected {count} messages, got {len(got)}\n{on_timeout}")
    return got


def drain(
    bootstrap_servers: str, topic: str, idle_s: float = 3.0, max_s: float = 120.0
) -> list[Message]:
    """Every message of a topic, from the beginning, until nothing new came for ``idle_s``."""
    consumer = _reader(bootstrap_servers, topic)
    got: list[Message] = []
    last_new = time.monotonic()
    deadline = last_new + max_s
    try:
        while time.monotonic() - last_new < idle_s and time.monotonic() < deadline:
            msg = consumer.poll(0.3)
            if msg is not None and not msg.error():
                got.append(msg)
                last_new = time.monotonic()
    finally:
        consumer.close()
    return got


def accepted_entries(
    bootstrap_servers: str,
    serde: RegistrySerde,
    prefix: str,
    count: int,
    timeout_s: float = 60.0,
    on_timeout: str = "",
) -> list[dict[str, Any]]:
    """The entries (event, decoded, and origin) of the EventBatch records intake wrote to the
    accepted topic, in order: at least ``count`` of them (fails the test on timeout), then whatever
    else arrives within a second (duplicates show)."""
    topic = ACCEPTED.name(prefix)
    consumer = _reader(bootstrap_servers, topic)
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        extra_deadline = None
        while time.monotonic() < (extra_deadline or deadline):
            msg = consumer.poll(0.3)
            if msg is not None and not msg.error():
                value = msg.value()
                assert value is not None
                for entry in serde.decode_record(topic, value, EVENT_BATCH)["events"]:
                    entry["event"] = serde.decode_body(
                        entry["event"], entry["event_schema_id"], "io.omnistitch.ChannelEvent"
                    )
                    got.append(entry)
            if len(got) >= count and extra_deadline is None:
                extra_deadline = time.monotonic() + 1.0
    finally:
        consumer.close()
    if len(got) < count:
        pytest.fail(f"{topic}: expected {count} events, got {len(got)}\n{on_timeout}")
    return got


WRITE_KEY = "it-write-key-7f3a"


def connector_env(kafka: KafkaEndpoints, prefix: str, tmp_path: Path) -> dict[str, str]:
    return {
        "OMNISTITCH_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "OMNISTITCH_SCHEMA_REGISTRY_URL": kafka.registry_url,
        "OMNISTITCH_TOPIC_PREFIX": prefix,
        "OMNISTITCH_WRITE_KEYS": json.dumps({WRITE_KEY: "web-shop"}),
        "OMNISTITCH_DROP_DIR": str(tmp_path / "drop"),
        "OMNISTITCH_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "OMNISTITCH_LOG_LEVEL": "info",
    }


def wait_healthy(base: str, proc: WorkerProcess, timeout_s: float = 60) -> None:
    """Wait until a collector process answers 200 on /health (fails the test if it dies)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, proc.tail()
        assert proc.proc is not None and proc.proc.poll() is None, proc.tail()
        time.sleep(0.3)


@pytest.fixture
def collector(
    kafka: KafkaEndpoints,
    project_topics: Callable[[int], str],
    worker_process: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> Iterator[tuple[str, str]]:
    """A running collector process on fresh topics: (base URL, topic prefix)."""
    prefix = project_topics(4)
    port = free_port()
    proc = worker_process(
        [sys.executable, "-m", "pipeline.cli", "collector"],
        {**connector_env(kafka, prefix, tmp_path), "OMNISTITCH_COLLECTOR_PORT": str(port)},
        name="collector",
    )
    proc.start()
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc)
    yield base, prefix
    assert proc.stop() == 0, proc.tail()


@pytest.fixture
def run_factory(
    kafka: KafkaEndpoints,
    unique_name: Callable[[str], str],
    worker_process: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> Callable[[int], Any]:
    """Factory of worker deployments (tests.integration.deployments.Run) on fresh topics."""
    from tests.integration.deployments import Run

    return lambda partitions: Run(kafka, unique_name, worker_process, tmp_path, partitions)


@dataclass(frozen=True)
class VaultEndpoint:
    url: str
    token: str
    process: WorkerProcess

    def env(self) -> dict[str, str]:
        return {"OMNISTITCH_VAULT_URL": self.url, "OMNISTITCH_VAULT_TOKEN": self.token}


@pytest.fixture
def vault(worker_process: Callable[..., WorkerProcess], tmp_path: Path) -> Iterator[VaultEndpoint]:
    """A key vault (``omnistitch vault``) as a real process on a free port."""
    port = free_port()
    token = "integration-vault-token-" + os.urandom(8).hex()
    proc = worker_process(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "vault",
            "--port",
            str(port),
            "--data",
            str(tmp_path / "vault-keys"),
        ],
        {"OMNISTITCH_VAULT_TOKEN": token},
        name="vault",
    )
    proc.start()
    endpoint = VaultEndpoint(f"http://127.0.0.1:{port}", token, proc)
    wait_healthy(endpoint.url, proc)
    yield endpoint
    assert proc.stop() == 0, proc.tail()
