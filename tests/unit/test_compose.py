"""docker-compose.yml must describe the same stack as `make up` (no Docker engine here)."""

from typing import Any

import yaml

from pipeline.settings import Settings
from pipeline.stack.local import KAFKA_VERSION, REGISTRY_VERSION
from tests.conftest import REPO_ROOT


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text()))


def test_same_versions_as_the_local_stack() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert services["registry"]["image"] == f"apicurio/apicurio-registry-mem:{REGISTRY_VERSION}"
    pom = (REPO_ROOT / "stack" / "pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom
    assert f"<apicurio.version>{REGISTRY_VERSION}</apicurio.version>" in pom


def test_same_loopback_ports_as_the_local_stack() -> None:
    services = _compose()["services"]
    defaults = Settings.model_fields
    kafka_port = defaults["kafka_port"].default
    registry_port = defaults["registry_port"].default
    assert f"127.0.0.1:{kafka_port}:9092" in services["kafka"]["ports"]
    assert f"127.0.0.1:{registry_port}:8080" in services["registry"]["ports"]
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://127.0.0.1:{kafka_port}" in advertised


def test_topics_come_from_the_one_definition_with_the_same_settings() -> None:
    services = _compose()["services"]
    topics = services["topics"]
    assert topics["command"] == ["topics", "create"]
    env = topics["environment"]
    fields = {f"OMNISTITCH_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    assert env["OMNISTITCH_TOPIC_PREFIX"] == Settings.model_fields["topic_prefix"].default
    assert int(env["OMNISTITCH_PARTITIONS"]) == Settings.model_fields["partitions"].default


def test_the_worker_runs_the_cli_with_the_same_settings() -> None:
    worker = _compose()["services"]["worker"]
    assert worker["command"] == ["worker"]
    fields = {f"OMNISTITCH_{name.upper()}" for name in Settings.model_fields}
    assert set(worker["environment"]) <= fields
    assert worker["environment"]["OMNISTITCH_BOOTSTRAP_SERVERS"] == "kafka:19092"


def test_the_connectors_run_the_cli_with_the_same_settings() -> None:
    services = _compose()["services"]
    defaults = Settings.model_fields
    fields = {f"OMNISTITCH_{name.upper()}" for name in Settings.model_fields}
    collector, files = services["collector"], services["files"]
    assert collector["command"] == ["collector"]
    assert files["command"] == ["files"]
    for service in (collector, files):
        assert set(service["environment"]) <= fields, set(service["environment"]) - fields
        assert service["environment"]["OMNISTITCH_BOOTSTRAP_SERVERS"] == "kafka:19092"
    port = defaults["collector_port"].default
    assert f"127.0.0.1:{port}:{port}" in collector["ports"]
    assert collector["environment"]["OMNISTITCH_COLLECTOR_PORT"] == str(port)
    # The write keys are a secret: required from the environment, never written in the file.
    assert collector["environment"]["OMNISTITCH_WRITE_KEYS"].startswith("${OMNISTITCH_WRITE_KEYS:?")


def test_the_api_and_the_activation_stage_run_the_cli_with_the_same_settings() -> None:
    services = _compose()["services"]
    fields = {f"OMNISTITCH_{name.upper()}" for name in Settings.model_fields}
    serve, activate = services["serve"], services["activate"]
    assert (serve["command"], activate["command"]) == (["serve"], ["activate"])
    for service in (serve, activate):
        assert set(service["environment"]) <= fields, set(service["environment"]) - fields
        assert service["environment"]["OMNISTITCH_BOOTSTRAP_SERVERS"] == "kafka:19092"
    port = Settings.model_fields["serve_port"].default
    assert f"127.0.0.1:{port}:{port}" in serve["ports"]
    # No token in the file: the API's local token lives in its volume (docs/api.md).
    assert "OMNISTITCH_API_TOKENS" not in serve["environment"]
    assert "serve-view:/serve" in serve["volumes"]
    assert "./docs/audiences.example.yaml:/config/audiences.yaml:ro" in activate["volumes"]
    worker = services["worker"]
    assert worker["environment"]["OMNISTITCH_METRICS_PORT"] in {
        p.split(":")[-1] for p in worker["ports"]
    }
