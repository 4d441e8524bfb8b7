"""The Avro schemas of the public contract: loading, registration, compatibility, agreement.

Schemas live in ``schemas/`` as one named type per file (``<namespace>.<Name>.avsc``); fastavro
resolves references between files. The registry receives each topic's value schema fully
expanded, so no schema references are needed on the wire.
"""

from __future__ import annotations

import enum
import json
import os
import types
import typing
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import fastavro.schema
from pydantic import BaseModel

from pipeline.exceptions import SchemaError

NAMESPACE = "io.omnistitch"
CHANNEL_EVENT = f"{NAMESPACE}.ChannelEvent"
CUSTOMER_PROFILE = f"{NAMESPACE}.CustomerProfile"
IDENTITY_CHANGE = f"{NAMESPACE}.IdentityChange"
JOURNEY_EVENT = f"{NAMESPACE}.JourneyEvent"
IDENTITY_OPERATION = f"{NAMESPACE}.IdentityOperation"
OPERATION_RESULT = f"{NAMESPACE}.OperationResult"
AUDIENCE_CHANGE = f"{NAMESPACE}.AudienceChange"
AUDIENCE_MEMBERSHIP = f"{NAMESPACE}.AudienceMembership"


def schemas_dir() -> Path:
    """``OMNISTITCH_SCHEMAS_DIR`` or the repository's ``schemas/``."""
    configured = os.environ.get("OMNISTITCH_SCHEMAS_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "schemas"


def schema_names(directory: Path | None = None) -> list[str]:
    """Full names of every schema file in the directory."""
    return sorted(
        path.name[: -len(".avsc")] for path in (directory or schemas_dir()).glob("*.avsc")
    )


@cache
def _load(directory: Path, full_name: str) -> dict[str, Any]:
    path = directory / f"{full_name}.avsc"
    if not path.exists():
        raise SchemaError(f"no schema file {path}")
    try:
        loaded = fastavro.schema.load_schema(str(path), _write_hint=False)
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise SchemaError(f"{path.name}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise SchemaError(f"{path.name}: a top-level schema must be a named type")
    return loaded


def load(full_name: str, directory: Path | None = None) -> dict[str, Any]:
    """The schema, with every referenced named type expanded in place."""
    return _load((directory or schemas_dir()).resolve(), full_name)


def schema_json(full_name: str, directory: Path | None = None) -> str:
    """The expanded schema as JSON text, as registered with the schema registry."""
    return json.dumps(load(full_name, directory), ensure_ascii=False, sort_keys=True)


@cache
def parsed(full_name: str) -> Any:
    """fastavro's parsed form of the schema, for reading and writing."""
    return fastavro.schema.parse_schema(load(full_name))


# --------------------------------------------------------------------------------------------
# Agreement of a pydantic model with its Avro schema, field by field.
# --------------------------------------------------------------------------------------------

_PRIMITIVES: dict[str, type] = {
    "string": str,
    "long": int,
    "int": int,
    "boolean": bool,
    "double": float,
    "float": float,
    "bytes": bytes,
}


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _named_types(avro: Any, found: dict[str, Any]) -> dict[str, Any]:
    """Every named type (record, enum, fixed) defined anywhere in the schema, by full name."""
    if isinstance(avro, list):
        for branch in avro:
            _named_types(branch, found)
    elif isinstance(avro, dict):
        if avro.get("type") in ("record", "enum", "fixed") and "name" in avro:
            found.setdefault(avro["name"], avro)
        for field in avro.get("fields", []):
            _named_types(field["type"], found)
        for key in ("items", "values"):
            if key in avro:
                _named_types(avro[key], found)
    return found


def _type_differences(path: str, avro: Any, annotation: Any, named: dict[str, Any]) -> list[str]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(avro, list):  # a union: only [null, X] is used in the contract
        branches = [b for b in avro if b != "null"]
        if "null" not in avro or len(branches) != 1:
            return [f"{path}: unsupported union {avro}"]
        if origin not in (typing.Union, types.UnionType) or type(None) not in args:
            return [f"{path}: Avro is nullable, the model is not"]
        inner = [a for a in args if a is not type(None)]
        return _type_differences(path, branches[0], inner[0], named)
    if origin in (typing.Union, types.UnionType):
        return [f"{path}: the model is nullable, Avro is not"]
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return [] if annotation is _PRIMITIVES[avro] else [f"{path}: {avro} vs {annotation}"]
        if avro in named:
            return _type_differences(path, named[avro], annotation, named)
        return [f"{path}: unresolved named type {avro}"]
    kind = avro["type"]
    if avro.get("logicalType") == "timestamp-millis":
        return [] if annotation is datetime else [f"{path}: timestamp-millis vs {annotation}"]
    if kind == "array":
        if origin is not list:
            return [f"{path}: array vs {annotation}"]
        return _type_differences(f"{path}[]", avro["items"], args[0], named)
    if kind == "map":
        if origin is not dict or args[0] is not str:
            return [f"{path}: map vs {annotation}"]
        return _type_differences(f"{path}{{}}", avro["values"], args[1], named)
    if kind == "enum":
        if not (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
            return [f"{path}: enum vs {annotation}"]
        symbols = [member.value for member in annotation]
        if symbols != avro["symbols"]:
            return [f"{path}: enum symbols {avro['symbols']} vs {symbols}"]
        if annotation.__name__ != _short(avro["name"]):
            return [f"{path}: enum {avro['name']} vs {annotation.__name__}"]
        return []
    if kind == "record":
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return [f"{path}: record vs {annotation}"]
        return _model_differences(annotation, avro, path, named)
    if kind in _PRIMITIVES:
        return _type_differences(path, kind, annotation, named)
    return [f"{path}: unsupported Avro type {kind}"]


def model_differences(model: type[BaseModel], schema: dict[str, Any]) -> list[str]:
    """Every way the model and the record schema disagree; empty when they agree.

    Checked: the record's name, field names and order, types (recursively), nullability, which
    fields have defaults, and that every field has a doc.
    """
    return _model_differences(model, schema, "", _named_types(schema, {}))


def _model_differences(
    model: type[BaseModel], schema: dict[str, Any], path: str, named: dict[str, Any]
) -> list[str]:
    prefix = path or _short(schema["name"])
    found: list[str] = []
    if model.__name__ != _short(schema["name"]):
        found.append(f"{prefix}: record {schema['name']} vs model {model.__name__}")
    if not schema.get("doc"):
        found.append(f"{prefix}: record has no doc")
    avro_fields = [field["name"] for field in schema["fields"]]
    model_fields = list(model.model_fields)
    if avro_fields != model_fields:
        found.append(f"{prefix}: fields {avro_fields} vs {model_fields}")
        return found
    hints = typing.get_type_hints(model)
    for field in schema["fields"]:
        name = field["name"]
        where = f"{prefix}.{name}"
        if not field.get("doc"):
            found.append(f"{where}: no doc")
        required = model.model_fields[name].is_required()
        if required == ("default" in field):
            found.append(f"{where}: Avro default={'default' in field}, model required={required}")
        found.extend(_type_differences(where, field["type"], hints[name], named))
    return found


# --------------------------------------------------------------------------------------------
# Evolution: every schema must stay BACKWARD compatible with its last released version.
# --------------------------------------------------------------------------------------------


def released_dir(directory: Path | None = None) -> Path:
    return (directory or schemas_dir()) / "released"


def release(directory: Path | None = None) -> list[Path]:
    """Snapshot every current schema (expanded) as the last released version."""
    source = directory or schemas_dir()
    target = released_dir(source)
    target.mkdir(exist_ok=True)
    written = []
    for name in schema_names(source):
        path = target / f"{name}.avsc"
        path.write_text(json.dumps(load(name, source), indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written


def backward_problems(directory: Path | None = None) -> dict[str, list[str]]:
    """Schema name → why its current version cannot read data of its released version.

    BACKWARD, as the registry enforces it: the current schema (reader) must read everything
    written with the released one (writer). A released schema whose file is gone is a problem too.
    """
    import avro.schema
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    source = directory or schemas_dir()
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    problems: dict[str, list[str]] = {}
    for released in sorted(released_dir(source).glob("*.avsc")):
        name = released.name[: -len(".avsc")]
        if not (source / released.name).exists():
            problems[name] = ["the schema was released but its file is gone"]
            continue
        _load.cache_clear()
        try:
            reader = avro.schema.parse(schema_json(name, source))
            writer = avro.schema.parse(released.read_text())
        except (SchemaError, avro.errors.SchemaParseException) as exc:
            problems[name] = [f"does not parse: {exc}"]
            continue
        result = checker.get_compatibility(reader, writer)
        if result.compatibility is not SchemaCompatibilityType.compatible:
            kinds = ", ".join(sorted(str(kind.value) for kind in result.incompatibilities))
            where = ", ".join(sorted(result.locations)) or "/"
            problems[name] = [f"{kinds} at {where}: {', '.join(sorted(result.messages))}"]
    return problems
