"""Destinations: where audience changes go, and what of the profile may go with them (pure).

Definitions (YAML or JSON, docs/audiences.md "Destinations"):

    destinations:
      - id: crm-webhook
        url: https://crm.example.com/hooks/omnistitch
        audiences: [online-interest-store-buyers]     # the changes it receives
        fields: [traits.first_name, computed.preferred_store, identifiers.email]
        rate_per_s: 20                                 # requests per second (burst: 2 s worth)
        max_attempts: 6                                # then the change goes to the dead letters
        token_env: OMNISTITCH_DESTINATION_CRM_TOKEN    # bearer token, from the environment
        profile_updates: true                          # also members' changed fields

Only the declared ``fields`` leave, and only with an entry: an exit carries the ids and the
reason, no profile data (the person may have withdrawn consent or been erased).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.exceptions import ConfigurationError

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*(\.[A-Za-z0-9_-]+){0,3}$")
MAX_FIELDS = 50


@dataclass(frozen=True)
class Destination:
    destination_id: str
    url: str
    audiences: frozenset[str]
    fields: tuple[str, ...] = ()
    rate_per_s: float = 10.0
    max_attempts: int = 6
    token_env: str | None = None
    # Also send the members' profile updates: when a declared field of a member changes.
    profile_updates: bool = False


def parse_destinations(definitions: Any) -> list[Destination]:
    items = definitions.get("destinations") if isinstance(definitions, Mapping) else None
    if not isinstance(items, list):
        raise ConfigurationError("destinations: expected {'destinations': [...]}")
    found: list[Destination] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise ConfigurationError("destinations: each destination is a mapping")
        name = str(item.get("id", ""))
        where = f"destination {name!r}"
        if not _ID.match(name) or name in {d.destination_id for d in found}:
            raise ConfigurationError(f"{where}: a unique id of lower-case letters, digits, - _")
        url = str(item.get("url", ""))
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"{where}: url must be http(s)")
        audiences = item.get("audiences")
        if not isinstance(audiences, list) or not audiences:
            raise ConfigurationError(f"{where}: audiences must be a non-empty list")
        fields = item.get("fields", [])
        if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
            raise ConfigurationError(f"{where}: fields must be a list of at most {MAX_FIELDS}")
        for path in fields:
            if not isinstance(path, str) or not _FIELD.match(path):
                raise ConfigurationError(f"{where}: field {path!r} is not a dotted profile path")
        rate, attempts = item.get("rate_per_s", 10.0), item.get("max_attempts", 6)
        if not isinstance(rate, int | float) or rate <= 0:
            raise ConfigurationError(f"{where}: rate_per_s must be > 0")
        if not isinstance(attempts, int) or not 1 <= attempts <= 20:
            raise ConfigurationError(f"{where}: max_attempts must be 1..20")
        updates = item.get("profile_updates", False)
        if not isinstance(updates, bool) or (updates and not fields):
            raise ConfigurationError(f"{where}: profile_updates (true/false) needs fields")
        token_env = item.get("token_env")
        if token_env is not None and not str(token_env).startswith("OMNISTITCH_"):
            raise ConfigurationError(f"{where}: token_env must name an OMNISTITCH_ variable")
        found.append(
            Destination(
                name,
                url,
                frozenset(str(a) for a in audiences),
                tuple(fields),
                float(rate),
                attempts,
                None if token_env is None else str(token_env),
                updates,
            )
        )
    return found


def _select(profile: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = profile
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def selected(profile: Mapping[str, Any] | None, fields: tuple[str, ...]) -> dict[str, Any]:
    """The declared fields of the profile, by their dotted paths (absent ones left out)."""
    if profile is None:
        return {}
    out: dict[str, Any] = {}
    for path in fields:
        present, value = _select(profile, path)
        if present and value is not None:
            out[path] = value
    return out


def payload(
    destination: Destination, change: Mapping[str, Any], profile: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The JSON body for one audience change: the ids, the reason, and the declared profile
    fields with an entry only."""
    entered = bool(change["entered"])
    return {
        "idempotency_key": change["change_id"],
        "destination": destination.destination_id,
        "audience_id": change["audience_id"],
        "customer_id": change["customer_id"],
        "event": "entered" if entered else "exited",
        "reason": change["reason"],
        "purpose": change.get("purpose"),
        "occurred_at": change["occurred_at"],
        "profile": selected(profile, destination.fields) if entered else {},
    }


def update_payload(
    destination: Destination,
    customer: str,
    audiences: list[str],
    fields: dict[str, Any],
    key: str,
    at: str,
) -> dict[str, Any]:
    """A member's profile update: the declared fields as they are now (``profile_updates``)."""
    return {
        "idempotency_key": key,
        "destination": destination.destination_id,
        "audience_ids": audiences,
        "customer_id": customer,
        "event": "updated",
        "occurred_at": at,
        "profile": fields,
    }


def fields_fingerprint(fields: Mapping[str, Any]) -> str:
    body = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


# -- ad platforms ---------------------------------------------------------------------------

_GMAIL = ("gmail.com", "googlemail.com")


def hashed_email(email: str, platform: str) -> str:
    """SHA-256 (hex) of the e-mail address normalised as the platform asks: trimmed and
    lower-cased; for Google, dots before the @ of gmail.com/googlemail.com addresses removed."""
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    if platform == "google" and domain in _GMAIL:
        value = f"{local.replace('.', '')}@{domain}"
    return hashlib.sha256(value.encode()).hexdigest()


def hashed_phone(e164: str, platform: str) -> str:
    """SHA-256 (hex) of a phone number in E.164 (the stitcher's form): Google hashes it with
    the leading +, Meta hashes the digits only (country code included)."""
    value = e164.strip()
    digits = "".join(c for c in value if c.isdigit())
    return hashlib.sha256((f"+{digits}" if platform == "google" else digits).encode()).hexdigest()


PLATFORMS = ("google", "meta")
