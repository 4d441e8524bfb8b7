"""Sending a batch's outputs with confluent-kafka, from the faust worker (issue #11).

faust's producer pays a coroutine round trip per record; a batch of the profile stage sends
hundreds (journeys, profiles, operation batches). ``Sender`` hands them to a librdkafka producer
(idempotent, acks=all, Kafka's murmur2 partitioner like every keyed record of the project) and
waits, off the event loop, until every one is acknowledged. The stage's stream moves on (and
its offset becomes committable) only after that: at least once.

A record that cannot be delivered is not the batch's fault (a broker away, a partition
leader moving): the outputs are sent again from the first one not delivered, in order, with a
growing pause, until they are. Sending again may repeat records; consumers are idempotent
(profiles are compacted latest-state records, journeys and changes carry ids).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pipeline.settings import Settings

log = logging.getLogger("omnistitch.delivery")

RETRY_MAX_S = 30.0

# (topic, key, value, partition): one record to send; partition None: by key.
Output = tuple[str, bytes | None, bytes | None, int | None]


class Sender:
    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        self.timeout_s = settings.delivery_timeout_s
        self.producer = Producer(
            {
                **settings.kafka_security().librdkafka(),
                "client.id": f"{settings.app_id}-stages",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "compression.type": "lz4",
                "partitioner": "murmur2_random",
            }
        )

    def _send_all(self, outputs: list[Output], offsets: dict[tuple[str, int], int]) -> int:
        """Produce and flush; the index of the first output not delivered (len when all were).
        ``offsets`` gets the last offset delivered per topic and partition."""
        failed: list[int] = []

        def delivered(index: int) -> Any:
            def callback(error: Any, message: Any) -> None:
                if error is not None:
                    failed.append(index)
                    return
                where = (message.topic(), message.partition())
                offsets[where] = max(offsets.get(where, -1), message.offset())

            return callback

        for index, (topic, key, value, partition) in enumerate(outputs):
            while True:
                try:
                    if partition is None:
                        self.producer.produce(topic, value, key, on_delivery=delivered(index))
                    else:
                        self.producer.produce(
                            topic, value, key, partition=partition, on_delivery=delivered(index)
                        )
                    break
                except BufferError:  # the local queue is full: let it drain
                    self.producer.poll(0.1)
        remaining = self.producer.flush(self.timeout_s)
        if remaining:
            return 0 if not failed else min(failed)
        return min(failed) if failed else len(outputs)

    async def send(self, outputs: list[Output]) -> dict[tuple[str, int], int]:
        """Every output delivered, in order (see the module doc); the last offset written per
        topic and partition."""
        loop = asyncio.get_running_loop()
        delay = 0.5
        offsets: dict[tuple[str, int], int] = {}
        while outputs:
            done = await loop.run_in_executor(None, self._send_all, outputs, offsets)
            if done == len(outputs):
                return offsets
            log.warning(
                "%d of %d outputs not delivered; sending them again in %.1fs",
                len(outputs) - done,
                len(outputs),
                delay,
            )
            outputs = outputs[done:]
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        return offsets

    def close(self) -> None:
        self.producer.flush(self.timeout_s)
