"""Configuration: one typed, frozen settings object read from OMNISTITCH_* environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.contract.intake import IntakePolicy
from pipeline.contract.limits import Limits
from pipeline.stream.transport import KafkaSecurity, RegistryAccess

ENV_PREFIX = "OMNISTITCH_"


class Settings(BaseSettings):
    """Settings shared by the CLI, the worker, the connectors and the local stack.

    Every field can be set with an environment variable named ``OMNISTITCH_<FIELD>``,
    e.g. ``OMNISTITCH_BOOTSTRAP_SERVERS=broker:9092``.
    """

    model_config = SettingsConfigDict(env_prefix="OMNISTITCH_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    schema_registry_url: str = Field(
        "http://127.0.0.1:8081/apis/ccompat/v7",
        description="Confluent-compatible schema registry URL (Apicurio's ccompat API locally); "
        "without credentials (see schema_registry_username).",
    )

    # Secure transport, applied to every Kafka client (faust worker, connectors, admin, tools).
    kafka_security_protocol: str = Field(
        "PLAINTEXT",
        pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: str = Field(
        "SCRAM-SHA-512",
        pattern="^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$",
        description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    kafka_sasl_username: str = Field("", description="SASL user name.")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password (secret).")
    kafka_ssl_ca_file: Path | None = Field(
        None, description="PEM file of the CA Kafka's certificate is signed by."
    )
    kafka_ssl_cert_file: Path | None = Field(
        None, description="Client certificate (PEM), for mTLS."
    )
    kafka_ssl_key_file: Path | None = Field(None, description="Client key (PEM), for mTLS.")
    schema_registry_username: str = Field("", description="Registry basic-auth user.")
    schema_registry_password: SecretStr = Field(
        SecretStr(""), description="Registry basic-auth password (secret)."
    )
    schema_registry_token: SecretStr = Field(
        SecretStr(""), description="Registry bearer token (secret)."
    )
    schema_registry_ca_file: Path | None = Field(
        None, description="PEM CA file of the registry's TLS certificate."
    )
    topic_prefix: str = Field(
        "omnistitch.",
        description="Prefix of every project topic name (see pipeline.stream.topics).",
    )
    partitions: int = Field(4, ge=1, description="Partitions of the partitioned project topics.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of project topics.")
    data_dir: Path = Field(Path(".stack/worker"), description="Worker state (RocksDB) directory.")
    app_id: str = Field("omnistitch", description="Faust app id: consumer group and table prefix.")
    log_level: str = Field("info", description="Worker log level.")
    stats_interval_s: float = Field(30.0, gt=0, description="Seconds between counter logs.")
    batch_size: int = Field(
        500,
        ge=1,
        le=5000,
        description="Events (or operations) one internal record carries between the worker's "
        "stages (pipeline.stream.batches).",
    )
    worker_stages: str = Field(
        "intake,link,profile",
        pattern=r"^(intake|link|profile)(,(intake|link|profile))*$",
        description="The stages `omnistitch worker` runs, comma-separated: intake (its own "
        "process), link (one partition: one linker in a deployment), profile (partitioned). "
        "A deployment runs every stage somewhere; e.g. one worker with `intake,link` and "
        "others with `intake,profile`.",
    )
    erasure_key: SecretStr = Field(
        SecretStr(""),
        description="Secret of the keyed hash (HMAC-SHA256) under which erased identifiers are "
        "remembered, so that an event carrying one is dropped and never brings the person back "
        "(the values themselves are not kept). At least 32 characters; unset: erase is refused. "
        "Keep it like a password and never change it: entries made under another key no "
        "longer match.",
    )
    journey_properties: list[str] | None = Field(
        None,
        description="The event properties journey events carry (JSON list). Unset: the KPIs' "
        "and the commerce and service ids (pipeline.engine.journey.JOURNEY_PROPERTIES); any "
        "other property stays on the (sealed) event only, since journeys cannot be erased.",
    )
    vault_url: str = Field(
        "",
        description="The key vault (omnistitch vault) for crypto-shredding: connectors seal "
        "personal fields under a data key per record, the worker opens them and an erase "
        "deletes the person's keys. Unset: nothing is sealed and erase cannot reach the topics.",
    )
    vault_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token of the vault (at least 16 characters). Unset: the local "
        "stack's token file (<stack dir>/vault/token) when it exists.",
    )
    vault_timeout_s: float = Field(10.0, gt=0, description="Timeout of one vault call.")
    vault_port: int = Field(8200, description="Port of the local stack's vault (127.0.0.1).")
    internal_purge_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often the worker deletes the records of its internal topics that every "
        "stage has consumed (Kafka DeleteRecords), so that no personal data lingers there.",
    )
    keep_events: bool = Field(
        True,
        description="The linker keeps every event (its Avro bytes) with its decision, so that "
        "an operator's split or unlink can rebuild the parts from their own events. Off: its "
        "state and changelog stay smaller, and splits are refused.",
    )
    batch_wait_ms: int = Field(
        50,
        ge=1,
        le=5000,
        description="How long intake waits to fill a batch: the latency a batch adds at most.",
    )

    # Intake: what the worker accepts from the events topic.
    max_record_bytes: int = Field(
        128 * 1024,
        gt=0,
        le=512 * 1024,
        description="Larger records (decompressed) are dead-lettered as too_large; at most "
        "512 KiB so that everything derived from an event stays below Kafka's 1 MiB.",
    )
    max_identifiers: int = Field(50, ge=1, le=200, description="Identifiers per event.")
    max_identifier_bytes: int = Field(
        256, ge=16, le=1024, description="UTF-8 bytes of one identifier value."
    )
    max_trait_bytes: int = Field(256, ge=16, le=1024, description="UTF-8 bytes of one trait.")
    max_properties: int = Field(64, ge=1, le=256, description="Properties per event.")
    max_property_bytes: int = Field(
        1024, ge=16, le=4096, description="UTF-8 bytes of one property value."
    )
    max_event_age_days: float = Field(
        5 * 365, gt=0, description="Events that occurred earlier than this are dead-lettered."
    )
    max_clock_skew_s: float = Field(
        300.0, ge=0, description="Events that occur later than now + this are dead-lettered."
    )

    session_timeout_s: float = Field(
        30.0, gt=0, description="Consumer session timeout: how fast a dead worker is noticed."
    )
    processing_guarantee: str = Field(
        "at_least_once",
        pattern="^(at_least_once|exactly_once)$",
        description="faust processing guarantee; exactly_once uses Kafka transactions.",
    )
    journey_window_s: float = Field(
        600.0,
        gt=0,
        description="After a (re)assignment the worker reads this many seconds of the journeys "
        "topic, so that a crash neither repeats nor loses a journey event; must exceed the "
        "time between offset commits plus processing lag.",
    )
    rocksdb_block_cache_mb: int = Field(32, ge=1, description="Block cache per table partition.")
    rocksdb_write_buffer_mb: int = Field(16, ge=1, description="Memtable size (2 per partition).")

    # Stitching.
    default_region: str = Field("DE", description="Phone numbers without country code: region.")
    junk_values: list[str] = Field(
        default_factory=list, description="More identifier values that never link (JSON list)."
    )
    namespace_rules: str = Field(
        "", description='Namespace rule overrides as JSON, e.g. {"email": {"max_per_profile": 20}}.'
    )
    hairball_max_profiles: int = Field(
        3,
        ge=1,
        description="A value tied to more profiles with different unique ids is quarantined.",
    )
    source_precedence: list[str] = Field(
        default_factory=list,
        description='Source prefixes whose traits win, in order (JSON list, e.g. ["crm", "pos"]).',
    )

    # Probabilistic matching (Fellegi-Sunter).
    probabilistic: bool = Field(True, description="Link on names, birth dates and addresses too.")
    match_model: Path | None = Field(
        None, description="A model JSON written by `omnistitch train`; default: the built-in one."
    )
    match_auto_link: float | None = Field(
        None, gt=0, le=1, description="Match probability from which records link (model's)."
    )
    match_review: float | None = Field(
        None, gt=0, le=1, description="Match probability from which a possible match is recorded."
    )
    match_max_block_size: int = Field(
        50, ge=2, description="Customers per blocking key; a bigger block is skipped."
    )

    # Connectors: the HTTP collector (Segment API + webhooks) and the file connector.
    collector_host: str = Field("127.0.0.1", description="Address the HTTP collector binds to.")
    collector_port: int = Field(8090, description="Port of the HTTP collector.")
    write_keys: dict[str, str] = Field(
        default_factory=dict,
        description='Write key → source name, as JSON, e.g. {"k3y...": "web-shop"}, or hashed: '
        '{"sha256:<hex of the key>": "web-shop"}. Secrets: set them in the environment, never '
        "in the repository. The collector refuses to start without one.",
    )
    collector_read_timeout_s: float = Field(
        10.0, gt=0, description="Longest time a request body may take to arrive (408 after)."
    )
    collector_keepalive_s: float = Field(
        10.0,
        gt=0,
        description="Idle connections, and connections whose request headers do not complete, "
        "are closed after this many seconds.",
    )
    collector_max_connections: int = Field(
        256, ge=1, description="Open connections beyond this are closed at once."
    )
    collector_max_json_depth: int = Field(
        32, ge=4, description="Deepest nesting of a JSON body (400 beyond)."
    )
    dead_letter_retention_days: float = Field(
        30.0,
        gt=0,
        description="How long dead letters (original bytes: personal data) are kept.",
    )
    collector_max_body_bytes: int = Field(
        512 * 1024, gt=0, description="Largest request body (after gzip) the collector reads."
    )
    collector_max_call_bytes: int = Field(
        32 * 1024, gt=0, description="Largest single call inside a request (Segment's limit)."
    )
    collector_max_batch: int = Field(2500, gt=0, description="Most calls in one batch request.")
    collector_rate_per_s: float = Field(
        200.0, gt=0, description="Requests per second per write key (token bucket refill)."
    )
    collector_burst: int = Field(400, gt=0, description="Token bucket size per write key.")
    collector_user_id_namespace: str = Field(
        "customer_id", description="Namespace of Segment's userId (the shop's account id)."
    )
    delivery_timeout_s: float = Field(
        15.0,
        gt=0,
        description="How long a connector waits for Kafka to acknowledge (acks=all) before it "
        "answers 503 (collector) or retries from its checkpoint (files).",
    )
    drop_dir: Path = Field(
        Path(".stack/drop"), description="Folder the file connector watches (pos/, crm/ below)."
    )
    checkpoint_dir: Path = Field(
        Path(".stack/checkpoints"), description="Per-file checkpoints of the file connector."
    )
    file_poll_interval_s: float = Field(1.0, gt=0, description="How often the folder is scanned.")
    file_batch_rows: int = Field(500, gt=0, description="Rows delivered per checkpoint.")
    file_mappings: str = Field(
        "",
        description="Column mappings of the file connector as JSON (kind → mapping), "
        "overriding the defaults of connectors.files.loader; see docs/connectors.md.",
    )

    # Local stack (make up / down): loopback only.
    serve_host: str = Field("127.0.0.1", description="Address the profile API binds to.")
    serve_port: int = Field(8300, description="Port of the profile API and viewer.")
    serve_dir: Path = Field(
        Path(".stack/serve"), description="The profile API's view of the output topics (RocksDB)."
    )
    api_tokens: dict[str, str] = Field(
        default_factory=dict,
        description='Profile API tokens as {"<name>": "<SHA-256 hex of the token>"} (only '
        "hashes in the environment); empty: one local token in <serve_dir>/token.",
    )
    api_operators: list[str] = Field(
        default_factory=list,
        description="Token names that may POST identity operations (all, with the local token).",
    )
    api_access_log: bool = Field(
        False,
        description="One log line per API request at INFO (method, route pattern, status, time; "
        "never an identifier); else at DEBUG, with a summary every minute.",
    )
    serve_max_journey: int = Field(
        5000, ge=10, le=100_000, description="Journey events the API keeps per customer id."
    )
    audiences_file: Path | None = Field(
        None, description="Audience definitions, YAML or JSON (docs/audiences.md)."
    )
    destinations_file: Path | None = Field(
        None, description="Webhook destinations of audience changes, YAML or JSON."
    )
    activation_dir: Path = Field(
        Path(".stack/activate"), description="The activation stage's memberships (RocksDB)."
    )
    rfm_currency: str = Field(
        "EUR", min_length=3, max_length=3, description="Currency of the RFM monetary value."
    )
    activation_sweep_s: float = Field(
        60.0,
        gt=0,
        description="Seconds between looks at the customers whose audience time window turned.",
    )
    rfm_refresh_s: float = Field(
        3600.0,
        gt=0,
        description="Seconds between RFM bins computed anew from every stored profile (and "
        "every customer's time- and RFM-based audiences judged again).",
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address the worker's and file connector's probes bind to."
    )
    metrics_port: int = Field(
        0,
        ge=0,
        description="Port of the /metrics, /health/live and /health/ready endpoints of the worker "
        "and the file connector (0: off; the collector and the API serve them on their own port).",
    )
    stack_dir: Path = Field(Path(".stack"), description="Data and logs of the local stack.")
    stack_lib_dir: Path = Field(
        Path("stack/lib"), description="Jars fetched by `make setup` (Kafka, Apicurio)."
    )
    kafka_port: int = Field(9092, description="Local broker's client port (127.0.0.1).")
    controller_port: int = Field(9093, description="Local KRaft controller port (127.0.0.1).")
    secure_port: int = Field(
        9094, description="Local broker's SASL_SSL port (`make up SECURE=1`), on localhost."
    )
    registry_port: int = Field(8081, description="Local schema registry port (127.0.0.1).")
    kafka_heap: str = Field("512m", description="Max heap of the local broker JVM.")
    registry_heap: str = Field("384m", description="Max heap of the local registry JVM.")
    ready_timeout_s: float = Field(90.0, gt=0, description="Seconds to wait for the stack.")

    def vault_token_value(self) -> str:
        token = self.vault_token.get_secret_value()
        if not token:
            path = self.stack_dir / "vault" / "token"
            token = path.read_text().strip() if path.exists() else ""
        return token

    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            bootstrap_servers=self.bootstrap_servers,
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password.get_secret_value(),
            ca_file=self.kafka_ssl_ca_file,
            cert_file=self.kafka_ssl_cert_file,
            key_file=self.kafka_ssl_key_file,
        )

    def registry_access(self) -> RegistryAccess:
        return RegistryAccess(
            url=self.schema_registry_url,
            username=self.schema_registry_username,
            password=self.schema_registry_password.get_secret_value(),
            token=self.schema_registry_token.get_secret_value(),
            ca_file=self.schema_registry_ca_file,
        )

    def secrets(self) -> list[str]:
        """Values no log line may contain (see pipeline.redaction)."""
        found = [
            self.kafka_sasl_password.get_secret_value(),
            self.schema_registry_password.get_secret_value(),
            self.schema_registry_token.get_secret_value(),
        ]
        return [s for s in found + list(self.write_keys) if s]

    def limits(self) -> Limits:
        return Limits(
            max_record_bytes=self.max_record_bytes,
            max_identifiers=self.max_identifiers,
            max_identifier_bytes=self.max_identifier_bytes,
            max_trait_bytes=self.max_trait_bytes,
            max_properties=self.max_properties,
            max_property_bytes=self.max_property_bytes,
        )

    def stages(self) -> frozenset[str]:
        return frozenset(self.worker_stages.split(","))

    def intake_policy(self) -> IntakePolicy:
        return IntakePolicy(
            limits=self.limits(),
            max_event_age=timedelta(days=self.max_event_age_days),
            max_future_skew=timedelta(seconds=self.max_clock_skew_s),
        )


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``OMNISTITCH_*`` variables no setting reads (a typo would otherwise go unnoticed)."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    known.add(f"{ENV_PREFIX}SCHEMAS_DIR")  # read by pipeline.contract.schemas
    return sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )
