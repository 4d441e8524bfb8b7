"""Table sealing: hashed keys, changelog values sealed per table key, re-keying that leaves
earlier versions unreadable while later ones open."""

from __future__ import annotations

import msgspec

from pipeline.vault.store import memory_store
from pipeline.vault.tables import TableSeal

SECRET = b"s" * 32


def test_keys_are_hashed_per_table_and_values_open_with_their_key() -> None:
    vault = memory_store()
    graph, customers = TableSeal(vault, SECRET, "graph"), TableSeal(vault, SECRET, "customers")
    key = graph.table_key("n|email|ann@example.com")
    assert b"ann" not in key and key != customers.table_key("n|email|ann@example.com")
    assert key == TableSeal(vault, SECRET, "graph").table_key("n|email|ann@example.com")
    value = msgspec.json.encode({"c": "cus-1", "own": ["email|ann@example.com"]})
    [(sent_key, sealed)] = graph.seal([(key, value)])
    assert sent_key == key and sealed is not None and b"ann" not in sealed
    assert isinstance(msgspec.json.decode(sealed), str)  # faust's recovery decodes it as JSON
    assert TableSeal(vault, SECRET, "graph").open(sealed) == value  # a restart: cold cache
    assert graph.seal([(key, None)]) == [(key, None)]  # tombstones stay tombstones


def test_shredding_a_key_darkens_its_earlier_versions_and_later_ones_open() -> None:
    vault = memory_store()
    seal = TableSeal(vault, SECRET, "graph")
    key, other = seal.table_key("c|cus-1"), seal.table_key("c|cus-2")
    [(_, old)] = seal.seal([(key, b'{"ids":["ann"]}')])
    [(_, kept)] = seal.seal([(other, b'{"ids":["ben"]}')])
    assert old is not None and kept is not None
    seal.shred([key])
    [(_, new)] = seal.seal([(key, b'{"ids":[]}')])
    assert new is not None
    fresh = TableSeal(vault, SECRET, "graph")
    assert fresh.open(old) is None
    assert fresh.open(new) == b'{"ids":[]}'
    assert fresh.open(kept) == b'{"ids":["ben"]}'


def test_a_profiles_data_key_is_its_state_keys() -> None:
    vault = memory_store()
    seal = TableSeal(vault, SECRET, "customers")
    key_id, data_key = seal.data_key("p|cus-1")
    assert key_id == seal.key_id(seal.table_key("p|cus-1"))
    assert vault.fetch([key_id]) == {key_id: data_key}
    seal.shred([seal.table_key("p|cus-1")])
    assert vault.fetch([key_id]) == {key_id: None}
    assert seal.data_key("p|cus-1")[1] != data_key  # re-issued fresh
