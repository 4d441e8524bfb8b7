"""Internal topics hold what a stage handed the next one (events with their identifiers and
traits, opened by intake): once the next stage has handled a record and its state is safe in
the changelog, the record is deleted (Kafka DeleteRecords moves the partition's start offset,
as Kafka Streams does with its repartition topics), so that no personal data lingers there
beyond ``OMNISTITCH_INTERNAL_PURGE_INTERVAL_S``.

Safe against restarts: a stage records in its table the last offset it handled per input
partition and reads back any gap (pipeline.stream.app); only offsets below a handled one are
deleted, and a consumer whose committed offset fell below the start offset resumes there.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pipeline.stream.transport import KafkaSecurity, kafka_conf

log = logging.getLogger("omnistitch.purging")


class Purger:
    def __init__(self, kafka: str | KafkaSecurity, timeout_s: float = 30.0) -> None:
        self.kafka = kafka
        self.timeout_s = timeout_s
        self.lock = threading.Lock()
        self.handled: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        self.purged: dict[tuple[str, int], int] = {}
        self._admin: Any = None

    def mark(self, topic: str, partition: int, offset: int) -> None:
        """The record at ``offset`` was handled and its state is in the changelog."""
        with self.lock:
            where = (topic, partition)
            self.handled[where] = max(self.handled.get(where, 0), offset + 1)

    def purge(self) -> int:
        """Delete what was handled since the last call; returns the partitions cut. Errors are
        logged and tried again next time (the records stay until then)."""
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import AdminClient

        with self.lock:
            due = {w: o for w, o in self.handled.items() if o > self.purged.get(w, 0)}
        if not due:
            return 0
        if self._admin is None:
            self._admin = AdminClient(kafka_conf(self.kafka))
        cut = [TopicPartition(t, p, o) for (t, p), o in sorted(due.items())]
        futures = self._admin.delete_records(cut, request_timeout=self.timeout_s)
        done = 0
        for tp, future in futures.items():
            try:
                future.result(timeout=self.timeout_s)
            except Exception as exc:
                log.warning(
                    "purge of %s/%d failed (%s); tried again later",
                    tp.topic,
                    tp.partition,
                    type(exc).__name__,
                )
                continue
            with self.lock:
                self.purged[(tp.topic, tp.partition)] = tp.offset
            done += 1
        return done

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end of each partition handled so far (for the metrics)."""
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import AdminClient, OffsetSpec

        with self.lock:
            handled = dict(self.handled)
        if not handled:
            return {}
        if self._admin is None:
            self._admin = AdminClient(kafka_conf(self.kafka))
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        wanted = {TopicPartition(t, p): latest for (t, p) in handled}
        found = {}
        for tp, future in self._admin.list_offsets(wanted, request_timeout=self.timeout_s).items():
            try:
                end = future.result(timeout=self.timeout_s).offset
            except Exception as exc:  # the next call asks again
                log.debug(
                    "end offset of %s/%d unknown: %s", tp.topic, tp.partition, type(exc).__name__
                )
                continue
            found[(tp.topic, tp.partition)] = max(0, end - handled[(tp.topic, tp.partition)])
        return found
