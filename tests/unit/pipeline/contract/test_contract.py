"""The contract models and their .avsc files agree, and every record round-trips."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from pydantic import BaseModel, ValidationError

from pipeline.contract import schemas
from pipeline.contract.models import (
    CONTRACT_MODELS,
    Channel,
    ChannelEvent,
    ContractModel,
    CustomerProfile,
    IdentityChange,
    JourneyEvent,
    Traits,
)
from pipeline.stream.batches import EVENT_BATCH, OPERATION_BATCH
from tests.factories import (
    NOW,
    make_change,
    make_event,
    make_journey,
    make_profile,
    make_rich_event,
)


@pytest.mark.parametrize("model", CONTRACT_MODELS, ids=lambda m: m.__name__)
def test_model_and_avsc_agree_field_by_field(model: type[ContractModel]) -> None:
    assert schemas.model_differences(model, model.avro_schema()) == []


def test_every_schema_file_has_a_model() -> None:
    modelled = {model.avro_name for model in CONTRACT_MODELS}
    enums = {"io.omnistitch.Channel"}
    # The worker's internal hops (pipeline.stream.batches) are records of public models, no model.
    internal = {EVENT_BATCH, OPERATION_BATCH}
    assert set(schemas.schema_names()) == modelled | enums | internal


class _Drifted(BaseModel):
    """A model that drifted from Identifier's schema in three ways."""

    namespace: str | None = None  # became nullable
    value: int  # changed type


def test_the_agreement_check_finds_drift() -> None:
    schema = dict(schemas.load("io.omnistitch.Identifier"), name="io.omnistitch._Drifted")
    found = schemas.model_differences(_Drifted, schema)
    assert any("namespace" in f and "nullable" in f for f in found)
    assert any("namespace" in f and "default" in f for f in found)
    assert any("value" in f and "string" in f for f in found)
    renamed = dict(schema, fields=[*schema["fields"], {"name": "x", "type": "string", "doc": "d"}])
    assert any("fields" in f for f in schemas.model_differences(_Drifted, renamed))


def _avro_round_trip(record: ContractModel) -> dict[str, Any]:
    parsed = schemas.parsed(record.avro_name)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, record.to_avro())
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, parsed, parsed)
    assert isinstance(decoded, dict)
    return decoded


EDGE_RECORDS = [
    make_event(),
    make_rich_event(),
    make_event(identifiers=[], traits=Traits(last_name="Zoë O'Brien"), properties={}, consent={}),
    make_event(received_at=None, consent=None, channel=Channel.whatsapp),
    make_event(occurred_at=datetime(1970, 1, 1, tzinfo=UTC)),
    make_profile(),
    make_profile(identifiers={}, channels=[], merged_ids=[], order_totals={}, consent={}),
    make_change(),
    make_change(evidence=[], old_customer_ids=[]),
    make_journey(),
    make_journey(previous_channel=None, time_since_previous_ms=None, channel_switch=False),
]


@pytest.mark.parametrize("record", EDGE_RECORDS, ids=lambda r: type(r).__name__)
def test_avro_round_trip(record: ContractModel) -> None:
    assert type(record).from_avro(_avro_round_trip(record)) == record


@pytest.mark.parametrize("record", EDGE_RECORDS, ids=lambda r: type(r).__name__)
def test_json_round_trip(record: ContractModel) -> None:
    line = record.to_json()
    assert "\n" not in line
    assert type(record).from_json(line) == record


def test_json_form_uses_iso_timestamps_and_the_same_field_names() -> None:
    event = make_rich_event(occurred_at=datetime(2026, 3, 1, 8, 30, 0, 123000, tzinfo=UTC))
    data = json.loads(event.to_json())
    assert data["occurred_at"] == "2026-03-01T08:30:00.123000Z"
    assert list(data) == [f["name"] for f in schemas.load(schemas.CHANNEL_EVENT)["fields"]]
    assert data["traits"]["last_name"] == "Müller-Lüdenscheidt"


def test_timestamps_keep_milliseconds_and_become_utc() -> None:
    cet = datetime(2026, 3, 1, 9, 30, 0, 123456).astimezone()
    event = make_event(occurred_at=cet.replace(tzinfo=None))
    assert event.occurred_at.tzinfo is UTC
    assert event.occurred_at.microsecond == 123000


def test_unknown_channel_reads_as_unknown_like_the_avro_enum_default() -> None:
    event = ChannelEvent.from_json(
        make_event().to_json().replace('"channel":"web"', '"channel":"hologram"')
    )
    assert event.channel is Channel.unknown


def test_unknown_fields_are_refused() -> None:
    data = json.loads(make_event().to_json())
    data["surprise"] = 1
    with pytest.raises(ValidationError):
        ChannelEvent.model_validate(data)


def test_profile_change_and_journey_models_are_distinct_records() -> None:
    assert CustomerProfile.avro_name != IdentityChange.avro_name != JourneyEvent.avro_name
    assert make_journey().event.traits.first_name == "Jürgen"
    assert make_profile().first_seen < NOW - timedelta(days=1)
