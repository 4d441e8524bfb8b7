"""The baseline of `make bench`: a faust agent that consumes ChannelEvents, decodes them through
the registry and produces the same bytes to another topic: the cost of Faust + Kafka + Avro
without any stitching. Configured by the same OMNISTITCH_* settings as the worker."""

from __future__ import annotations

import os
from typing import Any

import faust

from pipeline.app import broker_urls
from pipeline.contract import ChannelEvent
from pipeline.serialization import RegistrySerde
from pipeline.settings import Settings
from pipeline.topics import EVENTS

settings = Settings()
serde = RegistrySerde(settings.schema_registry_url)
app = faust.App(
    settings.app_id,
    broker=broker_urls(settings.bootstrap_servers),
    datadir=str(settings.data_dir),
    topic_partitions=settings.partitions,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    web_enabled=False,
)
source = app.topic(
    EVENTS.name(settings.topic_prefix),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
sink = app.topic(
    os.environ["BENCH_PASSTHROUGH_OUTPUT"],
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)


@app.agent(source, concurrency=1)
async def passthrough(stream: Any) -> None:
    async for event in stream.events():
        message = event.message
        ChannelEvent.from_avro(serde.decode(message.topic, message.value, ChannelEvent))
        await sink.send(key=message.key, value=message.value)


if __name__ == "__main__":
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
