"""The mapping vocabulary of the connectors: timestamps, identifiers, traits, properties.

Every connector maps a raw record to a ChannelEvent with these helpers, so that the same raw
value means the same thing whichever channel it came through. All functions are pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pipeline.contract.models import Identifier, Traits

# The generator's ground truth: copied into properties by every mapper, read only by evaluation.
TRUTH_PROPERTY = "truth_person_id"

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")


class MappingFailure(ValueError):
    """A raw record cannot be mapped; the message names fields, never their values."""


def invalid_fields(exc: ValidationError) -> str:
    """Which fields of a ChannelEvent a mapped record got wrong (paths only, no values)."""
    fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors(include_input=False)})
    return f"invalid fields: {', '.join(fields)}"


def snake(name: str) -> str:
    """'Order Completed' → 'order_completed', 'postalCode' → 'postal_code'."""
    return _NON_WORD.sub("_", _CAMEL.sub("_", name.strip())).strip("_").lower()


def parse_time(value: Any, field: str) -> datetime:
    """ISO-8601 (with 'Z'), epoch seconds or epoch milliseconds, as an aware UTC datetime."""
    if isinstance(value, bool):
        raise MappingFailure(f"{field}: not a timestamp")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 10_000_000_000 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise MappingFailure(f"{field}: timestamp out of range") from exc
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isascii() and text.isdigit():  # "²".isdigit() too, but int() refuses it
            return parse_time(int(text), field)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise MappingFailure(f"{field}: not an ISO-8601 timestamp") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise MappingFailure(f"{field}: missing or not a timestamp")


def text(value: Any) -> str | None:
    """A scalar as a trimmed string; None for null, empty, containers."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    result = str(value).strip()
    return result or None


def identifiers(pairs: Iterable[tuple[str, Any]]) -> list[Identifier]:
    """Identifiers from (namespace, raw value) pairs: empty values skipped, duplicates once.

    Normalisation (and junk detection) is the stitcher's job; connectors pass values as sent.
    """
    seen: set[tuple[str, str]] = set()
    out: list[Identifier] = []
    for namespace, raw in pairs:
        value = text(raw)
        if value is None or (namespace, value) in seen:
            continue
        seen.add((namespace, value))
        out.append(Identifier(namespace=namespace, value=value))
    return out


_TRAIT_FIELDS = frozenset(Traits.model_fields)


def traits(values: Mapping[str, Any]) -> Traits:
    """Traits from already-named values (first_name, ...); unknown names are ignored."""
    return Traits(**{k: text(v) for k, v in values.items() if k in _TRAIT_FIELDS and text(v)})


def flat_properties(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested JSON as string properties: {"a": {"b": 1}} → {"a_b": "1"}; lists as JSON text."""
    import json

    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{snake(str(key))}"
        if isinstance(value, dict):
            out.update(flat_properties(value, f"{name}_"))
        elif isinstance(value, list):
            out[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        elif value is not None:
            out[name] = text(value) or ""
    return out


def split_name(full: str | None) -> tuple[str | None, str | None]:
    """'Anna-Lena Müller' → ('Anna-Lena', 'Müller'); 'Müller, Anna' → ('Anna', 'Müller')."""
    if not full or not full.strip():
        return None, None
    if "," in full:
        last, first = (part.strip() for part in full.split(",", 1))
        return first or None, last or None
    parts = full.split()
    if len(parts) == 1:
        return parts[0], None
    return " ".join(parts[:-1]), parts[-1]


_NUMBER_LAST = re.compile(
    r"^(?P<street>.*?\D)\s*(?P<number>\d+\s*[a-zA-Z]?(?:\s*[-/]\s*\d+[a-zA-Z]?)?)$"
)
_NUMBER_FIRST = re.compile(r"^(?P<number>\d+[a-zA-Z]?)\s+(?P<street>\D.*)$")


def split_street(line: str | None) -> tuple[str | None, str | None]:
    """'Hauptstraße 12a' → ('Hauptstraße', '12a'); '221B Baker St' → ('Baker St', '221B')."""
    if not line or not line.strip():
        return None, None
    line = line.strip()
    for pattern in (_NUMBER_LAST, _NUMBER_FIRST):
        found = pattern.match(line)
        if found:
            return found["street"].strip().rstrip(","), found["number"].replace(" ", "")
    return line, None


def birth_date(value: Any) -> str | None:
    """A date of birth as YYYY-MM-DD from ISO dates/datetimes or DD.MM.YYYY; else as given."""
    raw = text(value)
    if raw is None:
        return None
    german = re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", raw)
    if german:
        day, month, year = german.groups()
        return f"{year}-{int(month):02d}-{int(day):02d}"
    if re.match(r"\d{4}-\d{2}-\d{2}", raw):
        return raw[:10]
    return raw
