"""The project's topics, defined once.

Used by ``omnistitch topics create`` (run by ``make up`` and by docker-compose's init service),
by the integration tests (with a unique prefix per test) and by the worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pipeline.exceptions import TopicError
from pipeline.stream.transport import KafkaSecurity, kafka_conf


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its suffix (the name without prefix), partitioning and broker-side config."""

    suffix: str
    doc: str
    key: str
    value_schema: str | None = None
    partitioned: bool = True
    config: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def name(self, prefix: str) -> str:
        return f"{prefix}{self.suffix}"

    def partitions(self, default: int) -> int:
        return default if self.partitioned else 1


_WEEK_MS = str(7 * 24 * 3600 * 1000)

EVENTS = TopicSpec(
    "events.v1",
    doc="ChannelEvents produced by the connectors (input of the stitcher).",
    key="event_id",
    value_schema="io.omnistitch.ChannelEvent",
    config=MappingProxyType({"cleanup.policy": "delete", "retention.ms": _WEEK_MS}),
)
ACCEPTED = TopicSpec(
    "events.accepted.v2",
    doc="Internal: EventBatches of ChannelEvents that passed intake; input of the single-writer "
    "linking stage (1 partition).",
    key="none",
    value_schema="io.omnistitch.internal.EventBatch",
    partitioned=False,
    config=MappingProxyType({"cleanup.policy": "delete", "retention.ms": _WEEK_MS}),
)
CUSTOMER_OPS = TopicSpec(
    "customer-ops.v2",
    doc="Internal: OperationBatches (events routed to customers, folds and absorbs of merges, "
    "possible matches) for the customers of one partition (murmur2 of the customer id).",
    key="none",
    value_schema="io.omnistitch.internal.OperationBatch",
    config=MappingProxyType({"cleanup.policy": "delete", "retention.ms": _WEEK_MS}),
)
PROFILES = TopicSpec(
    "profiles.v1",
    doc="Merged CustomerProfiles; compacted, the latest profile per customer id.",
    key="customer_id",
    value_schema="io.omnistitch.CustomerProfile",
    config=MappingProxyType(
        {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "0",
            "segment.ms": str(3600 * 1000),
        }
    ),
)
IDENTITY_CHANGES = TopicSpec(
    "identity-changes.v1",
    doc="IdentityChanges: created, merged, split, erased, conflict, quarantined.",
    key="customer_id",
    value_schema="io.omnistitch.IdentityChange",
    config=MappingProxyType({"cleanup.policy": "delete", "retention.ms": _WEEK_MS}),
)
JOURNEYS = TopicSpec(
    "journeys.v1",
    doc="JourneyEvents: every accepted event once, keyed by customer id.",
    key="customer_id",
    value_schema="io.omnistitch.JourneyEvent",
    config=MappingProxyType({"cleanup.policy": "delete", "retention.ms": _WEEK_MS}),
)
DEAD_LETTERS = TopicSpec(
    "dead-letters.v1",
    doc="Records that could not be decoded or validated, with original bytes and a reason.",
    key="origin",
    partitioned=False,
    config=MappingProxyType(
        {"cleanup.policy": "delete", "retention.ms": str(30 * 24 * 3600 * 1000)}
    ),
)
OPERATIONS = TopicSpec(
    "operations.v1",
    doc="IdentityOperations: operators' decisions (link, accept, reject), read by intake and "
    "applied by the linking stage in order with events (1 partition: one order).",
    key="operation_id",
    value_schema="io.omnistitch.IdentityOperation",
    partitioned=False,
    config=MappingProxyType(
        {"cleanup.policy": "delete", "retention.ms": str(30 * 24 * 3600 * 1000)}
    ),
)
OPERATION_RESULTS = TopicSpec(
    "operation-results.v1",
    doc="OperationResults: what the linking stage made of each operation (the CLI waits here).",
    key="operation_id",
    value_schema="io.omnistitch.OperationResult",
    partitioned=False,
    config=MappingProxyType({"cleanup.policy": "delete", "retention.ms": _WEEK_MS}),
)

AUDIENCES = TopicSpec(
    "audiences.v1",
    doc="AudienceChanges: a customer entered or left an audience (omnistitch activate).",
    key="customer_id",
    value_schema="io.omnistitch.AudienceChange",
    config=MappingProxyType({"cleanup.policy": "delete", "retention.ms": _WEEK_MS}),
)
MEMBERSHIPS = TopicSpec(
    "memberships.v1",
    doc="AudienceMemberships: each customer's current audiences; compacted.",
    key="customer_id",
    value_schema="io.omnistitch.AudienceMembership",
    config=MappingProxyType(
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": str(3600 * 1000)}
    ),
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    EVENTS,
    ACCEPTED,
    CUSTOMER_OPS,
    PROFILES,
    IDENTITY_CHANGES,
    JOURNEYS,
    DEAD_LETTERS,
    OPERATIONS,
    OPERATION_RESULTS,
    AUDIENCES,
    MEMBERSHIPS,
)


def _config(spec: TopicSpec, dead_letter_retention_ms: int | None) -> dict[str, str]:
    config = dict(spec.config)
    if spec is DEAD_LETTERS and dead_letter_retention_ms is not None:
        config["retention.ms"] = str(dead_letter_retention_ms)
    return config


def purge_before(
    kafka: str | KafkaSecurity, topic: str, before_ms: int | None, timeout_s: float = 30.0
) -> dict[int, int]:
    """Delete the records of ``topic`` written before ``before_ms`` (all when None), for good:
    Kafka's DeleteRecords moves each partition's start offset. Used for dead letters (personal
    data, see pipeline.contract.dead_letters); returns partition → records deleted."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    consumer = Consumer(
        {**kafka_conf(kafka), "group.id": "omnistitch-purge", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        cut: list[TopicPartition] = []
        deleted: dict[int, int] = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout_s
            )
            offset = high
            if before_ms is not None:
                found = consumer.offsets_for_times(
                    [TopicPartition(topic, partition, before_ms)], timeout=timeout_s
                )[0].offset
                offset = high if found < 0 else found
            if offset > low:
                cut.append(TopicPartition(topic, partition, offset))
                deleted[partition] = offset - low
    finally:
        consumer.close()
    if cut:
        admin = AdminClient(kafka_conf(kafka))
        for _tp, future in admin.delete_records(cut, request_timeout=timeout_s).items():
            future.result(timeout=timeout_s)
    return deleted


def topic_names(prefix: str, specs: Iterable[TopicSpec] = ALL_TOPICS) -> dict[str, str]:
    """Suffix → full name, for display and for configuration files."""
    return {spec.suffix: spec.name(prefix) for spec in specs}


def create_topics(
    bootstrap_servers: str | KafkaSecurity,
    prefix: str,
    partitions: int,
    replication_factor: int = 1,
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    timeout_s: float = 30.0,
    dead_letter_retention_ms: int | None = None,
) -> dict[str, str]:
    """Create missing topics; verify existing ones. Returns name → "created" | "exists".

    Idempotent. An existing topic whose partition count or cleanup policy differs from its
    definition raises TopicError rather than being silently accepted.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient(kafka_conf(bootstrap_servers))
    specs = tuple(specs)
    existing = admin.list_topics(timeout=timeout_s).topics
    result: dict[str, str] = {}
    to_create = []
    for spec in specs:
        name = spec.name(prefix)
        want_partitions = spec.partitions(partitions)
        if name in existing:
            have = len(existing[name].partitions)
            if have != want_partitions:
                raise TopicError(
                    f"topic {name} has {have} partitions, its definition says {want_partitions}"
                )
            result[name] = "exists"
        else:
            to_create.append(
                NewTopic(
                    name,
                    num_partitions=want_partitions,
                    replication_factor=replication_factor,
                    config=_config(spec, dead_letter_retention_ms),
                )
            )
    if to_create:
        for name, future in admin.create_topics(to_create, request_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                result[name] = "created"
            except KafkaException as exc:
                if exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    result[name] = "exists"
                else:
                    raise TopicError(f"could not create topic {name}: {exc}") from exc
    # Verify the cleanup policy of every topic, new or old: a compacted profile topic that
    # silently became "delete" would lose customers after retention.
    # A topic created a moment ago may not be known to the broker's metadata yet: retry briefly.
    deadline = time.monotonic() + timeout_s
    pending = list(specs)
    while pending:
        resources = [ConfigResource("topic", spec.name(prefix)) for spec in pending]
        futures = admin.describe_configs(resources, request_timeout=timeout_s)
        retry = []
        for resource, future in futures.items():
            spec = next(s for s in pending if s.name(prefix) == resource.name)
            try:
                have = future.result(timeout=timeout_s)["cleanup.policy"].value
            except KafkaException as exc:
                if exc.args[0].name() == "UNKNOWN_TOPIC_OR_PART" and time.monotonic() < deadline:
                    retry.append(spec)
                    continue
                raise TopicError(f"could not describe topic {resource.name}: {exc}") from exc
            want = spec.config.get("cleanup.policy", "delete")
            if have != want:
                raise TopicError(f"topic {resource.name} has cleanup.policy={have}, want {want}")
        pending = retry
        if pending:
            time.sleep(0.2)
    return result
