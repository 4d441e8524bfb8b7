"""The baseline of `make bench`: a faust agent that consumes ChannelEvents, decodes them through
the registry and produces the same bytes to another topic: the cost of Faust + Kafka + Avro
without any stitching. Configured by the same OMNISTITCH_* settings as the worker."""

from __future__ import annotations

import os
from typing import Any

import faust

from pipeline.contract.models import ChannelEvent
from pipeline.settings import Settings
from pipeline.stream.app import new_app, raw_topic
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import EVENTS

settings = Settings()
serde = RegistrySerde(settings.schema_registry_url)
app = new_app(settings)
source = raw_topic(app, EVENTS.name(settings.topic_prefix))
sink = raw_topic(app, os.environ["BENCH_PASSTHROUGH_OUTPUT"])


@app.agent(source, concurrency=1)
async def passthrough(stream: Any) -> None:
    async for event in stream.events():
        message = event.message
        ChannelEvent.from_avro(serde.decode(message.topic, message.value, ChannelEvent))
        await sink.send(key=message.key, value=message.value)


if __name__ == "__main__":
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
