"""What a faust stage reports to the metrics after each batch (pipeline.metrics): records in
and out per topic, batch size, time to acknowledged outputs, identity changes by type, lag."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pipeline import metrics
from pipeline.contract.models import IdentityChange
from pipeline.exceptions import DecodeError
from pipeline.stream.delivery import Output
from pipeline.stream.serialization import Serde


class Observed:
    def __init__(self, codec: Serde, changes_topic: str) -> None:
        self.codec = codec
        self.changes_topic = changes_topic

    def batch(self, stage: str, handled: int, outputs: Sequence[Output], seconds: float) -> None:
        metrics.RECORDS_IN.labels(stage).inc(handled)
        metrics.BATCH_SIZE.labels(stage).observe(handled)
        metrics.PROCESSING_SECONDS.labels(stage).observe(seconds)
        for topic, count in Counter(output[0] for output in outputs).items():
            metrics.RECORDS_OUT.labels(stage, topic).inc(count)
        for topic, _key, value, _partition in outputs:
            if topic != self.changes_topic or value is None:
                continue
            try:
                kind = self.codec.decode(topic, value, IdentityChange)["change_type"]
            except DecodeError:
                continue
            metrics.IDENTITY_CHANGES.labels(str(kind)).inc()

    @staticmethod
    def state_size(store: str, folder: Path) -> None:
        metrics.STATE_BYTES.labels(store).set(metrics.folder_bytes(folder))

    @staticmethod
    def lag(stage: str, behind: dict[tuple[str, int], int]) -> None:
        for (topic, partition), count in behind.items():
            metrics.CONSUMER_LAG.labels(stage, topic, str(partition)).set(count)
