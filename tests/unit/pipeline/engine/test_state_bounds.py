"""Every state value the engine writes stays far below Kafka's 1 MiB message size, whatever the
input: the hostile patterns of issue #10 run through the whole engine (linking, matching,
profiles) over both stores, and the largest value written under each key kind is measured as
the worker's table changelog would carry it (JSON)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pipeline.contract.limits import DEFAULT_LIMITS
from pipeline.contract.models import ChangeType, ChannelEvent, Identifier, Traits
from pipeline.engine.graph import NAMESPACE_LIMIT
from pipeline.engine.matching import MatchConfig
from pipeline.engine.state import Store
from pipeline.engine.stitcher import StitchConfig, Stitcher
from tests.factories import NOW, make_event

# The bound docs/architecture.md states for any single state value.
STATE_VALUE_BOUND = 512 * 1024
MAX_ID = DEFAULT_LIMITS.max_identifier_bytes


class Measured:
    """A store that remembers the largest JSON value written per key kind (``n``, ``c``, ...)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.largest: dict[str, int] = defaultdict(int)

    def get(self, key: str) -> Any | None:
        return self.inner.get(key)

    def set(self, key: str, value: Any) -> None:
        kind = key.split("|", 1)[0]
        self.largest[kind] = max(self.largest[kind], len(json.dumps(value).encode()))
        self.inner.set(key, value)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def _stitcher(store_factory: Callable[[], Store]) -> tuple[Stitcher, Measured, Measured]:
    graph, profiles = Measured(store_factory()), Measured(store_factory())
    config = StitchConfig(matching=MatchConfig.default())
    return Stitcher(graph, profiles, config, clock=lambda: NOW), graph, profiles


def _event(n: int, identifiers: list[Identifier], **fields: Any) -> ChannelEvent:
    return make_event(
        event_id=f"e-{n}",
        occurred_at=NOW - timedelta(days=2) + timedelta(seconds=n),
        identifiers=identifiers,
        **fields,
    )


def _long(prefix: str, n: int) -> str:
    """An identifier value of exactly the largest size allowed, umlauts included."""
    head = f"{prefix}-{n}-"
    return head + "ü" * ((MAX_ID - len(head)) // 2) + "x" * ((MAX_ID - len(head)) % 2)


def _assert_bounded(*stores: Measured) -> None:
    for store in stores:
        for kind, size in store.largest.items():
            assert size < STATE_VALUE_BOUND, (kind, size)


def test_one_customer_with_thousands_of_long_order_ids_stays_small(
    store_factory: Callable[[], Store],
) -> None:
    """The 40-call stall of #10, 1,200 times over: one customer id, a new maximal order id and
    anonymous id with every event."""
    stitcher, graph, profiles = _stitcher(store_factory)
    for n in range(1200):
        ids = [
            Identifier(namespace="customer_id", value="C-1"),
            Identifier(namespace="order_id", value=_long("o", n)),
            Identifier(namespace="anonymous_id", value=_long("a", n)),
        ]
        out = stitcher.process(_event(n, ids, event_type="order_completed"))
    _assert_bounded(graph, profiles)
    customer = out.customer_id
    record = graph.get("c|" + customer)
    assert record is not None
    assert len(record["ids"]["order_id"]) == 100 and record["rolled"]["order_id"] == 1100
    assert stitcher.graph.stats["identifiers_rolled_off"] == 2 * 1100
    # A rolled-off order id still links: a pickup of the first order joins the customer.
    pickup = stitcher.process(
        _event(10_000, [Identifier(namespace="order_id", value=_long("o", 0))])
    )
    assert pickup.customer_id == customer
    # Journeys keep counting beyond the touches kept.
    assert pickup.journeys[0].sequence_number == 1201
    assert out.profiles[-1].event_count == 1200


def test_an_event_with_the_most_conflicting_identifiers_has_a_small_decision_record(
    store_factory: Callable[[], Store],
) -> None:
    """#10: an event with many e-mails, each already another customer's with another CRM id."""
    stitcher, graph, profiles = _stitcher(store_factory)
    count = DEFAULT_LIMITS.max_identifiers - 1
    for n in range(count):
        owner = [
            Identifier(namespace="customer_id", value=f"C-{n}"),
            Identifier(namespace="email", value=f"{'m' * 200}{n}@example.de"),
        ]
        stitcher.process(_event(n, owner))
    crowd = [Identifier(namespace="customer_id", value="C-X")] + [
        Identifier(namespace="email", value=f"{'m' * 200}{n}@example.de") for n in range(count)
    ]
    out = stitcher.process(_event(999, crowd, traits=Traits(first_name="Ann", last_name="Lee")))
    conflicts = [c for c in out.changes if c.change_type is ChangeType.conflict]
    assert len(conflicts) >= count
    _assert_bounded(graph, profiles)


def test_a_long_lived_customer_keeps_a_bounded_profile(
    store_factory: Callable[[], Store],
) -> None:
    stitcher, graph, profiles = _stitcher(store_factory)
    for n in range(1500):
        ids = [Identifier(namespace="email", value="kim@example.de")]
        consent = {f"purpose-{n % 50}": True}
        properties = {"amount": "1.00", "currency": ["EUR", "USD", "GBP", f"X{n % 30:02d}"][n % 4]}
        out = stitcher.process(
            _event(n, ids, event_type="purchase", consent=consent, properties=properties)
        )
    _assert_bounded(graph, profiles)
    state = profiles.get("p|" + out.customer_id)
    assert state is not None
    assert len(state["seen"]) == 1000 and state["seen_dropped"] == 500
    assert len(state["touches"]) == 1000 and state["touches_dropped"] == 500
    assert len(state["consent"]) == 32
    assert len(state["totals"]) <= 10
    # A redelivery of the very first event is still recognised (the linker's decision).
    again = stitcher.process(_event(0, [Identifier(namespace="email", value="kim@example.de")]))
    assert again.duplicate and not again.journeys
    assert profiles.get("p|" + out.customer_id)["events"] == 1500  # type: ignore[index]


def test_a_customer_holds_a_bounded_number_of_namespaces(
    store_factory: Callable[[], Store],
) -> None:
    stitcher, graph, _ = _stitcher(store_factory)
    first = stitcher.process(_event(0, [Identifier(namespace="email", value="x@example.de")]))
    for n in range(1, 30):
        ids = [
            Identifier(namespace="email", value="x@example.de"),
            Identifier(namespace=f"ns{n:02d}", value=f"v{n}"),
        ]
        out = stitcher.process(_event(n, ids))
    record = graph.get("c|" + first.customer_id)
    assert record is not None and len(record["ids"]) == 16
    assert any(
        c.change_type is ChangeType.conflict and c.evidence[0].rule == NAMESPACE_LIMIT
        for c in out.changes
    )
