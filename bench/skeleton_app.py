"""The floor of `make bench`: the worker's three faust stages with their Kafka work and no
stitching logic, to show what the topology alone costs next to the pass-through.

    events ──intake: decode, produce──▶ accepted (1 partition) ──link: decode, 1 table write,
    produce──▶ customer-ops (key = customer id) ──profile: 1 table write, produce──▶ profiles,
    journeys

Every stage does the least the design needs per event (the worker does more: several graph
keys per event, identity changes, folds): intake decodes the Avro event through the registry
and forwards its bytes; link decodes it again, records its event id in a one-partition RocksDB
table (the idempotency key every event needs) and routes it by a customer id (a hash of the
event's first identifier); profile stores one value per customer in a partitioned RocksDB
table and produces one profile and one journey record (the event's bytes). Same OMNISTITCH_*
settings and topics as the worker.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import faust

from pipeline.app import new_app, raw_topic
from pipeline.contract import ChannelEvent
from pipeline.serialization import RegistrySerde
from pipeline.settings import Settings
from pipeline.topics import ACCEPTED, CUSTOMER_OPS, EVENTS, JOURNEYS, PROFILES

STAGES = int(os.environ.get("BENCH_SKELETON_STAGES", "3"))
settings = Settings()
serde = RegistrySerde(settings.schema_registry_url)
prefix = settings.topic_prefix
app = new_app(settings)


events_topic = raw_topic(app, EVENTS.name(prefix))
accepted_topic = raw_topic(app, ACCEPTED.name(prefix), partitions=1)
ops_topic = raw_topic(app, CUSTOMER_OPS.name(prefix), partitions=settings.partitions)
profiles_topic = raw_topic(app, PROFILES.name(prefix))
journeys_topic = raw_topic(app, JOURNEYS.name(prefix))
seen = app.Table("seen", partitions=1)
customers = app.Table("customers", partitions=settings.partitions)


def decode(topic: str, value: bytes) -> ChannelEvent:
    return ChannelEvent.from_avro(serde.decode(topic, value, ChannelEvent))


@app.agent(events_topic, concurrency=1)
async def intake(stream: Any) -> None:
    async for event in stream.events():
        message = event.message
        accepted = decode(message.topic, message.value)
        await accepted_topic.send(key=accepted.event_id.encode(), value=message.value)


@app.agent(accepted_topic, concurrency=1)
async def link(stream: Any) -> None:
    async for event in stream.events():
        message = event.message
        accepted = decode(EVENTS.name(prefix), message.value)
        first = accepted.identifiers[0].value if accepted.identifiers else accepted.event_id
        customer = "cus-" + hashlib.sha256(first.encode()).hexdigest()[:20]
        seen[accepted.event_id] = customer
        if STAGES == 3:
            await ops_topic.send(key=customer.encode(), value=message.value)
            continue
        # The profile stage's write, in the one-partition table (events per customer).
        seen["p|" + customer] = seen.get("p|" + customer, 0) + 1
        await profiles_topic.send(key=customer.encode(), value=message.value)
        await journeys_topic.send(key=customer.encode(), value=message.value)


@app.agent(ops_topic, concurrency=1)
async def profile(stream: Any) -> None:
    async for event in stream.events():
        message = event.message
        customer = message.key.decode()
        customers[customer] = customers.get(customer, 0) + 1
        await profiles_topic.send(key=message.key, value=message.value)
        await journeys_topic.send(key=message.key, value=message.value)


if __name__ == "__main__":
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
