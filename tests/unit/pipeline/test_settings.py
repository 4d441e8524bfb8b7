from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.settings import Settings


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("OMNISTITCH_"):
            monkeypatch.delenv(key)
    settings = Settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.schema_registry_url.endswith("/apis/ccompat/v7")
    assert settings.stack_dir == Path(".stack")


def test_environment_variables_with_prefix_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNISTITCH_BOOTSTRAP_SERVERS", "kafka:19092")
    monkeypatch.setenv("OMNISTITCH_PARTITIONS", "8")
    settings = Settings()
    assert settings.bootstrap_servers == "kafka:19092"
    assert settings.partitions == 8


def test_settings_are_frozen_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.partitions = 2  # type: ignore[misc]
    monkeypatch.setenv("OMNISTITCH_PARTITIONS", "0")
    with pytest.raises(ValidationError):
        Settings()
