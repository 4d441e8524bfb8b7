"""Avro on Kafka in the Confluent wire format, with the schema registry.

Writing registers the schema (TopicNameStrategy: subject ``<topic>-value``) once per topic, as
confluent-kafka's AvroSerializer does, and frames fastavro's output itself (no per-record
callbacks).
Reading (pipeline.contract.wire) parses the 5-byte header itself and resolves the writer schema
by id through the registry client, so that every way a record can be broken gets its own reason. A
registry that cannot be reached is not the record's fault: it raises RegistryUnavailableError,
and the caller retries instead of dead-lettering.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable
from typing import Any, Protocol

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from pipeline.contract import schemas
from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.contract.models import ContractModel
from pipeline.contract.wire import MAGIC_BYTE, decode_confluent
from pipeline.exceptions import DecodeError, OmnistitchError, RegistryUnavailableError
from pipeline.stream.topics import ALL_TOPICS, TopicSpec
from pipeline.stream.transport import RegistryAccess

COMPATIBILITY = "BACKWARD"


class Serde(Protocol):
    """How contract records become bytes on a topic and back."""

    def encode(self, topic: str, record: ContractModel) -> bytes: ...

    def decode(self, topic: str, data: bytes, model: type[ContractModel]) -> dict[str, Any]: ...

    def encode_record(self, topic: str, avro_name: str, record: dict[str, Any]) -> bytes: ...

    def decode_record(self, topic: str, data: bytes, avro_name: str) -> dict[str, Any]: ...

    def schema_id(self, topic: str, avro_name: str) -> int: ...

    def decode_body(self, data: bytes, schema_id: int, avro_name: str) -> dict[str, Any]: ...


def subject(topic: str) -> str:
    """TopicNameStrategy."""
    return f"{topic}-value"


class RegistrySerde:
    """Confluent wire format against a Confluent-compatible schema registry."""

    def __init__(self, url: str, client: SchemaRegistryClient | None = None) -> None:
        self.client = client or SchemaRegistryClient({"url": url})
        self._ids: dict[tuple[str, str], bytes] = {}
        self._writers: dict[int, Any] = {}

    @classmethod
    def from_access(cls, access: RegistryAccess) -> RegistrySerde:
        """A serde whose client uses the registry's auth and CA (pipeline.stream.transport)."""
        return cls(access.url, SchemaRegistryClient(access.client_conf()))

    def encode(self, topic: str, record: ContractModel) -> bytes:
        return self.encode_record(topic, record.avro_name, record.to_avro())

    def schema_id(self, topic: str, avro_name: str) -> int:
        """The registry id of the named schema under ``<topic>-value`` (registered on first
        use)."""
        return int.from_bytes(self._header(topic, avro_name)[1:], "big")

    def decode_body(self, data: bytes, schema_id: int, avro_name: str) -> dict[str, Any]:
        """An Avro body without framing, written with the schema of id ``schema_id``."""
        return decode_confluent(
            bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big") + data,
            self.writer_schema,
            schemas.parsed(avro_name),
        )

    def encode_record(self, topic: str, avro_name: str, record: dict[str, Any]) -> bytes:
        """A record of the named schema in the Confluent wire format; the schema is registered
        under ``<topic>-value`` on first use (as confluent-kafka's AvroSerializer does)."""
        out = io.BytesIO()
        out.write(self._header(topic, avro_name))
        fastavro.schemaless_writer(out, schemas.parsed(avro_name), record)
        return out.getvalue()

    def _header(self, topic: str, avro_name: str) -> bytes:
        header = self._ids.get((topic, avro_name))
        if header is None:
            schema = Schema(schemas.schema_json(avro_name), "AVRO")
            try:
                schema_id = self.client.register_schema(subject(topic), schema)
            except SchemaRegistryError as exc:
                if exc.http_status_code >= 500:
                    raise RegistryUnavailableError(
                        f"registry answered {exc.http_status_code}"
                    ) from exc
                raise
            except Exception as exc:  # connection refused, timeout: the registry
                raise RegistryUnavailableError(f"schema registry unreachable: {exc}") from exc
            header = bytes([MAGIC_BYTE]) + int(schema_id).to_bytes(4, "big")
            self._ids[(topic, avro_name)] = header
        return header

    def writer_schema(self, schema_id: int) -> Any:
        cached = self._writers.get(schema_id)
        if cached is not None:
            return cached
        try:
            found = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError(
                    Rejection(
                        Reason.unknown_schema_id,
                        f"schema id {schema_id} is not registered",
                        schema_id,
                    )
                ) from exc
            raise RegistryUnavailableError(f"registry answered {exc.http_status_code}") from exc
        except Exception as exc:  # connection refused, timeout, DNS: the registry, not the record
            raise RegistryUnavailableError(f"schema registry unreachable: {exc}") from exc
        if found.schema_str is None:
            raise DecodeError(
                Rejection(Reason.unknown_schema_id, f"schema id {schema_id} has no text", schema_id)
            )
        kind = (found.schema_type or "AVRO").upper()
        if kind != "AVRO":
            raise DecodeError(
                Rejection(
                    Reason.unsupported_schema_type,
                    f"schema id {schema_id} is a {kind} schema, not Avro",
                    schema_id,
                )
            )
        try:
            parsed = fastavro.parse_schema(json.loads(found.schema_str))
        except Exception as exc:  # not JSON, not a valid Avro schema
            raise DecodeError(
                Rejection(
                    Reason.unsupported_schema_type,
                    f"schema id {schema_id} is not a valid Avro schema ({type(exc).__name__})",
                    schema_id,
                )
            ) from exc
        self._writers[schema_id] = parsed
        return parsed

    def decode_as_written(self, data: bytes) -> dict[str, Any]:
        """A Confluent-framed record read with the schema it was written with (any topic)."""
        return decode_confluent(data, self.writer_schema, None)

    def decode(self, topic: str, data: bytes, model: type[ContractModel]) -> dict[str, Any]:
        return self.decode_record(topic, data, model.avro_name)

    def decode_record(self, topic: str, data: bytes, avro_name: str) -> dict[str, Any]:
        return decode_confluent(data, self.writer_schema, schemas.parsed(avro_name))

    def register(self, prefix: str, specs: Iterable[TopicSpec] = ALL_TOPICS) -> dict[str, int]:
        """Register each topic's value schema (subject ``<topic>-value``, BACKWARD).

        Safe when several workers start at once: a 409 from a concurrent registration is
        answered by checking what the other one registered.
        """
        registered: dict[str, int] = {}
        for spec in specs:
            if spec.value_schema is None:
                continue
            name = subject(spec.name(prefix))
            schema = Schema(schemas.schema_json(spec.value_schema), "AVRO")
            try:
                self._ensure_compatibility(name)
                registered[name] = self._register(name, schema)
            except SchemaRegistryError as exc:
                raise OmnistitchError(f"registering {name}: {exc}") from exc
            except OmnistitchError:
                raise
            except Exception as exc:
                raise RegistryUnavailableError(f"schema registry unreachable: {exc}") from exc
        return registered

    def _ensure_compatibility(self, name: str) -> None:
        try:
            self.client.set_compatibility(name, COMPATIBILITY)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 409:
                raise
            # Set concurrently by another worker: fine if it is the same level.
            have = self.client.get_compatibility(name)
            if have != COMPATIBILITY:
                raise OmnistitchError(
                    f"{name} has compatibility {have}, want {COMPATIBILITY}"
                ) from exc

    def _register(self, name: str, schema: Schema) -> int:
        for attempt in range(5):
            try:
                return int(self.client.register_schema(name, schema))
            except SchemaRegistryError as exc:
                if exc.http_status_code != 409 or attempt == 4:
                    raise
                # A concurrent first registration of the subject: it exists now, look it up.
                try:
                    found = self.client.lookup_schema(name, schema).schema_id
                except SchemaRegistryError:
                    found = None
                if found is not None:
                    return int(found)
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")
