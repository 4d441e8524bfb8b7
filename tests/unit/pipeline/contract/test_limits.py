"""Every limit of one event: at the limit the event is accepted, one over it is refused with
reason limit_exceeded and a detail that names the field but never the value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline.contract.dead_letters import Reason, Rejection
from pipeline.contract.intake import IntakePolicy, admissible, check
from pipeline.contract.limits import DEFAULT_LIMITS, Limits
from pipeline.contract.models import ChannelEvent, Identifier, Traits
from tests.factories import NOW, make_event

L = DEFAULT_LIMITS


def _ids(count: int, size: int = 8) -> list[Identifier]:
    return [Identifier(namespace="anonymous_id", value=f"{i:0{size}d}") for i in range(count)]


# name -> (event at the limit, event one over it)
CASES: dict[str, Callable[[int], dict[str, Any]]] = {
    "identifier count": lambda extra: {"identifiers": _ids(L.max_identifiers + extra)},
    "identifier value bytes": lambda extra: {
        "identifiers": [
            Identifier(
                namespace="order_id", value="ü" * (L.max_identifier_bytes // 2) + "x" * extra
            )
        ]
    },
    "namespace bytes": lambda extra: {
        "identifiers": [Identifier(namespace="n" * (L.max_namespace_bytes + extra), value="v1")]
    },
    "trait bytes": lambda extra: {"traits": Traits(last_name="m" * (L.max_trait_bytes + extra))},
    "property count": lambda extra: {
        "properties": {f"k{i}": "v" for i in range(L.max_properties + extra)}
    },
    "property value bytes": lambda extra: {
        "properties": {"order_id": "\x01" * (L.max_property_bytes + extra)}
    },
    "property key bytes": lambda extra: {
        "properties": {"k" * (L.max_property_key_bytes + extra): "v"}
    },
    "consent purposes": lambda extra: {
        "consent": {f"purpose{i}": True for i in range(L.max_consent_purposes + extra)}
    },
    "event id bytes": lambda extra: {"event_id": "e" * (L.max_text_bytes + extra)},
    "source bytes": lambda extra: {"source": "s" * (L.max_text_bytes + extra)},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_at_the_limit_accepted_one_over_refused(name: str) -> None:
    at = make_event(**CASES[name](0))
    assert L.check(at) is None
    assert check(at, NOW, IntakePolicy()) == at
    over = make_event(**CASES[name](1))
    refused = check(over, NOW, IntakePolicy())
    assert isinstance(refused, Rejection)
    assert refused.reason is Reason.limit_exceeded
    # The detail names the field and the sizes, never the offending value.
    assert "bytes" in refused.detail or ">" in refused.detail
    for value in ("ü" * 20, "m" * 40, "\x01" * 40, "e" * 40, "s" * 40):
        assert value not in refused.detail


def test_connectors_check_the_same_limits() -> None:
    over = make_event(identifiers=[Identifier(namespace="order_id", value="9" * 30_000)])
    refused = admissible(over)
    assert isinstance(refused, Rejection) and refused.reason is Reason.limit_exceeded
    assert refused.detail == "identifiers.0.value: 30000 bytes > 256"
    fits = make_event()
    assert admissible(fits) == fits


def test_limits_are_configurable() -> None:
    tight = Limits(max_identifiers=1)
    event = make_event(identifiers=_ids(2))
    assert isinstance(check(event, NOW, IntakePolicy(limits=tight)), Rejection)
    assert isinstance(check(event, NOW, IntakePolicy()), ChannelEvent)


def test_worst_case_event_stays_far_below_a_kafka_message() -> None:
    """The largest event the limits admit, escaped as JSON the way internal messages carry it,
    is far below 1 MiB (the bound docs/architecture.md states)."""
    worst = make_event(
        event_id="e" * L.max_text_bytes,
        event_type="t" * L.max_text_bytes,
        source="s" * L.max_text_bytes,
        identifiers=[
            Identifier(
                namespace="\x01" * L.max_namespace_bytes, value="\x01" * L.max_identifier_bytes
            )
            for _ in range(L.max_identifiers)
        ],
        traits=Traits(**{name: "\x01" * L.max_trait_bytes for name in Traits.model_fields}),
        properties={
            f"{i:0{L.max_property_key_bytes}d}": "\x01" * L.max_property_bytes
            for i in range(L.max_properties)
        },
        consent={f"{i:0{L.max_text_bytes}d}": True for i in range(L.max_consent_purposes)},
    )
    assert L.check(worst) is None
    size = len(worst.model_dump_json().encode())
    assert size < 600_000, size
