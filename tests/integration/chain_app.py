"""A small faust-streaming app for the whole-chain test, run as a real worker process.

It consumes Confluent-framed Avro records (``{"customer": str, "amount": int}``) from
CHAIN_INPUT, keeps a running total per customer in a RocksDB (rocksdict) table, and after each
update emits ``"<customer>=<total>"`` to CHAIN_OUTPUT. Configured by environment variables so the
test can start it, stop it and start it again with another data directory.
"""

from __future__ import annotations

import os
from typing import Any

import faust
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pipeline.stream import durability

durability.install()  # as in the project's worker: table writes reach Kafka before commits
ENV = os.environ
INPUT = ENV["CHAIN_INPUT"]
OUTPUT = ENV["CHAIN_OUTPUT"]

app = faust.App(
    ENV["CHAIN_APP_ID"],
    broker=f"kafka://{ENV['CHAIN_BOOTSTRAP']}",
    store="rocksdb://",
    datadir=ENV["CHAIN_DATADIR"],
    topic_partitions=int(ENV["CHAIN_PARTITIONS"]),
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    broker_commit_every=1,
)
source = app.topic(INPUT, key_type=bytes, value_type=bytes, value_serializer="raw")
sink = app.topic(OUTPUT, key_type=bytes, value_type=bytes, value_serializer="raw")
totals = app.Table("totals", default=int, partitions=int(ENV["CHAIN_PARTITIONS"]))

_decode = AvroDeserializer(SchemaRegistryClient({"url": ENV["CHAIN_REGISTRY"]}))


@app.agent(source, concurrency=1)
async def accumulate(stream: Any) -> None:
    async for raw in stream:
        record = _decode(raw, SerializationContext(INPUT, MessageField.VALUE))
        customer = record["customer"]
        totals[customer] += record["amount"]
        await sink.send(key=customer.encode(), value=f"{customer}={totals[customer]}".encode())


if __name__ == "__main__":
    app.main()
