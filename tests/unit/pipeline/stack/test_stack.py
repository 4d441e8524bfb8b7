from pathlib import Path

import pytest

from pipeline.exceptions import StackError
from pipeline.stack.local import (
    KafkaNode,
    RegistryNode,
    StackConfig,
    cluster_id,
    free_port,
    port_open,
)


def _config(tmp_path: Path, lib: Path) -> StackConfig:
    return StackConfig(home=tmp_path, lib_dir=lib, kafka_port=19092, controller_port=19093)


def test_missing_jars_give_a_clear_error(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path / "no-jars")
    with pytest.raises(StackError, match="make setup"):
        KafkaNode(config).command()
    with pytest.raises(StackError, match="make setup"):
        RegistryNode(config).command()


def test_broker_listens_on_loopback_only_with_a_bounded_heap(tmp_path: Path) -> None:
    lib = tmp_path / "lib" / "kafka"
    lib.mkdir(parents=True)
    (lib / "kafka_2.13-3.9.1.jar").touch()
    node = KafkaNode(_config(tmp_path, tmp_path / "lib"))
    command = node.command()
    assert "-Xmx512m" in command
    assert node.marker in command
    assert command[-2:] == ["kafka.Kafka", str(node.properties_file)]
    props = dict(
        line.split("=", 1) for line in node.server_properties().splitlines() if "=" in line
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["process.roles"] == "broker,controller"
    assert props["log.dirs"].startswith(str(tmp_path.resolve()))


def test_free_port_is_free() -> None:
    assert not port_open(free_port())


def test_cluster_ids_never_start_with_a_dash() -> None:
    ids = [cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
