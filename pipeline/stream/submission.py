"""Operators' decisions sent to the running worker: publish an IdentityOperation on the
operations topic and wait for its OperationResult (``omnistitch link|review``; the serving API
will call the same function).

The result is awaited from the results topic's end as it was *before* the operation was sent, so
an earlier answer to the same operation id (a retry) is not mistaken for this one. Without an
answer within the timeout the operation still stands on the topic: a worker that starts later
applies it, once (idempotent by operation id).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.contract.models import OperationResult
from pipeline.contract.schemas import IDENTITY_OPERATION
from pipeline.engine.operations import Operation
from pipeline.exceptions import OmnistitchError
from pipeline.settings import Settings
from pipeline.stream.serialization import RegistrySerde, Serde
from pipeline.stream.topics import OPERATION_RESULTS, OPERATIONS
from pipeline.vault.client import VaultClient
from pipeline.vault.sealer import Sealer, opened
from pipeline.vault.sealing import KEY_HEADER, operation_key_id
from pipeline.vault.tags import Tagger


class SubmissionError(OmnistitchError):
    """The operation could not be published."""


@dataclass(frozen=True)
class Answer:
    """The linking stage's result, or None when none came within the timeout."""

    operation: Operation
    result: OperationResult | None


def submit(
    settings: Settings, operation: Operation, timeout_s: float, serde: Serde | None = None
) -> Answer:
    """Publish ``operation`` and wait up to ``timeout_s`` for its result (0: do not wait)."""
    from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

    codec = serde or RegistrySerde.from_access(settings.registry_access())
    kafka = settings.kafka_security().librdkafka()
    prefix = settings.topic_prefix
    results_topic, operations_topic = OPERATION_RESULTS.name(prefix), OPERATIONS.name(prefix)
    key = operation.operation_id.encode()
    consumer = Consumer(
        {**kafka, "group.id": f"{settings.app_id}.operator", "enable.auto.commit": False}
    )
    try:
        if timeout_s > 0:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(results_topic, 0), timeout=10
            )
            consumer.assign([TopicPartition(results_topic, 0, high if high >= 0 else OFFSET_END)])
        record = operation.to_json()
        headers: list[tuple[str, str | bytes | None]] | None = None
        vault = VaultClient.from_settings(settings)
        if vault is not None:  # the identifiers it names leave sealed (pipeline.vault)
            record = Sealer(vault, Tagger.from_settings(settings)).seal_operation(record)
            headers = [(KEY_HEADER, operation_key_id(operation.operation_id))]
        value = codec.encode_record(operations_topic, IDENTITY_OPERATION, record)
        producer = Producer({**kafka, "enable.idempotence": True, "acks": "all"})
        failed: list[str] = []
        producer.produce(
            operations_topic,
            key=key,
            value=value,
            headers=headers,
            on_delivery=lambda error, _m: failed.append(str(error)) if error else None,
        )
        if producer.flush(30) or failed:
            raise SubmissionError(
                f"the operation was not delivered to {operations_topic}: "
                + (", ".join(failed) or "timeout")
            )
        deadline = time.monotonic() + timeout_s
        while timeout_s > 0 and time.monotonic() < deadline:
            message = consumer.poll(min(1.0, max(0.05, deadline - time.monotonic())))
            if message is None or message.error() or message.key() != key:
                continue
            answer = message.value()
            if answer is None:
                continue
            record = codec.decode(results_topic, answer, OperationResult)
            if vault is not None:  # an explain's sealed detail, opened with the operation's key
                record = opened(record, vault)
            return Answer(operation, OperationResult.from_avro(record))
        return Answer(operation, None)
    finally:
        consumer.close()
