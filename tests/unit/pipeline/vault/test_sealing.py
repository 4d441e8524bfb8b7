"""Sealing: what leaves a connector carries no personal field in the clear, and opens only with
its own key under its own id."""

from __future__ import annotations

import os

import pytest

from pipeline.contract.models import Identifier, IdentityOperation, Traits
from pipeline.engine.erasure import Suppression
from pipeline.engine.identifiers import Normaliser
from pipeline.exceptions import SealError
from pipeline.vault.sealing import (
    open_event_record,
    open_operation_record,
    opened_event,
    seal_event,
    seal_operation,
)
from pipeline.vault.tags import Tagger
from tests.factories import NOW, make_event, make_rich_event


def test_a_sealed_event_holds_no_personal_field_and_opens_to_the_original() -> None:
    event = make_rich_event(properties={"note": "call Ann on +49 30 1234567"})
    key = os.urandom(32)
    sealed = seal_event(event, key)
    written = sealed.model_dump_json().encode()
    for secret in ("example", "Ann", "1234567", str(event.traits.last_name)):
        assert secret.encode() not in written
    assert sealed.identifiers == [] and sealed.traits.is_empty() and sealed.properties == {}
    assert opened_event(sealed, key) == event
    record = open_event_record(sealed.to_avro(), key)
    assert record["sealed"] is None and record["properties"] == event.properties


def test_a_sealed_value_does_not_open_with_another_key_or_under_another_id() -> None:
    key = os.urandom(32)
    sealed = seal_event(make_event(event_id="one"), key)
    with pytest.raises(SealError):
        opened_event(sealed, os.urandom(32))
    moved = sealed.model_copy(update={"event_id": "two"})
    with pytest.raises(SealError):
        opened_event(moved, key)
    bent = bytearray(sealed.sealed or b"")
    bent[-1] ^= 1
    with pytest.raises(SealError):
        opened_event(sealed.model_copy(update={"sealed": bytes(bent)}), key)


def test_operations_seal_their_references_and_reason() -> None:
    key = os.urandom(32)
    operation = IdentityOperation(
        operation_id="op-1",
        kind="erase",
        left="email:ann@example.com",
        right="",
        operator="dpo",
        reason="Art. 17 request of Ann",
        requested_at=NOW,
    )
    sealed = seal_operation(operation.to_avro(), key)
    written = IdentityOperation.from_avro(sealed).model_dump_json().encode()
    assert b"ann@example.com" not in written and b"Ann" not in written
    opened = open_operation_record(sealed, key)
    assert IdentityOperation.from_avro(opened) == operation


def test_tags_are_the_suppression_keys_of_the_normalised_identifiers() -> None:
    suppression = Suppression(b"k" * 32)
    tagger = Tagger(Normaliser(), suppression)
    event = make_event(
        identifiers=[Identifier(namespace="email", value=" Ann@Example.com ")],
        traits=Traits(phone="030 1234567"),
    )
    tags = tagger.of_event(event)
    assert suppression.key("email|ann@example.com") in tags
    assert suppression.key("phone|+49301234567") in tags
    assert tagger.of_references("email:ANN@example.com") == [
        suppression.key("email|ann@example.com")
    ]
    found = tagger.of_text(b'{"mail": "ann@example.com", "tel": "+49 30 1234567", "x": 1}')
    assert set(found) == set(tags)
    assert Tagger(Normaliser(), None).of_event(event) == []  # no erasure key, no tags


def test_opened_shows_what_the_vault_still_opens() -> None:
    from pipeline.vault.sealer import opened
    from pipeline.vault.sealing import event_key_id
    from pipeline.vault.store import memory_store

    vault = memory_store()
    event = make_rich_event()
    key = vault.issue([(event_key_id(event.event_id), [])])[event_key_id(event.event_id)]
    assert key is not None
    record = seal_event(event, key).to_avro()
    assert opened(record, vault)["identifiers"] == [i.model_dump() for i in event.identifiers]
    vault.shred([event_key_id(event.event_id)], [])
    assert opened(record, vault) == record  # erased: stays sealed
    plain = make_event().to_avro()
    assert opened(plain, vault) is plain


def test_an_explains_answer_is_sealed_under_the_operations_key() -> None:
    from pipeline.vault.sealer import Sealer, opened
    from pipeline.vault.store import memory_store

    vault = memory_store()
    sealer = Sealer(vault, Tagger(Normaliser(), Suppression(b"k" * 32)))
    result = {
        "operation_id": "op-x",
        "kind": "explain",
        "status": "done",
        "detail": '{"left": "email|ann@example.com"}',
        "customer_id": None,
        "change_ids": [],
        "decided_at": NOW,
    }
    sealed = sealer.seal_result("email:ann@example.com", "phone:+4930123456", result)
    assert sealed["detail"] == "" and b"ann" not in sealed["sealed"]
    assert opened(sealed, vault)["detail"] == result["detail"]
    vault.shred(
        [], Tagger(Normaliser(), Suppression(b"k" * 32)).of_references("email:ann@example.com")
    )
    assert opened(sealed, vault) == sealed  # her erase darkens the answer too
