"""Where records are sealed: a connector's batch gets its keys in one vault call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from pipeline.contract.dead_letters import DeadLetter, Origin, Reason, Rejection
from pipeline.contract.models import ChannelEvent
from pipeline.exceptions import VaultError
from pipeline.vault.client import Vault
from pipeline.vault.sealing import (
    dead_letter_key_id,
    event_key_id,
    open_event_record,
    open_operation_record,
    open_profile,
    operation_key_id,
    seal,
    seal_event,
    seal_operation,
    unseal,
)
from pipeline.vault.tags import Tagger

ERASED_EVENT = Rejection(
    Reason.erased, "the event id belongs to an erased person's event; it is not written again"
)


class Sealer:
    """Seals events (key ``e:<event_id>``, tagged with their identifiers), dead letters (a key
    of their own, tagged with the e-mail addresses and phone numbers found in the bytes) and
    operations (``o:<operation_id>``, tagged with the identifiers they name)."""

    def __init__(self, vault: Vault, tagger: Tagger) -> None:
        self.vault = vault
        self.tagger = tagger

    def seal(
        self, records: Sequence[ChannelEvent | DeadLetter], now: datetime
    ) -> list[ChannelEvent | DeadLetter]:
        """The records sealed, in order. An event whose id was shredded (an erased person's,
        sent again) becomes a dead letter ``erased`` without payload."""
        ids: list[str] = []
        requests: list[tuple[str, list[str]]] = []
        for record in records:
            if isinstance(record, ChannelEvent):
                key_id = event_key_id(record.event_id)
                requests.append((key_id, self.tagger.of_event(record)))
            else:
                key_id = dead_letter_key_id()
                requests.append((key_id, self.tagger.of_text(record.value)))
            ids.append(key_id)
        keys = self.vault.issue(requests) if requests else {}
        out: list[ChannelEvent | DeadLetter] = []
        for record, key_id in zip(records, ids, strict=True):
            key = keys.get(key_id)
            if isinstance(record, ChannelEvent):
                if key is None:
                    where = Origin(f"connector:{record.source}", -1, -1)
                    out.append(DeadLetter(where, ERASED_EVENT, None, b"", now))
                else:
                    out.append(seal_event(record, key))
            elif key is None or not record.value:
                out.append(replace(record, value=b"" if key is None else record.value))
            else:
                bounded = record.bounded()
                sealed = seal(key, key_id, bounded.value or b"")
                out.append(replace(bounded, value=sealed, sealed_key=key_id))
        return out

    def seal_letter(self, letter: DeadLetter, now: datetime) -> DeadLetter:
        """One dead letter sealed (a stage's: its bytes may be an internal, opened record)."""
        sealed = self.seal([letter], now)[0]
        assert isinstance(sealed, DeadLetter)
        return sealed

    def seal_result(self, left: str, right: str, result: dict[str, Any]) -> dict[str, Any]:
        """An OperationResult record with its detail sealed under the operation's key (the
        one the CLI sealed the operation under; tagged with the identifiers it names)."""
        key_id = operation_key_id(str(result["operation_id"]))
        key = self.vault.issue([(key_id, self.tagger.of_references(left, right))]).get(key_id)
        if key is None:
            raise VaultError("this operation id was shredded")
        sealed = seal(key, key_id, str(result["detail"]).encode())
        return {**result, "detail": "", "sealed": sealed}

    def seal_operation(self, record: dict[str, Any]) -> dict[str, Any]:
        """An IdentityOperation record sealed under ``o:<operation_id>``, tagged with the
        identifiers it names (so that erasing the person also darkens the operation)."""
        key_id = operation_key_id(str(record["operation_id"]))
        tags = self.tagger.of_references(str(record["left"]), str(record["right"]))
        key = self.vault.issue([(key_id, tags)]).get(key_id)
        if key is None:
            raise VaultError("this operation id was shredded; use a new one")
        return seal_operation(record, key)


def shredder(vault: Vault) -> Callable[[list[str], list[str]], int]:
    """An erase's (event ids, tags) as one vault call: the events' keys and every key tagged
    with one of the person's identifiers. Returns how many keys went."""

    def shred(event_ids: list[str], tags: list[str]) -> int:
        return vault.shred([event_key_id(event_id) for event_id in event_ids], tags)

    return shred


def readable(record: dict[str, Any], vault: Vault | None) -> dict[str, Any] | None:
    """A decoded record as it can be read now: plain as it is, sealed opened with the vault;
    None when it stays sealed (no vault, or its key was shredded: erased or superseded)."""
    if record.get("sealed") is None:
        return record
    if vault is None:
        return None
    found = opened(record, vault)
    return None if found.get("sealed") is not None else found


def opened(record: dict[str, Any], vault: Vault) -> dict[str, Any]:
    """A decoded record (event, operation or profile) with its sealed fields opened when the
    vault still holds its key; as it is otherwise (plain, or erased: ``sealed`` stays)."""
    if record.get("sealed") is None:
        return record
    if "decided_at" in record:  # an OperationResult: its detail
        key_id = operation_key_id(str(record["operation_id"]))
        key = vault.fetch([key_id]).get(key_id)
        if key is None:
            return record
        detail = unseal(key, key_id, record["sealed"]).decode()
        return {**record, "detail": detail, "sealed": None}
    if record.get("sealed_key"):
        key_id, opener = str(record["sealed_key"]), open_profile
    elif "operation_id" in record:
        key_id, opener = operation_key_id(str(record["operation_id"])), open_operation_record
    elif "event_id" in record:
        key_id, opener = event_key_id(str(record["event_id"])), open_event_record
    else:
        return record
    key = vault.fetch([key_id]).get(key_id)
    return record if key is None else opener(record, key)
