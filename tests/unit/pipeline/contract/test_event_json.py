"""replay's JSON fast path never accepts more, or differently, than the contract's model."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.contract.event_json import fast_event
from pipeline.contract.models import ChannelEvent
from tests.factories import make_event, make_rich_event

TEXT = st.text(max_size=12)
STAMPS = st.sampled_from(
    [
        "2026-03-01T10:00:00Z",
        "2026-03-01T10:00:00.123456+02:00",
        "2026-03-01T10:00:00",
        "2026-03-01t10:00:00z",
        "2026-03-01 10:00:00Z",
        "2026-03-01",
        "2026-03-01T10:00:00.1234567Z",
        "2026-13-01T10:00:00Z",
        "1700000000",
        "",
    ]
)
LOOSE = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), TEXT, STAMPS, st.just([]), st.just({})
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Events as producers write them, right and wrong: fields dropped, added, mistyped."""
    doc: dict[str, Any] = {
        "event_id": draw(TEXT),
        "event_type": draw(st.sampled_from(["page_view", "purchase", ""])),
        "channel": draw(st.sampled_from(["web", "store", "telepathy", "WEB"])),
        "source": draw(TEXT),
        "occurred_at": draw(STAMPS),
        "received_at": draw(st.one_of(st.none(), STAMPS)),
        "identifiers": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"namespace": st.sampled_from(["email", "", "crm"]), "value": TEXT}
                ),
                max_size=3,
            )
        ),
        "traits": draw(
            st.fixed_dictionaries({}, optional={"first_name": TEXT, "city": st.none() | TEXT})
        ),
        "properties": draw(st.dictionaries(TEXT, TEXT, max_size=2)),
        "consent": draw(st.one_of(st.none(), st.dictionaries(TEXT, st.booleans(), max_size=2))),
    }
    # One time in three, break it: a field dropped, mistyped or added.
    mutation = draw(st.integers(0, 8))
    if mutation == 0:
        doc.pop(draw(st.sampled_from(sorted(doc))))
    elif mutation == 1:
        doc[draw(st.sampled_from([*sorted(doc), "extra"]))] = draw(LOOSE)
    elif mutation == 2:
        doc[draw(st.sampled_from(["traits", "properties", "consent"]))] = {
            draw(st.sampled_from(["first_name", "x"])): draw(LOOSE)
        }
    return doc


@settings(max_examples=600, deadline=None)
@given(documents())
def test_the_fast_path_accepts_only_what_the_model_accepts_and_the_same_way(
    doc: dict[str, Any],
) -> None:
    line = json.dumps(doc)
    fast = fast_event(line)
    try:
        model = ChannelEvent.model_validate_json(line)
    except ValidationError:
        assert fast is None, f"the fast path accepted what the model refuses: {line}"
        return
    if fast is not None:
        assert fast == model
        assert fast.to_avro() == model.to_avro()
        assert fast.model_dump_json() == model.model_dump_json()


def test_ordinary_events_take_the_fast_path() -> None:
    for event in (make_event(), make_rich_event()):
        fast = fast_event(event.to_json())
        assert fast is not None and fast == event
