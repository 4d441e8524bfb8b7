"""ChannelEvents from JSON lines, fast: msgspec's typed decoder, pydantic's model as the judge.

pydantic's ``ChannelEvent.model_validate_json`` costs ~30 µs per event on this machine, more than
the whole stitching engine may spend per event at replay's target. msgspec decodes the same
shape with the same strictness at a few µs: unknown fields are refused (the contract forbids
them), every type must match exactly (no coercion of "true" to a bool or 5 to a string), a
namespace must not be empty. Timestamps then get the contract's normalisation (UTC,
milliseconds; a timestamp without a zone is UTC) and an unknown channel reads as ``unknown``,
as the model's validators do, and the event is built without validating it twice
(``ChannelEvent.trusted``).

Whatever msgspec refuses goes to pydantic, which decides: it accepts what its lax mode allows
(e.g. "true" for a bool, a date without a time) and words the rejection otherwise. So the fast
path can only accept less, never more or differently, than the model; a property-based test
(tests/unit/pipeline/contract/test_event_json.py) holds it to that.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from pipeline.contract.models import ChannelEvent, Traits, to_millis


class _Identifier(msgspec.Struct, forbid_unknown_fields=True):
    namespace: Annotated[str, msgspec.Meta(min_length=1)]
    value: str


# The contract's traits, every one an optional string: derived from the model, so the two
# cannot drift apart.
_Traits = msgspec.defstruct(
    "_Traits",
    [(name, str | None, None) for name in Traits.model_fields],
    forbid_unknown_fields=True,
)


class _Event(msgspec.Struct, forbid_unknown_fields=True):
    event_id: str
    event_type: str
    channel: str
    source: str
    occurred_at: datetime
    received_at: datetime | None = None
    identifiers: list[_Identifier] = []
    traits: _Traits | None = None  # type: ignore[valid-type]
    properties: dict[str, str] = {}
    consent: dict[str, bool] | None = None
    sealed: None = None  # a sealed event (base64 in JSON) takes pydantic's path


_DECODER = msgspec.json.Decoder(_Event)
_TRAIT_FIELDS = _Traits.__struct_fields__


def fast_event(line: str | bytes) -> ChannelEvent | None:
    """The event of a JSON line, or None when the fast path cannot tell (the caller asks
    pydantic: ``ChannelEvent.model_validate_json``)."""
    try:
        decoded = _DECODER.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    traits = decoded.traits
    if traits is None:
        # "traits": null is not valid for the model (it has a default, not a null).
        if b'"traits"' in (line if isinstance(line, bytes) else line.encode()):
            return None
        trait_values: dict[str, Any] = {}
    else:
        trait_values = {name: getattr(traits, name) for name in _TRAIT_FIELDS}
    return ChannelEvent.trusted(
        {
            "event_id": decoded.event_id,
            "event_type": decoded.event_type,
            "channel": decoded.channel,
            "source": decoded.source,
            "occurred_at": to_millis(decoded.occurred_at),
            "received_at": None if decoded.received_at is None else to_millis(decoded.received_at),
            "identifiers": [
                {"namespace": i.namespace, "value": i.value} for i in decoded.identifiers
            ],
            "traits": trait_values,
            "properties": decoded.properties,
            "consent": decoded.consent,
            "sealed": None,
        }
    )
