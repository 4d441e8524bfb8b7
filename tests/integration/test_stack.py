"""The local stack's lifecycle through the same CLI the Makefile calls, on free ports in a
temporary folder: idempotent up, status, idempotent down, no JVM left, topics as defined."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from pipeline.exceptions import StackNotReadyError, TopicError
from pipeline.stack.local import (
    KafkaNode,
    LocalStack,
    RegistryNode,
    StackConfig,
    free_port,
    port_open,
)
from pipeline.stream.topics import ALL_TOPICS, PROFILES, create_topics
from tests.conftest import REPO_ROOT
from tests.integration.conftest import KafkaEndpoints

pytestmark = pytest.mark.integration


def _stack_jvms(home: Path) -> list[int]:
    marker = f"-Domnistitch.stack={home.resolve()}"
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(arg.startswith(marker) for arg in cmdline):
            pids.append(proc.info["pid"])
    return pids


def test_cli_up_twice_status_down_twice(tmp_path: Path, unique_name: Callable[[str], str]) -> None:
    home = tmp_path / "stack"
    kafka_port = free_port()
    env = {
        **os.environ,
        "OMNISTITCH_STACK_DIR": str(home),
        "OMNISTITCH_STACK_LIB_DIR": str(REPO_ROOT / "stack" / "lib"),
        "OMNISTITCH_KAFKA_PORT": str(kafka_port),
        "OMNISTITCH_CONTROLLER_PORT": str(free_port()),
        "OMNISTITCH_REGISTRY_PORT": str(free_port()),
        "OMNISTITCH_VAULT_PORT": str(free_port()),
        "OMNISTITCH_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "OMNISTITCH_TOPIC_PREFIX": unique_name("cli") + ".",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    try:
        first = cli("stack", "up")
        assert first.returncode == 0, first.stderr
        assert "kafka: started" in first.stdout
        assert "created" in first.stdout
        second = cli("stack", "up")
        assert second.returncode == 0, second.stderr
        assert "kafka: already running" in second.stdout
        assert "registry: already running" in second.stdout
        assert "vault: already running" in second.stdout
        # Exactly one JVM per node: the broker and the registry.
        assert len(_stack_jvms(home / "kafka")) == 1
        assert len(_stack_jvms(home / "registry")) == 1
        assert port_open(kafka_port)

        status = cli("stack", "status")
        assert status.returncode == 0, status.stderr
        assert "kafka     ready" in status.stdout
        assert "registry  ready" in status.stdout
        assert "vault     ready" in status.stdout
        token = home / "vault" / "token"
        assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text()) >= 32
        assert "missing" not in status.stdout
    finally:
        down = cli("stack", "down")
    assert down.returncode == 0, down.stderr
    assert _stack_jvms(home) == []
    assert not port_open(kafka_port)
    again = cli("stack", "down")
    assert again.returncode == 0
    assert "not running" in again.stdout
    stopped = cli("stack", "status")
    assert stopped.returncode == 3  # status says "not running" in its exit code too


def test_broker_that_cannot_start_fails_with_a_clear_error(tmp_path: Path) -> None:
    config = StackConfig(
        home=tmp_path,
        lib_dir=REPO_ROOT / "stack" / "lib",
        kafka_port=free_port(),
        controller_port=free_port(),
        kafka_heap="1k",  # the JVM refuses a heap this small and exits at once
    )
    node = KafkaNode(config)
    node.start()
    with pytest.raises(StackNotReadyError, match="kafka exited during start-up"):
        node.wait_ready(30)
    assert node.pids() == []


def test_ready_wait_times_out_with_the_log_tail(tmp_path: Path) -> None:
    config = StackConfig(
        home=tmp_path,
        lib_dir=REPO_ROOT / "stack" / "lib",
        kafka_port=free_port(),
        controller_port=free_port(),
    )
    stack = LocalStack(config)
    stack.kafka.start()
    try:
        with pytest.raises(StackNotReadyError, match=r"not ready after 0s"):
            stack.kafka.wait_ready(0.01)
    finally:
        stack.down()
    assert stack.kafka.pids() == []


def test_topics_are_created_as_defined_and_idempotently(
    kafka: KafkaEndpoints, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("topics") + "."
    first = create_topics(kafka.bootstrap_servers, prefix, partitions=3)
    assert set(first.values()) == {"created"}
    second = create_topics(kafka.bootstrap_servers, prefix, partitions=3)
    assert set(second.values()) == {"exists"}

    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    metadata = admin.list_topics(timeout=10).topics
    for spec in ALL_TOPICS:
        assert len(metadata[spec.name(prefix)].partitions) == spec.partitions(3)
    resource = ConfigResource("topic", PROFILES.name(prefix))
    config = admin.describe_configs([resource])[resource].result(10)
    assert config["cleanup.policy"].value == "compact"

    with pytest.raises(TopicError, match="partitions"):
        create_topics(kafka.bootstrap_servers, prefix, partitions=5)


def test_the_registry_keeps_its_schemas_over_a_restart(tmp_path: Path) -> None:
    """Records written before a restart of the stack name schema ids: the registry must still
    know them afterwards (its database is a file under the stack folder, not memory)."""
    config = StackConfig(
        home=tmp_path / "stack", lib_dir=REPO_ROOT / "stack" / "lib", registry_port=free_port()
    )
    registry = RegistryNode(config)
    schema = json.dumps(
        {"type": "record", "name": "Kept", "fields": [{"name": "a", "type": "string"}]}
    )

    def call(path: str, body: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the local registry's http URL
            config.registry_url + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    try:
        registry.start()
        registry.wait_ready(90)
        schema_id = call("/subjects/kept-value/versions", {"schema": schema})["id"]
        assert registry.stop() >= 1 and registry.pids() == []
        registry.start()
        registry.wait_ready(90)
        assert json.loads(call(f"/schemas/ids/{schema_id}")["schema"]) == json.loads(schema)
        assert call("/subjects") == ["kept-value"]
    finally:
        registry.stop()
    assert registry.database.with_suffix(".mv.db").is_file()
