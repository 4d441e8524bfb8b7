"""Audiences: definitions as data, evaluated against a profile at a time (pure).

A definition (YAML or JSON; docs/audiences.md) names an audience, optionally the consent purpose
it serves, and a condition. Conditions are small dicts, combined with ``all``, ``any`` and
``not``:

``{"trait": "computed.order_count", "op": "gte", "value": 2}``
    a profile field by its dotted path (``traits.city``, ``computed.preferred_store``,
    ``computed.revenue.EUR``, ``channels``…) compared with ``op``: eq, ne, gt, gte, lt, lte, in
    (the field's value is one of ``value``), contains (the field, a list or map, holds
    ``value``), exists. Numbers held as decimal strings (amounts) compare as numbers.
``{"within_days": 7, "of": "computed.last_touch.web"}`` / ``{"older_than_days": 90, "of": …}``
    a time field relative to the evaluation time (a timer re-evaluates these).
``{"identifier": "email"}``   the profile holds an identifier of that namespace.
``{"consent": "sms"}``        the latest consent statement for the purpose is granted.

An audience bound to a ``purpose`` admits only profiles whose latest consent for that purpose
is granted, whatever its condition says: consent is checked first and is the reason given
when it fails.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pipeline.exceptions import ConfigurationError

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists")
MAX_DEPTH = 8
MAX_CONDITIONS = 64
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MISSING = object()


@dataclass(frozen=True)
class Audience:
    audience_id: str
    condition: dict[str, Any]
    purpose: str | None = None
    description: str = ""

    def time_based(self) -> bool:
        """Whether membership can change with time alone (a timer must re-evaluate it)."""
        return _mentions(self.condition, ("within_days", "older_than_days"))


def _mentions(condition: Any, keys: tuple[str, ...]) -> bool:
    if isinstance(condition, Mapping):
        return any(k in condition for k in keys) or any(
            _mentions(v, keys) for v in condition.values()
        )
    if isinstance(condition, list):
        return any(_mentions(v, keys) for v in condition)
    return False


def parse(definitions: Any) -> list[Audience]:
    """Audiences from their data form: ``{"audiences": [{"id", "condition", "purpose"?,
    "description"?}, …]}``; a ConfigurationError names the first problem."""
    items = definitions.get("audiences") if isinstance(definitions, Mapping) else None
    if not isinstance(items, list):
        raise ConfigurationError("audience definitions: expected {'audiences': [...]}")
    found: list[Audience] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise ConfigurationError("audience definitions: each audience is a mapping")
        audience_id = str(item.get("id", ""))
        if not _ID.match(audience_id):
            raise ConfigurationError(
                f"audience id {audience_id!r}: lower-case letters, digits, - _"
            )
        if audience_id in {a.audience_id for a in found}:
            raise ConfigurationError(f"audience {audience_id}: defined twice")
        condition = item.get("condition")
        counted = _check(condition, audience_id, 0)
        if counted > MAX_CONDITIONS:
            raise ConfigurationError(
                f"audience {audience_id}: more than {MAX_CONDITIONS} conditions"
            )
        purpose = item.get("purpose")
        if purpose is not None and not isinstance(purpose, str):
            raise ConfigurationError(f"audience {audience_id}: purpose must be a string")
        assert isinstance(condition, Mapping)  # _check refused anything else
        found.append(
            Audience(audience_id, dict(condition), purpose, str(item.get("description", "")))
        )
    return found


def _check(condition: Any, audience: str, depth: int) -> int:
    """Validate one condition; returns how many leaf conditions it holds."""
    where = f"audience {audience}"
    if depth > MAX_DEPTH:
        raise ConfigurationError(f"{where}: conditions nested deeper than {MAX_DEPTH}")
    if not isinstance(condition, Mapping) or len(condition) == 0:
        raise ConfigurationError(f"{where}: a condition is a non-empty mapping")
    if "all" in condition or "any" in condition:
        parts = condition.get("all", condition.get("any"))
        if not isinstance(parts, list) or not parts:
            raise ConfigurationError(f"{where}: all/any take a non-empty list")
        return sum(_check(part, audience, depth + 1) for part in parts)
    if "not" in condition:
        return _check(condition["not"], audience, depth + 1)
    if "trait" in condition:
        op = condition.get("op", "exists")
        if op not in OPS:
            raise ConfigurationError(f"{where}: unknown op {op!r} (one of {', '.join(OPS)})")
        if op != "exists" and "value" not in condition:
            raise ConfigurationError(f"{where}: op {op} needs a value")
        if op == "in" and not isinstance(condition["value"], list):
            raise ConfigurationError(f"{where}: op in needs a list")
        return 1
    if "within_days" in condition or "older_than_days" in condition:
        days = condition.get("within_days", condition.get("older_than_days"))
        if (
            not isinstance(days, int | float)
            or days < 0
            or not isinstance(condition.get("of"), str)
        ):
            raise ConfigurationError(
                f"{where}: within_days/older_than_days need days >= 0 and 'of'"
            )
        return 1
    if isinstance(condition.get("identifier"), str) or isinstance(condition.get("consent"), str):
        return 1
    raise ConfigurationError(f"{where}: unknown condition {sorted(condition)}")


def _field(profile: Mapping[str, Any], path: str) -> Any:
    value: Any = profile
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        return Decimal(str(value)) if isinstance(value, int | float | str | Decimal) else None
    except InvalidOperation:
        return None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _compare(value: Any, op: str, wanted: Any) -> bool:
    if op == "exists":
        return value is not _MISSING and value is not None and value != [] and value != {}
    if value is _MISSING or value is None:
        return op == "ne"
    if op == "in":
        return value in wanted
    if op == "contains":
        return isinstance(value, list | dict | str) and wanted in value
    if op in ("eq", "ne"):
        a, b = _number(value), _number(wanted)
        same = a == b if a is not None and b is not None else value == wanted
        return same if op == "eq" else not same
    a, b = _number(value), _number(wanted)
    if a is None or b is None:
        return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def holds(condition: Mapping[str, Any], profile: Mapping[str, Any], now: datetime) -> bool:
    """Whether the condition holds for the profile (its JSON form, opened) at ``now``."""
    if "all" in condition:
        return all(holds(part, profile, now) for part in condition["all"])
    if "any" in condition:
        return any(holds(part, profile, now) for part in condition["any"])
    if "not" in condition:
        return not holds(condition["not"], profile, now)
    if "trait" in condition:
        value = _field(profile, condition["trait"])
        return _compare(value, condition.get("op", "exists"), condition.get("value"))
    if "within_days" in condition or "older_than_days" in condition:
        when = _time(_field(profile, condition["of"]))
        if when is None:
            return False
        if "within_days" in condition:
            return now - when <= timedelta(days=condition["within_days"])
        return now - when > timedelta(days=condition["older_than_days"])
    if "identifier" in condition:
        return bool((profile.get("identifiers") or {}).get(condition["identifier"]))
    return consented(profile, condition["consent"])


def next_change(condition: Any, profile: Mapping[str, Any], now: datetime) -> datetime | None:
    """The first moment after ``now`` at which a time window of the condition turns for this
    profile as it is (a ``within_days`` ends, an ``older_than_days`` begins): before it, time
    alone changes nothing, so a timer need not look at the profile again until then. None:
    never (no time window, or none ahead)."""
    found: list[datetime] = []

    def visit(part: Any) -> None:
        if isinstance(part, list):
            for item in part:
                visit(item)
        elif isinstance(part, Mapping):
            days = part.get("within_days", part.get("older_than_days"))
            if days is not None and "of" in part:
                when = _time(_field(profile, part["of"]))
                # within_days holds up to when + days (inclusive), older_than_days after it.
                turn = None if when is None else when + timedelta(days=days, milliseconds=1)
                if turn is not None and turn > now:
                    found.append(turn)
            for key in ("all", "any", "not"):
                if key in part:
                    visit(part[key])

    visit(condition)
    return min(found, default=None)


def consented(profile: Mapping[str, Any], purpose: str) -> bool:
    """The latest consent statement for the purpose is a grant."""
    return (profile.get("consent") or {}).get(purpose) is True


@dataclass(frozen=True)
class Verdict:
    member: bool
    reason: str  # why (no personal data: the audience's own terms)


def evaluate(audience: Audience, profile: Mapping[str, Any], now: datetime) -> Verdict:
    """Whether the profile belongs to the audience at ``now``, and why (not)."""
    if audience.purpose is not None and not consented(profile, audience.purpose):
        return Verdict(False, f"no granted consent for {audience.purpose}")
    if holds(audience.condition, profile, now):
        return Verdict(True, "meets the audience's conditions")
    return Verdict(False, "does not meet the audience's conditions")


def changes(
    audiences: list[Audience],
    profile: Mapping[str, Any] | None,
    current: frozenset[str],
    now: datetime,
) -> tuple[frozenset[str], list[tuple[str, bool, str]]]:
    """The pure step of the activation stage: a profile (None: erased or merged away, it
    leaves every audience) and the audiences it is in now → (its new memberships,
    [(audience id, entered?, reason)] for each change)."""
    found: set[str] = set()
    moves: list[tuple[str, bool, str]] = []
    for audience in audiences:
        if profile is None:
            verdict = Verdict(False, "the customer no longer exists (erased or merged)")
        else:
            verdict = evaluate(audience, profile, now)
        if verdict.member:
            found.add(audience.audience_id)
        if verdict.member != (audience.audience_id in current):
            moves.append((audience.audience_id, verdict.member, verdict.reason))
    known = {a.audience_id for a in audiences}
    for gone in sorted(current - known):  # a definition removed: its members leave
        moves.append((gone, False, "the audience was removed"))
    return frozenset(found), moves
