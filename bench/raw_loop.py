"""The practical limit of `make bench`: a plain confluent-kafka loop doing what the pass-through
agent does — consume ChannelEvents in batches, decode them through the registry into the
contract's model, produce the same bytes to another topic, flush and commit per batch
(at-least-once) — without faust. Configured by the same OMNISTITCH_* settings as the worker."""

from __future__ import annotations

import os
import signal

from confluent_kafka import Consumer, Producer

from pipeline.contract.models import ChannelEvent
from pipeline.settings import Settings
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import EVENTS

BATCH = 1000


def main() -> None:
    settings = Settings()
    serde = RegistrySerde(settings.schema_registry_url)
    kafka = settings.kafka_security().librdkafka()
    source = EVENTS.name(settings.topic_prefix)
    sink = os.environ["BENCH_PASSTHROUGH_OUTPUT"]
    consumer = Consumer(
        {
            **kafka,
            "group.id": settings.app_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({**kafka, "linger.ms": 5, "enable.idempotence": True})
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    consumer.subscribe([source])
    try:
        while running[0]:
            batch = [m for m in consumer.consume(BATCH, 0.5) if not m.error()]
            for message in batch:
                value = message.value()
                assert value is not None
                ChannelEvent.from_avro(serde.decode(source, value, ChannelEvent))
                producer.produce(sink, key=message.key(), value=value)
                producer.poll(0)
            if batch:
                producer.flush()
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
