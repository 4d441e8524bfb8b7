"""Factories of the serving tests: a view over either backend, and output-topic records as
the follower hands them in (Avro-encoded, then decoded, as they come off the topics)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.contract.models import (
    ChangeType,
    Channel,
    ComputedTraits,
    ConsentStatement,
    ContractModel,
    Identifier,
    TraitOrigin,
    Traits,
)
from pipeline.serving.view import CustomerView, Incoming
from pipeline.vault.store import Cells, MemoryCells, RocksCells
from tests.factories import NOW, MemorySerde, make_change, make_event, make_journey, make_profile

TOPICS = {"profiles": "t.profiles", "journeys": "t.journeys", "changes": "t.changes"}
SERDE = MemorySerde()


@pytest.fixture(params=["memory", "rocksdb"])
def cells(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cells]:
    made: Cells = (
        MemoryCells() if request.param == "memory" else RocksCells(tmp_path / "view", sync=False)
    )
    yield made
    made.close()


@pytest.fixture
def view(cells: Cells) -> CustomerView:
    return CustomerView(cells, max_journey=20)


def decoded(model: ContractModel) -> dict[str, Any]:
    """The record as it comes off a topic (encoded and decoded through Avro)."""
    return SERDE.decode("t", SERDE.encode("t", model), type(model))


class Feed:
    """Records for one view, with increasing offsets per topic."""

    def __init__(self, view: CustomerView) -> None:
        self.view = view
        self.offsets: dict[str, int] = {}

    def _item(
        self, kind: str, key: str, record: dict[str, Any] | None, ids: dict[str, list[str]]
    ) -> Incoming:
        offset = self.offsets.get(kind, 0)
        self.offsets[kind] = offset + 1
        return Incoming(kind, 0, offset, key, record, ids)

    def profile(self, model: Any) -> Incoming:
        return self._item("profiles", model.customer_id, decoded(model), dict(model.identifiers))

    def tombstone(self, customer: str) -> Incoming:
        return self._item("profiles", customer, None, {})

    def journey(self, model: Any) -> Incoming:
        return self._item("journeys", model.customer_id, decoded(model), {})

    def change(self, model: Any) -> Incoming:
        return self._item("changes", model.customer_id, decoded(model), {})

    def apply(self, *items: Incoming) -> Any:
        return self.view.apply(list(items), TOPICS)


@pytest.fixture
def feed(view: CustomerView) -> Feed:
    return Feed(view)


FeedFactory = Callable[[CustomerView], Feed]


def fill_example(view: CustomerView) -> None:
    """Anna (merged with cus-old, a possible match cus-other, a web visit and a store order)
    and an erased customer, as the topics would bring them."""
    feed = Feed(view)
    anna = make_profile(
        customer_id="cus-anna",
        identifiers={"email": ["anna@example.de"], "phone": ["+491701234567"]},
        traits=Traits(first_name="Anna", city="Köln"),
        merged_ids=["cus-old"],
        possible_matches=["cus-other"],
        channels=[Channel.web, Channel.store],
        trait_origins={"first_name": TraitOrigin(source="crm", observed_at=NOW)},
        computed=ComputedTraits(
            revenue={"EUR": "20.00"}, order_count=1, preferred_store="S-1", abandoned_cart=["P-3"]
        ),
        consent_statements={
            "email_marketing": ConsentStatement(granted=True, source="shop-de", stated_at=NOW)
        },
    )
    other = make_profile(
        customer_id="cus-other", identifiers={"email": ["a.n@example.de"]}, merged_ids=[]
    )
    web = make_event(
        event_id="e-web",
        occurred_at=NOW - timedelta(days=2),
        identifiers=[
            Identifier(namespace="email", value="anna@example.de"),
            Identifier(namespace="anonymous_id", value="anon-7"),
        ],
    )
    order = make_event(
        event_id="e-order",
        event_type="order_completed",
        channel=Channel.store,
        occurred_at=NOW - timedelta(days=1),
        properties={"order_id": "O-1", "total": "20.00", "currency": "EUR"},
        identifiers=[Identifier(namespace="phone", value="+491701234567")],
    )
    feed.apply(
        feed.profile(anna),
        feed.profile(other),
        feed.journey(make_journey(customer_id="cus-old", event=web)),
        feed.journey(make_journey(customer_id="cus-anna", event=order)),
        feed.change(make_change(customer_id="cus-anna", old_customer_ids=["cus-old"])),
        feed.change(
            make_change(
                change_id="chg-pm",
                change_type=ChangeType.possible_match,
                customer_id="cus-anna",
                old_customer_ids=["cus-other"],
                evidence=[],
            )
        ),
        feed.tombstone("cus-old"),
    )
    erased = make_profile(customer_id="cus-gone", identifiers={"email": ["gone@example.de"]})
    feed.apply(feed.profile(erased))
    feed.apply(
        feed.change(
            make_change(
                change_id="chg-e",
                change_type=ChangeType.erased,
                customer_id="cus-gone",
                old_customer_ids=[],
                evidence=[],
            )
        )
    )


class StandInWorker:
    """Stands in for the running worker: records the operations, answers them."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, operation: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        self.sent.append(operation)
        if operation["kind"] == "explain":
            path = {"left": operation["left"], "right": operation["right"], "joined": True}
            return {
                "operation_id": operation["operation_id"],
                "status": "done",
                "detail": json.dumps(path),
            }
        return {"operation_id": operation["operation_id"], "status": "done", "detail": "linked"}
