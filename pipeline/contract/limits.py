"""Limits on what one event may carry, enforced where data enters (connectors, intake, replay).

Every limit bounds bytes, not only counts, so that everything derived from an accepted event
(the internal messages between stages, the state values the worker writes, the records on the
output topics) stays far below the broker's 1 MiB message size whatever the input. An event
over a limit is refused as a whole with reason ``limit_exceeded``; the detail names the field
and the limit, never the value (it may be personal data).

Worst case of an accepted event (default limits, UTF-8 bytes): identifiers 50 x (64 + 256),
traits 12 x 256, properties 64 x (64 + 1,024), ids and names 4 x 256, consent 32 x 64: about
92 KB; escaped as JSON (a control character becomes six bytes) at most about 550 KB. The
record-size limit applies to the raw record before decoding (Avro) and to the decompressed
value, whatever compression it travelled with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.contract.dead_letters import Reason, Rejection

if TYPE_CHECKING:
    from pipeline.contract.models import ChannelEvent


@dataclass(frozen=True)
class Limits:
    """What one event may hold. Sizes are UTF-8 bytes."""

    max_record_bytes: int = 128 * 1024
    max_identifiers: int = 50
    max_namespace_bytes: int = 64
    max_identifier_bytes: int = 256
    max_trait_bytes: int = 256
    max_properties: int = 64
    max_property_key_bytes: int = 64
    max_property_bytes: int = 1024
    max_consent_purposes: int = 32
    max_text_bytes: int = 256  # event_id, event_type, source, consent purposes

    def check(self, event: ChannelEvent) -> Rejection | None:
        """The first limit the event exceeds, as a Rejection; None when it fits.

        Fast when everything fits (the common case): a string of n characters has at most 4n
        UTF-8 bytes, so fields are only encoded when their length comes near a limit."""
        for name in ("event_id", "event_type", "source"):
            found = _over(getattr(event, name), self.max_text_bytes, name)
            if found:
                return found
        identifiers = event.identifiers
        if len(identifiers) > self.max_identifiers:
            return _refuse(f"identifiers: {len(identifiers)} > {self.max_identifiers}")
        if identifiers and (
            max(len(i.namespace) for i in identifiers) * 4 > self.max_namespace_bytes
            or max(len(i.value) for i in identifiers) * 4 > self.max_identifier_bytes
        ):
            for index, identifier in enumerate(identifiers):
                found = _over(
                    identifier.namespace,
                    self.max_namespace_bytes,
                    f"identifiers.{index}.namespace",
                ) or _over(
                    identifier.value, self.max_identifier_bytes, f"identifiers.{index}.value"
                )
                if found:
                    return found
        traits: dict[str, str | None] = event.traits.__dict__
        if max((len(v) for v in traits.values() if v), default=0) * 4 > self.max_trait_bytes:
            for name, value in traits.items():
                found = _over(value or "", self.max_trait_bytes, f"traits.{name}")
                if found:
                    return found
        properties = event.properties
        if len(properties) > self.max_properties:
            return _refuse(f"properties: {len(properties)} > {self.max_properties}")
        if properties and (
            max(map(len, properties)) * 4 > self.max_property_key_bytes
            or max(map(len, properties.values())) * 4 > self.max_property_bytes
        ):
            for key, value in properties.items():
                found = _over(key, self.max_property_key_bytes, "properties.<key>") or _over(
                    value, self.max_property_bytes, f"properties.{_safe_key(key)}"
                )
                if found:
                    return found
        consent = event.consent or {}
        if len(consent) > self.max_consent_purposes:
            return _refuse(f"consent: {len(consent)} > {self.max_consent_purposes}")
        for purpose in consent:
            found = _over(purpose, self.max_text_bytes, "consent.<purpose>")
            if found:
                return found
        return None


DEFAULT_LIMITS = Limits()


def _safe_key(key: str) -> str:
    """A property key in a detail: keys are names chosen by producers, not personal data,
    but only short plain ones are repeated."""
    return key if key.isascii() and key.replace("_", "").isalnum() and len(key) <= 40 else "<key>"


def _over(value: str, limit: int, field: str) -> Rejection | None:
    # Cheap first: a str of n characters has between n and 4n UTF-8 bytes.
    if len(value) * 4 <= limit:
        return None
    size = len(value.encode("utf-8", "surrogatepass"))
    return _refuse(f"{field}: {size} bytes > {limit}") if size > limit else None


def _refuse(detail: str) -> Rejection:
    return Rejection(Reason.limit_exceeded, detail)
