"""Configuration: one typed, frozen settings object read from OMNISTITCH_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by the CLI, the worker, the connectors and the local stack.

    Every field can be set with an environment variable named ``OMNISTITCH_<FIELD>``,
    e.g. ``OMNISTITCH_BOOTSTRAP_SERVERS=broker:9092``.
    """

    model_config = SettingsConfigDict(env_prefix="OMNISTITCH_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    schema_registry_url: str = Field(
        "http://127.0.0.1:8081/apis/ccompat/v7",
        description="Confluent-compatible schema registry URL (Apicurio's ccompat API locally).",
    )
    topic_prefix: str = Field(
        "omnistitch.", description="Prefix of every project topic name (see pipeline.topics)."
    )
    partitions: int = Field(4, ge=1, description="Partitions of the partitioned project topics.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of project topics.")
    data_dir: Path = Field(Path(".stack/worker"), description="Worker state (RocksDB) directory.")

    # Local stack (make up / down): loopback only.
    stack_dir: Path = Field(Path(".stack"), description="Data and logs of the local stack.")
    stack_lib_dir: Path = Field(
        Path("stack/lib"), description="Jars fetched by `make setup` (Kafka, Apicurio)."
    )
    kafka_port: int = Field(9092, description="Local broker's client port (127.0.0.1).")
    controller_port: int = Field(9093, description="Local KRaft controller port (127.0.0.1).")
    registry_port: int = Field(8081, description="Local schema registry port (127.0.0.1).")
    kafka_heap: str = Field("512m", description="Max heap of the local broker JVM.")
    registry_heap: str = Field("384m", description="Max heap of the local registry JVM.")
    ready_timeout_s: float = Field(90.0, gt=0, description="Seconds to wait for the stack.")
