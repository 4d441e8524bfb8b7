"""Linking rules of the customer graph, over both store backends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from pipeline.contract.models import ChangeType, ChannelEvent, Identifier
from pipeline.engine.graph import Graph
from pipeline.engine.identifiers import Node, Normaliser
from pipeline.engine.namespaces import NamespaceRules
from pipeline.engine.state import Store
from tests.factories import NOW, make_event

NORMALISER = Normaliser()


def ids(*pairs: tuple[str, str]) -> list[Identifier]:
    return [Identifier(namespace=ns, value=value) for ns, value in pairs]


class Linking:
    """A graph plus helpers: link events given as identifier pairs."""

    def __init__(self, store: Store, rules: NamespaceRules | None = None) -> None:
        self.graph = Graph(store, rules or NamespaceRules())
        self.minutes = 0

    def event(self, *pairs: tuple[str, str], **fields: object) -> ChannelEvent:
        self.minutes += 1
        fields.setdefault("occurred_at", NOW - timedelta(days=1) + timedelta(minutes=self.minutes))
        return make_event(identifiers=ids(*pairs), **fields)

    def link(self, *pairs: tuple[str, str], **fields: object):  # type: ignore[no-untyped-def]
        event = self.event(*pairs, **fields)
        nodes, _ = NORMALISER.nodes(event.identifiers)
        return self.graph.link(event, nodes, NOW)

    def customer(self, namespace: str, value: str) -> str | None:
        return self.graph.customer_of_node(Node(namespace, value))


@pytest.fixture
def linking(store_factory: Callable[[], Store]) -> Linking:
    return Linking(store_factory())


def test_events_sharing_an_identifier_become_one_customer(linking: Linking) -> None:
    first = linking.link(("anonymous_id", "a1"))
    assert [c.change_type for c in first.changes] == [ChangeType.created]
    second = linking.link(("anonymous_id", "a1"), ("email", "Zoe@Example.ie"))
    assert second.customer_id == first.customer_id
    assert linking.customer("email", "zoe@example.ie") == first.customer_id


def test_a_merge_keeps_the_customer_seen_first_and_forwards_the_other(linking: Linking) -> None:
    early = linking.link(("anonymous_id", "a1")).customer_id
    late = linking.link(("email", "zoe@example.ie")).customer_id
    merged = linking.link(("email", "zoe@example.ie"), ("anonymous_id", "a1"))
    assert merged.customer_id == early
    assert [(f.loser, f.winner) for f in merged.folds] == [(late, early)]
    change = next(c for c in merged.changes if c.change_type is ChangeType.merged)
    assert change.old_customer_ids == [late] and change.customer_id == early
    assert change.evidence[0].rule == "shared_identifier"
    # Late events for the merged-away id land on the survivor.
    assert linking.graph.resolve(late) == early
    assert linking.link(("email", "zoe@example.ie")).customer_id == early


def test_the_winner_is_the_earliest_by_event_time_not_by_arrival(linking: Linking) -> None:
    arrives_first = linking.link(("anonymous_id", "a1")).customer_id
    happened_first = linking.link(
        ("email", "zoe@example.ie"), occurred_at=NOW - timedelta(days=30)
    ).customer_id
    merged = linking.link(("email", "zoe@example.ie"), ("anonymous_id", "a1"))
    assert merged.customer_id == happened_first != arrives_first


def test_chains_of_merges_resolve_to_the_last_survivor(linking: Linking) -> None:
    a = linking.link(("anonymous_id", "anon-a")).customer_id
    linking.link(("anonymous_id", "anon-b"))
    linking.link(("anonymous_id", "anon-c"))
    linking.link(("anonymous_id", "anon-b"), ("anonymous_id", "anon-c"))
    final = linking.link(("anonymous_id", "anon-a"), ("anonymous_id", "anon-c")).customer_id
    assert final == a
    for value in ("anon-a", "anon-b", "anon-c"):
        assert linking.customer("anonymous_id", value) == a


def test_a_repeated_event_id_changes_nothing(linking: Linking) -> None:
    event = linking.event(("anonymous_id", "a1"), ("email", "zoe@example.ie"))
    nodes, _ = NORMALISER.nodes(event.identifiers)
    first = linking.graph.link(event, nodes, NOW)
    snapshot = dict(getattr(linking.graph.store, "data", {}))
    again = linking.graph.link(event, nodes, NOW)
    assert again.duplicate and again.customer_id == first.customer_id
    # The same decision again (its outputs may have been lost in a crash), not a new one.
    assert again.changes == first.changes and again.folds == first.folds
    if snapshot:
        assert linking.graph.store.data == snapshot  # type: ignore[attr-defined]


def test_different_unique_ids_are_never_joined(linking: Linking) -> None:
    anna = linking.link(("customer_id", "CRM-1"), ("email", "family@example.de")).customer_id
    ben = linking.link(("customer_id", "CRM-2")).customer_id
    refused = linking.link(("customer_id", "CRM-2"), ("email", "family@example.de"))
    # The event attaches to its highest-priority identifier's customer; the link is refused.
    assert refused.customer_id == ben != anna
    conflict = next(c for c in refused.changes if c.change_type is ChangeType.conflict)
    assert conflict.customer_id == ben and conflict.old_customer_ids == [anna]
    assert conflict.evidence[0].rule == "unique_namespace_conflict"
    assert conflict.evidence[0].details == {"namespace": "customer_id"}
    assert linking.customer("email", "family@example.de") == anna


def test_a_new_unique_id_gets_its_own_customer_when_its_other_ids_belong_to_another(
    linking: Linking,
) -> None:
    anna = linking.link(("loyalty_id", "L-1"), ("email", "family@example.de")).customer_id
    result = linking.link(("loyalty_id", "L-2"), ("email", "family@example.de"))
    assert result.customer_id != anna
    assert linking.customer("loyalty_id", "L-2") == result.customer_id
    assert any(c.change_type is ChangeType.conflict for c in result.changes)


def test_a_profile_without_unique_id_joins_one_with(linking: Linking) -> None:
    web = linking.link(("anonymous_id", "a1"), ("email", "zoe@example.ie")).customer_id
    crm = linking.link(("customer_id", "CRM-7"), ("email", "zoe@example.ie")).customer_id
    assert crm == web
    assert linking.customer("customer_id", "CRM-7") == web


def test_a_real_customer_with_many_identifiers_is_not_cut(linking: Linking) -> None:
    anchor = linking.link(("customer_id", "CRM-9")).customer_id
    values = (
        [("email", f"me{i}@example.de") for i in range(5)]
        + [("phone", f"+49170123456{i}") for i in range(5)]
        + [("device_id", f"dev-{i}") for i in range(10)]
        + [("anonymous_id", f"anon-{i}") for i in range(50)]
    )
    for pair in values:  # each seen first on its own, then linked to the CRM id
        linking.link(pair)
        assert linking.link(("customer_id", "CRM-9"), pair).customer_id == anchor
    for namespace, value in values:
        assert linking.customer(namespace, value) == anchor


def test_per_profile_limits_refuse_one_more(store_factory: Callable[[], Store]) -> None:
    linking = Linking(
        store_factory(), NamespaceRules.from_json('{"email": {"max_per_profile": 2}}')
    )
    anchor = linking.link(("customer_id", "C1"), ("email", "a@example.de")).customer_id
    assert linking.link(("customer_id", "C1"), ("email", "b@example.de")).customer_id == anchor
    third = linking.link(("customer_id", "C1"), ("email", "c@example.de"))
    assert third.customer_id == anchor
    assert linking.customer("email", "c@example.de") is None
    conflict = next(c for c in third.changes if c.change_type is ChangeType.conflict)
    assert conflict.evidence[0].rule == "namespace_limit"


def test_a_value_shared_by_too_many_unique_ids_is_quarantined(
    store_factory: Callable[[], Store],
) -> None:
    linking = Linking(store_factory(), NamespaceRules(hairball_max_profiles=2))
    owner = linking.link(("loyalty_id", "L0"), ("device_id", "store-tablet")).customer_id
    linking.link(("loyalty_id", "L1"), ("device_id", "store-tablet"))  # 2 unique ids: tolerated
    changes = linking.link(("loyalty_id", "L2"), ("device_id", "store-tablet")).changes
    kinds = [c.change_type for c in changes]
    assert ChangeType.quarantined in kinds
    quarantined = next(c for c in changes if c.change_type is ChangeType.quarantined)
    assert quarantined.customer_id == owner
    assert quarantined.evidence[0].identifiers[0].value == "store-tablet"
    # From now on the value links nothing: an anonymous visitor on the tablet stays apart.
    visitor = linking.link(("anonymous_id", "v1"), ("device_id", "store-tablet")).customer_id
    assert visitor != owner
    assert linking.customer("anonymous_id", "v1") == visitor


def test_an_event_without_identifiers_is_its_own_customer(linking: Linking) -> None:
    first = linking.link()
    second = linking.link()
    assert first.customer_id != second.customer_id
