"""Crypto-shredding on the real broker (issue #13): connectors seal personal fields under
per-record keys in the vault, the worker opens them, and an erase deletes the person's keys.
Afterwards a scan of the topics — decrypting everything the vault can still open — finds none
of the person's e-mail address, phone number or names, while another customer's data still
opens (the scan really decrypts). The compacted topics are scanned too: the profiles and the
worker's changelogs, whose earlier versions stay until Kafka compacts them — sealed under keys
the erase shredded."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.sink import EventSink, refusal
from pipeline.contract.dead_letters import DeadLetter, Reason, Rejection
from pipeline.contract.models import (
    ChannelEvent,
    CustomerProfile,
    Identifier,
    OperationResult,
    Traits,
)
from pipeline.contract.schemas import IDENTITY_OPERATION
from pipeline.settings import Settings
from pipeline.stream.topics import (
    ACCEPTED,
    CUSTOMER_OPS,
    DEAD_LETTERS,
    EVENTS,
    IDENTITY_CHANGES,
    JOURNEYS,
    OPERATION_RESULTS,
    OPERATIONS,
    PROFILES,
)
from pipeline.vault.client import VaultClient
from pipeline.vault.sealer import opened
from pipeline.vault.sealing import (
    KEY_HEADER,
    open_event_record,
    open_operation_record,
    open_profile,
    unseal,
)
from pipeline.vault.tables import TableSeal
from tests.factories import make_event
from tests.integration.conftest import VaultEndpoint, drain
from tests.integration.deployments import Run, wait_for

pytestmark = pytest.mark.integration

ANN = ["annegret.voss@example.de", "+4915199887766", "Annegret", "Voss-Lindqvist"]
BOB_NAME = "Bertram"
SCANNED = (
    EVENTS,
    ACCEPTED,
    CUSTOMER_OPS,
    DEAD_LETTERS,
    OPERATIONS,
    OPERATION_RESULTS,
    JOURNEYS,
    IDENTITY_CHANGES,
    PROFILES,
)


def _readable(run: Run, vault: VaultClient, topic: str, message: Any) -> list[bytes]:
    """What anyone with read access to the topic and to the vault can read of one record."""
    value = message.value() or b""
    headers = dict(message.headers() or [])
    texts = [value, message.key() or b"", *(v or b"" for v in headers.values())]
    if TableSeal.is_sealed(value):  # a changelog record
        restored = TableSeal(vault, b"-", "any").open(value)
        return [*texts, restored or b""]
    if topic.endswith(OPERATION_RESULTS.suffix) and value:
        record = run.serde.decode(topic, value, OperationResult)
        return [*texts, json.dumps(opened(record, vault), default=str).encode()]
    if topic.endswith(PROFILES.suffix) and value:
        record = run.serde.decode(topic, value, CustomerProfile)
        key_id = record["sealed_key"] or ""
        key = vault.fetch([key_id]).get(key_id) if key_id else None
        profile = open_profile(record, key) if key else {}
        return [*texts, json.dumps(profile, default=str).encode()]
    key_id = (headers.get(KEY_HEADER) or headers.get("omnistitch.dlq.sealed_key") or b"").decode()
    key = vault.fetch([key_id]).get(key_id) if key_id else None
    if key is None:
        return texts
    if key_id.startswith("e:"):  # an event (or an intake dead letter holding one)
        record = run.serde.decode(EVENTS.name(run.prefix), value, ChannelEvent)
        texts.append(json.dumps(open_event_record(record, key), default=str).encode())
    elif key_id.startswith("o:"):
        record = run.serde.decode_record(topic, value, IDENTITY_OPERATION)
        texts.append(json.dumps(open_operation_record(record, key), default=str).encode())
    else:  # a dead letter's bytes, sealed whole
        texts.append(unseal(key, key_id, value))
    return texts


def _scan(run: Run, vault: VaultClient) -> dict[str, list[str]]:
    """Per topic: which of Ann's values can be read, and whether Bob's name can."""
    found: dict[str, list[str]] = {}
    app_id = run.env["OMNISTITCH_APP_ID"]
    changelogs = [f"{app_id}-graph-changelog", f"{app_id}-customers-changelog"]
    for topic in [spec.name(run.prefix) for spec in SCANNED] + changelogs:
        for message in drain(run.kafka.bootstrap_servers, topic, idle_s=2):
            for text in _readable(run, vault, topic, message):
                lowered = text.lower()
                for value in [*ANN, BOB_NAME]:
                    if value.lower().encode() in lowered:
                        found.setdefault(value, []).append(topic)
    return found


def _sealed(run: Run, vault: VaultEndpoint) -> Settings:
    """The deployment with the vault and an erasure key; a connector's settings for it."""
    run.env.update(vault.env())
    run.env["OMNISTITCH_ERASURE_KEY"] = "integration-test-erasure-key-0123456789"
    return Settings(
        bootstrap_servers=run.kafka.bootstrap_servers,
        schema_registry_url=run.kafka.registry_url,
        topic_prefix=run.prefix,
        vault_url=vault.url,
        vault_token=vault.token,
        erasure_key=run.env["OMNISTITCH_ERASURE_KEY"],
    )


def test_after_an_erase_no_topic_holds_a_readable_copy_of_the_person(
    run_factory: Callable[[int], Run], vault: VaultEndpoint
) -> None:
    run = run_factory(2)
    settings = _sealed(run, vault)
    run.env["OMNISTITCH_INTERNAL_PURGE_INTERVAL_S"] = "1"
    client = VaultClient(vault.url, vault.token)
    worker = run.ready_worker("w0")
    email = Identifier(namespace="email", value=ANN[0])
    phone = Identifier(namespace="phone", value=ANN[1])
    sink = EventSink.from_settings(settings, "it-connector")
    try:
        sink.deliver(
            [
                make_event(
                    event_id="a1",
                    identifiers=[email],
                    traits=Traits(first_name=ANN[2], last_name=ANN[3]),
                    properties={"store_id": "store-7"},
                ),
                make_event(event_id="a2", identifiers=[email, phone]),
                # Over a limit: intake dead-letters it, the linker never sees it; its key goes
                # with the tag of her e-mail address.
                make_event(event_id="a3", identifiers=[email], traits=Traits(city="x" * 400)),
                make_event(
                    event_id="b1",
                    identifiers=[Identifier(namespace="email", value="b@example.org")],
                    traits=Traits(first_name=BOB_NAME),
                ),
                # A row a connector could not map, her e-mail address among its bytes.
                refusal(
                    "files",
                    "crm.csv",
                    Rejection(Reason.unmappable_record, "no id column"),
                    f"{ANN[2]} {ANN[3]};{ANN[0]}".encode(),
                    datetime.now(UTC),
                ),
            ]
        )
    finally:
        sink.close()
    run.wait_for_journeys({"a1", "a2", "b1"})

    before = _scan(run, client)
    assert set(before) == {*ANN, BOB_NAME}, before  # sealed, yet the vault opens all of it
    app_id = run.env["OMNISTITCH_APP_ID"]
    for topic in (
        PROFILES.name(run.prefix),
        f"{app_id}-graph-changelog",
        f"{app_id}-customers-changelog",
    ):
        assert topic in before[ANN[0]], (topic, before[ANN[0]])  # the scan opens these too
        raw = drain(run.kafka.bootstrap_servers, topic)
        assert not any(ANN[0].encode() in (m.value() or b"") + (m.key() or b"") for m in raw)
    events = drain(run.kafka.bootstrap_servers, EVENTS.name(run.prefix))
    assert not any(ANN[0].encode() in (m.value() or b"") for m in events)  # sealed on the topic

    # Why are her e-mail address and phone one customer? The worker's answer names both:
    # sealed on the results topic, opened by the CLI.
    code, out = run.cli("explain", f"email:{ANN[0]}", f"phone:{ANN[1]}", "--json")
    assert code == 0 and json.loads(out)["joined"], out
    results = drain(run.kafka.bootstrap_servers, OPERATION_RESULTS.name(run.prefix))
    assert results and not any(ANN[0].encode() in (m.value() or b"") for m in results)
    assert OPERATION_RESULTS.name(run.prefix) in _scan(run, client)[ANN[0]]  # the scan opens it

    code, out = run.cli("erase", "--identifier", f"email:{ANN[0]}", "--operator", "dpo", "--json")
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["status"] == "done", answer

    def clean() -> bool:
        return set(_scan(run, client)) == {BOB_NAME}

    wait_for(clean, "no readable copy of Ann's data on any scanned topic", timeout_s=90)
    letters = [
        DeadLetter.from_message(m.key(), m.value(), list(m.headers() or []))
        for m in drain(run.kafka.bootstrap_servers, DEAD_LETTERS.name(run.prefix))
    ]
    reasons = {d.rejection.reason for d in letters}
    assert reasons >= {Reason.limit_exceeded, Reason.unmappable_record}
    assert all(d.sealed_key for d in letters if d.value)  # every dead letter with bytes sealed
    assert worker.stop() == 0
    # The worker's state files and every log of this test (worker stages, vault) hold none of
    # her values either.
    files = [p for p in run.tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in files) and any("data-w0" in str(p) for p in files)
    left = [(p.name, v) for p in files for v in ANN if v.lower().encode() in p.read_bytes().lower()]
    assert not left, f"personal data left in state files or logs: {left[:5]}"


def test_a_worker_restored_from_sealed_changelogs_knows_every_customer(
    run_factory: Callable[[int], Run], vault: VaultEndpoint
) -> None:
    """The changelogs hold hashed keys and sealed values: a worker with an empty data folder
    rebuilds its tables from them and opens each value on first read, so a later event of a
    known person joins the customer the first worker made."""
    run = run_factory(2)
    settings = _sealed(run, vault)
    email = Identifier(namespace="email", value=ANN[0])
    sink = EventSink.from_settings(settings, "it-connector")
    first = run.ready_worker("first")
    try:
        sink.deliver([make_event(event_id="a1", identifiers=[email]), make_event(event_id="b1")])
        before = {j.event.event_id: j.customer_id for j in run.wait_for_journeys({"a1", "b1"})}
        assert first.stop() == 0
        second = run.ready_worker("second")  # an empty data folder: the changelogs only
        phone = Identifier(namespace="phone", value=ANN[1])
        sink.deliver([make_event(event_id="a2", identifiers=[phone, email])])
        after = {j.event.event_id: j.customer_id for j in run.wait_for_journeys({"a2"})}
    finally:
        sink.close()
    assert after["a2"] == before["a1"]
    assert second.stop() == 0
