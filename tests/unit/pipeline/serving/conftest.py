"""Factories of the serving tests: a view over either backend, and output-topic records as
the follower hands them in (Avro-encoded, then decoded, as they come off the topics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.contract.models import ContractModel
from pipeline.serving.view import CustomerView, Incoming
from pipeline.vault.store import Cells, MemoryCells, RocksCells
from tests.factories import MemorySerde

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
