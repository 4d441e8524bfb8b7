"""Secure transport settings become the right client configuration, once for every client."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from pipeline.exceptions import ConfigurationError
from pipeline.settings import Settings, unknown_variables
from pipeline.stream.transport import KafkaSecurity, RegistryAccess


def test_plaintext_by_default() -> None:
    security = Settings().kafka_security()
    assert security.librdkafka() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "PLAINTEXT",
        "log_level": 4,  # librdkafka's informational lines stay off the terminal
    }
    assert security.faust() is None


def test_sasl_ssl_for_librdkafka_and_faust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.stack.certificates import write_server_tls

    ca = write_server_tls(tmp_path).ca_file
    monkeypatch.setenv("OMNISTITCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("OMNISTITCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("OMNISTITCH_KAFKA_SASL_USERNAME", "worker")
    monkeypatch.setenv("OMNISTITCH_KAFKA_SASL_PASSWORD", "pw-123456")
    monkeypatch.setenv("OMNISTITCH_KAFKA_SSL_CA_FILE", str(ca))
    settings = Settings()
    conf = settings.kafka_security().librdkafka()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-256" and conf["sasl.username"] == "worker"
    assert conf["ssl.ca.location"] == str(ca)
    credentials = settings.kafka_security().faust()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.ssl_context is not None and credentials.mechanism.value == "SCRAM-SHA-256"
    assert "pw-123456" in settings.secrets()
    assert "pw-123456" not in repr(settings)


def test_incomplete_security_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="USERNAME"):
        KafkaSecurity("h:9092", protocol="SASL_SSL")
    with pytest.raises(ConfigurationError, match="not found"):
        KafkaSecurity("h:9092", protocol="SSL", ca_file=tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError, match="not in the URL"):
        RegistryAccess("https://u:p@registry:8081")


def test_registry_auth() -> None:
    basic = RegistryAccess("https://r", username="u", password="p").client_conf()
    assert basic["basic.auth.user.info"] == "u:p"
    bearer = RegistryAccess("https://r", token="t0k").client_conf()
    assert bearer["bearer.auth.token"] == "t0k"


def test_unknown_variables_are_named() -> None:
    env = {"OMNISTITCH_BOOTSTRAP_SERVER": "x", "OMNISTITCH_PARTITIONS": "4", "HOME": "/"}
    assert unknown_variables(env) == ["OMNISTITCH_BOOTSTRAP_SERVER"]
