"""Column mappings of the file connector: which column of a POS or CRM export becomes which field
of a ChannelEvent (defaults for ``pos`` and ``crm``, overridable with OMNISTITCH_FILE_MAPPINGS),
and the pure ``map_row`` that applies one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.mapping import (
    TRUTH_PROPERTY,
    MappingFailure,
    birth_date,
    identifiers,
    invalid_fields,
    parse_time,
    text,
    traits,
)
from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.contract.intake import admissible
from pipeline.contract.models import Channel, ChannelEvent
from pipeline.exceptions import MappingConfigError

TRUE_WORDS = frozenset({"1", "true", "yes", "y", "ja", "j", "x"})


FALSE_WORDS = frozenset({"0", "false", "no", "n", "nein"})


class FileMapping(BaseModel):
    """How the columns of one kind of export become a ChannelEvent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    event_type: str
    source: str = Field(description="Source name; '{column}' placeholders are filled per row.")
    occurred_at: str = Field(description="Column with the time of the row.")
    event_id: list[str] = Field(
        description="Columns that identify the row; if one is blank, event_id_fallback; if "
        "one of those is blank too: the file's id and line."
    )
    event_id_fallback: list[str] = Field(default_factory=list)
    identifiers: dict[str, str] = Field(default_factory=dict, description="column → namespace")
    traits: dict[str, str] = Field(default_factory=dict, description="column → trait")
    properties: dict[str, str] = Field(default_factory=dict, description="column → property")
    consent: dict[str, str] = Field(default_factory=dict, description="column → purpose")


DEFAULT_MAPPINGS: dict[str, FileMapping] = {
    "pos": FileMapping(
        channel=Channel.store,
        event_type="purchase",
        source="pos-{store_id}",
        occurred_at="timestamp",
        event_id=["store_id", "receipt_id"],
        identifiers={"loyalty_card": "loyalty_id", "email": "email", "phone": "phone"},
        traits={"first_name": "first_name", "last_name": "last_name", "postal_code": "postal_code"},
        properties={
            "receipt_id": "receipt_id",
            "store_id": "store_id",
            "till_id": "till_id",
            "amount": "amount",
            "currency": "currency",
            "items": "items",
            "payment": "payment",
        },
    ),
    "crm": FileMapping(
        channel=Channel.crm,
        event_type="crm_record_updated",
        source="crm-export",
        occurred_at="updated_at",
        event_id=["customer_id", "updated_at"],
        # Records without a customer id yet (a paper sign-up at the till): the CRM's record id.
        event_id_fallback=["record_id"],
        identifiers={
            "customer_id": "customer_id",
            "email": "email",
            "phone": "phone",
            "loyalty_id": "loyalty_id",
        },
        traits={
            "first_name": "first_name",
            "last_name": "last_name",
            "birth_date": "birth_date",
            "street": "street",
            "house_number": "house_number",
            "postal_code": "postal_code",
            "city": "city",
            "country": "country",
        },
        consent={"consent_email": "email_marketing", "consent_sms": "sms_marketing"},
    ),
}


def load_mappings(overrides_json: str) -> dict[str, FileMapping]:
    """The default mappings, with kinds replaced or added by a JSON object (kind → mapping)."""
    mappings = dict(DEFAULT_MAPPINGS)
    if overrides_json.strip():
        try:
            raw = json.loads(overrides_json)
            if not isinstance(raw, dict):
                raise MappingConfigError("file mappings: a JSON object of kind → mapping")
            for kind, spec in raw.items():
                mappings[kind] = FileMapping.model_validate(spec)
        except (json.JSONDecodeError, ValidationError) as exc:
            raise MappingConfigError(f"file mappings: {exc}") from exc
    return mappings


def _consent(value: Any) -> bool | None:
    word = (text(value) or "").lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def map_row(
    row: Mapping[str, Any],
    mapping: FileMapping,
    *,
    file_id: str,
    line: int,
    received_at: datetime,
) -> ChannelEvent | Rejection:
    """One exported row as a ChannelEvent, or why not (column names only, never values)."""
    try:
        stamp = row.get(mapping.occurred_at)
        if text(stamp) is None:
            raise MappingFailure(f"{mapping.occurred_at}: missing")
        event_id = f"{file_id}:{line}"
        for columns in (mapping.event_id, mapping.event_id_fallback):
            id_parts = [text(row.get(column)) for column in columns]
            if columns and all(id_parts):
                event_id = f"{file_id.split(':')[0]}-" + "-".join(p or "" for p in id_parts)
                break
        values = {trait: row.get(column) for column, trait in mapping.traits.items()}
        if "birth_date" in values:
            values["birth_date"] = birth_date(values["birth_date"])
        properties = {
            name: value
            for column, name in mapping.properties.items()
            if (value := text(row.get(column))) is not None
        }
        truth = text(row.get(TRUTH_PROPERTY))
        if truth:
            properties[TRUTH_PROPERTY] = truth
        consent = {
            purpose: flag
            for column, purpose in mapping.consent.items()
            if (flag := _consent(row.get(column))) is not None
        }
        fill = {k: (text(v) or "unknown") for k, v in row.items() if isinstance(k, str)}
        try:
            source = mapping.source.format_map(_Default(fill))
        except (ValueError, IndexError) as exc:
            raise MappingConfigError(f"source template: {exc}") from exc
        return admissible(
            ChannelEvent(
                event_id=event_id,
                event_type=mapping.event_type,
                channel=mapping.channel,
                source=source,
                occurred_at=parse_time(stamp, mapping.occurred_at),
                received_at=received_at,
                identifiers=identifiers(
                    (namespace, row.get(column))
                    for column, namespace in mapping.identifiers.items()
                ),
                traits=traits(values),
                properties=properties,
                consent=consent or None,
            )
        )
    except MappingFailure as exc:
        return Rejection(Reason.unmappable_record, f"line {line}: {exc}")
    except ValidationError as exc:
        return Rejection(Reason.unmappable_record, f"line {line}: {invalid_fields(exc)}")


class _Default(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "unknown"
