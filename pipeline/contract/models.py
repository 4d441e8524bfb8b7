"""The public event contract as pydantic models: one model per Avro schema in ``schemas/``.

Each model converts both ways: ``to_avro()`` / ``from_avro()`` for the Avro records on Kafka and
``to_json()`` / ``from_json()`` for the JSON-lines files the CLI reads and writes (timestamps as
ISO-8601 strings, otherwise the same field names).
``tests/unit/pipeline/contract/test_contract.py`` proves that every model and its .avsc agree
field by field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from pipeline.contract import schemas


def to_millis(value: datetime) -> datetime:
    """UTC with millisecond precision, as Avro's timestamp-millis stores it.

    A timestamp without a zone is taken as UTC.
    """
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    micro = value.microsecond
    return value.replace(microsecond=micro - micro % 1000) if micro % 1000 else value


_set = object.__setattr__

# A timestamp as Avro's timestamp-millis holds it: UTC, millisecond precision.
Millis = Annotated[datetime, AfterValidator(to_millis)]


class ContractModel(BaseModel):
    """Base of the contract models: strict about unknown fields, Avro and JSON both ways."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_enum_values=False,
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )
    avro_name: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        """The record as fastavro / confluent-kafka write it."""
        return dict(self.model_dump(mode="python"))

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Self:
        return cls.model_validate(record)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=False)

    @classmethod
    def from_json(cls, line: str | bytes) -> Self:
        return cls.model_validate_json(line)

    @classmethod
    def avro_schema(cls) -> dict[str, Any]:
        return schemas.load(cls.avro_name)

    @classmethod
    def from_valid(cls, values: dict[str, Any]) -> Self:
        """An instance from values that are valid already and name every field: what
        ``model_construct`` does, without its per-field loop over aliases and defaults (it
        costs more than the stitching of an event). Checked against validation by
        tests/unit/pipeline/contract/test_contract.py."""
        model = cls.__new__(cls)
        _set(model, "__dict__", values)
        _set(model, "__pydantic_fields_set__", set(values))
        _set(model, "__pydantic_extra__", None)
        _set(model, "__pydantic_private__", None)
        return model


class Channel(StrEnum):
    web = "web"
    app = "app"
    email = "email"
    store = "store"
    call_center = "call_center"
    chat = "chat"
    sms = "sms"
    whatsapp = "whatsapp"
    messenger = "messenger"
    social = "social"
    crm = "crm"
    ecommerce = "ecommerce"
    unknown = "unknown"


class ChangeType(StrEnum):
    created = "created"
    merged = "merged"
    # The member shadows str.split on ChangeType values; the symbol name is the contract's.
    split = "split"  # type: ignore[assignment]
    erased = "erased"
    conflict = "conflict"
    quarantined = "quarantined"
    possible_match = "possible_match"
    other = "other"


class Identifier(ContractModel):
    avro_name: ClassVar[str] = f"{schemas.NAMESPACE}.Identifier"
    namespace: str = Field(min_length=1)
    value: str


class Traits(ContractModel):
    avro_name: ClassVar[str] = f"{schemas.NAMESPACE}.Traits"
    first_name: str | None = None
    last_name: str | None = None
    birth_date: str | None = None
    street: str | None = None
    house_number: str | None = None
    address_line2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None
    email: str | None = None
    phone: str | None = None

    def is_empty(self) -> bool:
        return all(value is None or not value.strip() for value in self.model_dump().values())


_CHANNELS: dict[str, Channel] = {c.value: c for c in Channel}
_NO_TRAITS: dict[str, None] = dict.fromkeys(Traits.model_fields)
_EMPTY_TRAITS = Traits()


class ChannelEvent(ContractModel):
    avro_name: ClassVar[str] = schemas.CHANNEL_EVENT
    event_id: str
    event_type: str
    channel: Channel
    source: str
    occurred_at: Millis
    received_at: Millis | None = None
    identifiers: list[Identifier] = Field(default_factory=list)
    traits: Traits = Field(default_factory=Traits)
    properties: dict[str, str] = Field(default_factory=dict)
    consent: dict[str, bool] | None = None
    # Identifiers, traits and properties encrypted under the event's vault key (pipeline.vault).
    sealed: bytes | None = None

    @field_validator("channel", mode="before")
    @classmethod
    def _unknown_channel(cls, value: Any) -> Any:
        # Like the Avro enum's default: a channel this version does not know reads as unknown.
        if isinstance(value, str) and value not in Channel.__members__:
            return Channel.unknown
        return value

    @classmethod
    def trusted(cls, record: dict[str, Any]) -> ChannelEvent:
        """The event of a record that was validated before (an internal topic, replay's typed
        decoder): built without validating again (pydantic's ``model_construct``; ~10x
        cheaper). ``record`` has the Avro form: every field present, timestamps as UTC
        datetimes with millisecond precision, the channel as its name."""
        traits = record["traits"]
        return cls.from_valid(
            {
                "event_id": record["event_id"],
                "event_type": record["event_type"],
                "channel": _CHANNELS.get(record["channel"], Channel.unknown),
                "source": record["source"],
                "occurred_at": record["occurred_at"],
                "received_at": record["received_at"],
                "identifiers": [
                    Identifier.from_valid({"namespace": i["namespace"], "value": i["value"]})
                    for i in record["identifiers"]
                ],
                "traits": Traits.from_valid({**_NO_TRAITS, **traits}) if traits else _EMPTY_TRAITS,
                "properties": record["properties"],
                "consent": record["consent"],
                "sealed": record.get("sealed"),
            }
        )


class ConsentStatement(ContractModel):
    avro_name: ClassVar[str] = f"{schemas.NAMESPACE}.ConsentStatement"
    granted: bool
    source: str
    stated_at: Millis


class TraitOrigin(ContractModel):
    avro_name: ClassVar[str] = f"{schemas.NAMESPACE}.TraitOrigin"
    source: str
    observed_at: Millis


class ComputedTraits(ContractModel):
    avro_name: ClassVar[str] = f"{schemas.NAMESPACE}.ComputedTraits"
    revenue: dict[str, str] = Field(default_factory=dict)
    revenue_by_channel: dict[str, dict[str, str]] = Field(default_factory=dict)
    order_count: int = 0
    average_order_value: dict[str, str] = Field(default_factory=dict)
    first_order_at: Millis | None = None
    last_order_at: Millis | None = None
    days_since_last_order: int | None = None
    preferred_channel: str | None = None
    preferred_store: str | None = None
    last_touch: dict[str, Millis] = Field(default_factory=dict)
    open_cases: int = 0
    open_case_since: Millis | None = None
    click_and_collect_orders: int = 0
    recently_viewed: list[str] = Field(default_factory=list)
    abandoned_cart: list[str] = Field(default_factory=list)


class CustomerProfile(ContractModel):
    avro_name: ClassVar[str] = schemas.CUSTOMER_PROFILE
    customer_id: str
    identifiers: dict[str, list[str]] = Field(default_factory=dict)
    traits: Traits = Field(default_factory=Traits)
    channels: list[Channel] = Field(default_factory=list)
    first_seen: Millis
    last_seen: Millis
    event_count: int = 0
    order_count: int = 0
    order_totals: dict[str, str] = Field(default_factory=dict)
    consent: dict[str, bool] = Field(default_factory=dict)
    consent_statements: dict[str, ConsentStatement] = Field(default_factory=dict)
    trait_origins: dict[str, TraitOrigin] = Field(default_factory=dict)
    computed: ComputedTraits | None = None
    merged_ids: list[str] = Field(default_factory=list)
    possible_matches: list[str] = Field(default_factory=list)
    version: int = 0
    updated_at: Millis
    # Crypto-shredding (docs/erasure.md): identifiers and traits sealed under ``sealed_key``.
    sealed: bytes | None = None
    sealed_key: str | None = None


class Evidence(ContractModel):
    avro_name: ClassVar[str] = f"{schemas.NAMESPACE}.Evidence"
    event_id: str
    source: str
    occurred_at: Millis
    rule: str
    identifiers: list[Identifier] = Field(default_factory=list)
    score: float | None = None
    details: dict[str, str] = Field(default_factory=dict)


class IdentityChange(ContractModel):
    avro_name: ClassVar[str] = schemas.IDENTITY_CHANGE
    change_id: str
    change_type: ChangeType
    customer_id: str
    old_customer_ids: list[str] = Field(default_factory=list)
    reason: str
    evidence: list[Evidence] = Field(default_factory=list)
    occurred_at: Millis


class JourneyEvent(ContractModel):
    avro_name: ClassVar[str] = schemas.JOURNEY_EVENT
    customer_id: str
    event: ChannelEvent
    sequence_number: int
    previous_channel: Channel | None = None
    channel_switch: bool = False
    time_since_previous_ms: int | None = None
    corrects: str | None = None


class IdentityOperation(ContractModel):
    """An operator's decision (validated by pipeline.engine.operations.Operation.from_json)."""

    avro_name: ClassVar[str] = schemas.IDENTITY_OPERATION
    operation_id: str
    kind: str
    left: str
    right: str
    operator: str
    reason: str = ""
    requested_at: Millis
    # left, right and reason encrypted under the operation's vault key (pipeline.vault).
    sealed: bytes | None = None


class OperationResult(ContractModel):
    avro_name: ClassVar[str] = schemas.OPERATION_RESULT
    operation_id: str
    kind: str
    status: str
    detail: str
    customer_id: str | None = None
    change_ids: list[str] = Field(default_factory=list)
    decided_at: Millis
    # An explain's detail (it names identifiers) sealed under the operation's vault key.
    sealed: bytes | None = None


class AudienceChange(ContractModel):
    avro_name: ClassVar[str] = schemas.AUDIENCE_CHANGE
    change_id: str
    audience_id: str
    customer_id: str
    entered: bool
    reason: str
    purpose: str | None = None
    profile_version: int = -1
    occurred_at: Millis


class AudienceMembership(ContractModel):
    avro_name: ClassVar[str] = schemas.AUDIENCE_MEMBERSHIP
    customer_id: str
    audiences: list[str] = Field(default_factory=list)
    rfm: str | None = None
    updated_at: Millis


CONTRACT_MODELS: tuple[type[ContractModel], ...] = (
    Identifier,
    Traits,
    ChannelEvent,
    CustomerProfile,
    ConsentStatement,
    TraitOrigin,
    ComputedTraits,
    Evidence,
    IdentityChange,
    JourneyEvent,
    IdentityOperation,
    OperationResult,
    AudienceChange,
    AudienceMembership,
)
