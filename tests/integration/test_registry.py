"""Confluent wire format against the real schema registry of the stack."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from pipeline.contract import schemas
from pipeline.contract.models import ChannelEvent, ContractModel
from pipeline.contract.wire import encode_confluent
from pipeline.stream.serialization import RegistrySerde, subject
from pipeline.stream.topics import ALL_TOPICS
from tests.factories import make_change, make_event, make_journey, make_profile, make_rich_event
from tests.integration.conftest import KafkaEndpoints

pytestmark = pytest.mark.integration


def test_register_sets_backward_compatibility_for_every_value_schema(
    kafka: KafkaEndpoints, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("reg") + "."
    serde = RegistrySerde(kafka.registry_url)
    registered = serde.register(prefix)
    expected = {subject(s.name(prefix)) for s in ALL_TOPICS if s.value_schema}
    assert set(registered) == expected
    for name in expected:
        assert serde.client.get_compatibility(name) == "BACKWARD"
    assert serde.register(prefix) == registered  # idempotent: same ids


@pytest.mark.parametrize(
    "record",
    [make_event(), make_rich_event(), make_profile(), make_change(), make_journey()],
    ids=lambda r: type(r).__name__,
)
def test_every_schema_round_trips_through_the_registry(
    kafka: KafkaEndpoints, unique_name: Callable[[str], str], record: ContractModel
) -> None:
    topic = unique_name("rt")
    serde = RegistrySerde(kafka.registry_url)
    data = serde.encode(topic, record)
    assert data[0] == 0
    assert type(record).from_avro(serde.decode(topic, data, type(record))) == record


def test_registry_accepts_an_optional_field_and_refuses_a_required_one(
    kafka: KafkaEndpoints, unique_name: Callable[[str], str]
) -> None:
    client = SchemaRegistryClient({"url": kafka.registry_url})
    name = subject(unique_name("evo"))
    v1 = schemas.load(schemas.CHANNEL_EVENT)
    client.set_compatibility(name, "BACKWARD")
    client.register_schema(name, Schema(json.dumps(v1), "AVRO"))

    optional = copy.deepcopy(v1)
    optional["fields"].append(
        {"name": "session_id", "type": ["null", "string"], "default": None, "doc": "Session."}
    )
    assert client.test_compatibility(name, Schema(json.dumps(optional), "AVRO"))

    required = copy.deepcopy(v1)
    required["fields"].append({"name": "tenant", "type": "string", "doc": "Tenant."})
    assert not client.test_compatibility(name, Schema(json.dumps(required), "AVRO"))
    with pytest.raises(SchemaRegistryError):
        client.register_schema(name, Schema(json.dumps(required), "AVRO"))

    # Records written with v2 (optional field) are read by the v1 reader, through the registry.
    topic = name[: -len("-value")]
    v2_id = client.register_schema(name, Schema(json.dumps(optional), "AVRO"))
    data = encode_confluent(
        v2_id, fastavro.parse_schema(optional), {**make_rich_event().to_avro(), "session_id": "s"}
    )
    decoded = RegistrySerde(kafka.registry_url).decode(topic, data, ChannelEvent)
    assert "session_id" not in decoded


def test_workers_starting_at_once_register_the_same_schemas(
    kafka: KafkaEndpoints, unique_name: Callable[[str], str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    prefix = unique_name("race") + "."
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: RegistrySerde(kafka.registry_url).register(prefix), range(4))
        )
    assert all(result == results[0] for result in results)
