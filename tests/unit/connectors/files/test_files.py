"""File connector: row mapping, reading, checkpoints and exactly-once delivery across a crash."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.files.checkpoints import CheckpointStore
from connectors.files.loader import FileConnector, FileConnectorConfig
from connectors.files.mappings import DEFAULT_MAPPINGS, load_mappings, map_row
from connectors.files.reading import read_rows
from connectors.sink import Outgoing
from pipeline.contract.dead_letters import DeadLetter, Reason, Rejection
from pipeline.contract.models import Channel, ChannelEvent
from pipeline.exceptions import DeliveryError, MappingConfigError

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POS_HEADER = "receipt_id,store_id,till_id,timestamp,loyalty_card,amount,currency,items\n"


def pos_row(n: int, store: str = "store-001") -> str:
    return f"R{n},{store},2,2026-11-2{n % 3}T10:{n % 60:02d}:00Z,LC-{n},{n}.50,EUR,{n % 4 + 1}\n"


def test_pos_row_maps_to_a_store_purchase() -> None:
    row = {
        "receipt_id": "R1",
        "store_id": "store-042",
        "timestamp": "2026-11-20T10:00:00Z",
        "loyalty_card": "LC-9",
        "amount": "19.90",
        "currency": "EUR",
        "items": "2",
        "email": "",
        "truth_person_id": "4",
    }
    event = map_row(row, DEFAULT_MAPPINGS["pos"], file_id="pos:f:abc", line=2, received_at=NOW)
    assert isinstance(event, ChannelEvent)
    assert (event.event_id, event.event_type, event.channel) == (
        "pos-store-042-R1",
        "purchase",
        Channel.store,
    )
    assert event.source == "pos-store-042"
    assert [(i.namespace, i.value) for i in event.identifiers] == [("loyalty_id", "LC-9")]
    assert event.properties == {
        "receipt_id": "R1",
        "store_id": "store-042",
        "amount": "19.90",
        "currency": "EUR",
        "items": "2",
        "truth_person_id": "4",
    }


def test_crm_row_maps_traits_birth_date_and_consent_words() -> None:
    row = {
        "customer_id": "CRM-1",
        "first_name": "Jürgen",
        "last_name": "Müller",
        "birth_date": "29.2.1984",
        "street": "Hauptstr.",
        "house_number": "12a",
        "postal_code": "10115",
        "city": "Berlin",
        "country": "DE",
        "email": "j@x.de",
        "phone": "0170 1234567",
        "consent_email": "ja",
        "consent_sms": "nein",
        "updated_at": "2026-11-20T08:00:00Z",
    }
    event = map_row(row, DEFAULT_MAPPINGS["crm"], file_id="crm:f:abc", line=5, received_at=NOW)
    assert isinstance(event, ChannelEvent)
    assert event.event_id == "crm-CRM-1-2026-11-20T08:00:00Z"
    assert event.traits.birth_date == "1984-02-29"
    assert event.traits.street == "Hauptstr."
    assert event.consent == {"email_marketing": True, "sms_marketing": False}
    assert {i.namespace for i in event.identifiers} == {"customer_id", "email", "phone"}


def test_a_row_without_its_id_columns_is_identified_by_file_and_line() -> None:
    row = {"store_id": "s", "timestamp": "2026-11-20T10:00:00Z", "loyalty_card": "LC-1"}
    event = map_row(row, DEFAULT_MAPPINGS["pos"], file_id="pos:f.csv:abc", line=7, received_at=NOW)
    assert isinstance(event, ChannelEvent)
    assert event.event_id == "pos:f.csv:abc:7"


@pytest.mark.parametrize(
    ("row", "detail"),
    [
        ({"receipt_id": "R1", "store_id": "s"}, "line 3: timestamp: missing"),
        ({"receipt_id": "R1", "store_id": "s", "timestamp": "gestern"}, "line 3: timestamp:"),
    ],
)
def test_unmappable_rows_are_refused_naming_line_and_column(
    row: dict[str, str], detail: str
) -> None:
    result = map_row(row, DEFAULT_MAPPINGS["pos"], file_id="pos:f:a", line=3, received_at=NOW)
    assert isinstance(result, Rejection)
    assert result.reason is Reason.unmappable_record
    assert result.detail.startswith(detail)


def test_mappings_can_be_added_and_replaced_by_json() -> None:
    extra = {
        "popup": {
            "channel": "store",
            "event_type": "event_visit",
            "source": "popup-{city}",
            "occurred_at": "when",
            "event_id": ["ticket"],
            "identifiers": {"mail": "email"},
        }
    }
    mappings = load_mappings(json.dumps(extra))
    assert set(mappings) == {"pos", "crm", "popup"}
    row = {"when": "2026-11-20T18:00:00Z", "ticket": "T1", "mail": "a@b.de", "city": "Köln"}
    event = map_row(row, mappings["popup"], file_id="popup:x:y", line=2, received_at=NOW)
    assert isinstance(event, ChannelEvent)
    assert (event.source, event.event_id) == ("popup-Köln", "popup-T1")
    with pytest.raises(MappingConfigError):
        load_mappings('{"pos": {"channel": "store"}}')
    with pytest.raises(MappingConfigError):
        load_mappings("[1]")


def test_reading_keeps_quoted_newlines_and_leaves_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b'a,b\n1,"two\nlines"\n3,4\n5,')
    rows = read_rows(path, 4, 2, ["a", "b"], 100)
    assert [(r.line, r.parsed) for r in rows] == [
        (2, {"a": "1", "b": "two\nlines"}),
        (4, {"a": "3", "b": "4"}),
    ]
    assert rows[-1].end == len(b'a,b\n1,"two\nlines"\n3,4\n')


def test_reading_refuses_bad_rows_with_their_reason(tmp_path: Path) -> None:
    csv_path = tmp_path / "x.csv"
    csv_path.write_bytes(b"a,b\n1\n\xff\xfe,2\n")
    bad = [r.parsed for r in read_rows(csv_path, 4, 2, ["a", "b"], 100)]
    assert [r.reason for r in bad if isinstance(r, Rejection)] == [
        Reason.unmappable_record,
        Reason.invalid_utf8,
    ]
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_bytes(b'{"a": 1}\nnot json\n[1]\n')
    parsed = [r.parsed for r in read_rows(jsonl, 0, 1, None, 100)]
    assert parsed[0] == {"a": 1}
    assert [r.reason for r in parsed[1:] if isinstance(r, Rejection)] == [
        Reason.malformed_json,
        Reason.malformed_json,
    ]


def test_checkpoints_are_replaced_atomically(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    first = store.load("pos", "a.csv")
    assert first.offset == 0
    store.save("pos", "a.csv", first.model_copy(update={"offset": 42, "line": 3}))
    assert store.load("pos", "a.csv").offset == 42
    assert [p.name for p in (tmp_path / "pos").iterdir()] == ["a.csv.json"]


# -- the connector over an in-process "Kafka" --------------------------------------------------


class Crash(Exception):
    """The process dies in the middle of a delivery."""


@dataclass
class FakeMessage:
    _key: bytes | None
    _headers: list[tuple[str, bytes]] | None

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


@dataclass
class Log:
    """Two topics as append-only lists, shared by the connector's incarnations."""

    topics: dict[str, list[FakeMessage]] = field(
        default_factory=lambda: {"events": [], "dead-letters": []}
    )


class FakeSink:
    events_topic = "events"
    dead_letters_topic = "dead-letters"

    def __init__(self, log: Log, crash_after: int | None = None) -> None:
        self.log = log
        self.crash_after = crash_after

    def deliver(self, records: Sequence[Outgoing]) -> None:
        for record in records:
            if self.crash_after is not None:
                if self.crash_after == 0:
                    raise Crash
                self.crash_after -= 1
            if isinstance(record, DeadLetter):
                self.log.topics["dead-letters"].append(FakeMessage(None, record.headers()))
            else:
                self.log.topics["events"].append(FakeMessage(record.event_id.encode(), None))


class FakeProbe:
    def __init__(self, log: Log) -> None:
        self.log = log

    def ends(self, topic: str) -> dict[str, int]:
        return {"0": len(self.log.topics[topic])}

    def arrived(self, topic: str, since: dict[str, int]) -> list[Any]:
        return self.log.topics[topic][since.get("0", 0) :]


def connector(tmp_path: Path, log: Log, crash_after: int | None = None) -> FileConnector:
    config = FileConnectorConfig(
        drop_dir=tmp_path / "drop",
        checkpoint_dir=tmp_path / "checkpoints",
        mappings=DEFAULT_MAPPINGS,
        batch_rows=10,
    )
    return FileConnector(
        config,
        FakeSink(log, crash_after),  # type: ignore[arg-type]
        FakeProbe(log),  # type: ignore[arg-type]
        clock=lambda: NOW,
        sleep=lambda _s: None,
    )


def drop(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "drop" / "pos" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def event_ids(log: Log) -> list[str]:
    return [(m.key() or b"").decode() for m in log.topics["events"]]


@pytest.mark.parametrize("crash_after", [0, 4, 10, 14, 23])
def test_a_crash_mid_batch_neither_loses_nor_repeats_a_row(
    tmp_path: Path, crash_after: int
) -> None:
    rows = [pos_row(n) for n in range(25)]
    rows.insert(12, "R-broken,store-001\n")  # a row that goes to the dead letters
    drop(tmp_path, "till.csv", POS_HEADER + "".join(rows))
    log = Log()
    with pytest.raises(Crash):
        connector(tmp_path, log, crash_after).run(once=True)
    totals = connector(tmp_path, log).run(once=True)
    assert sorted(event_ids(log)) == sorted(f"pos-store-001-R{n}" for n in range(25))
    assert len(log.topics["dead-letters"]) == 1
    assert totals["rows"] + totals["dead_letters"] == 26 - crash_after
    # A third start finds nothing left to do.
    assert connector(tmp_path, log).run(once=True) == {"rows": 0, "dead_letters": 0}
    assert len(event_ids(log)) == 25


def test_appended_rows_are_picked_up_and_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    path = drop(tmp_path, "till.csv", POS_HEADER + pos_row(1) + pos_row(2)[:10])
    log = Log()
    connector(tmp_path, log).run(once=True)
    assert event_ids(log) == ["pos-store-001-R1"]  # the unfinished line waits
    with path.open("a", encoding="utf-8") as fh:
        fh.write(pos_row(2)[10:] + pos_row(3))
    connector(tmp_path, log).run(once=True)
    assert event_ids(log) == ["pos-store-001-R1", "pos-store-001-R2", "pos-store-001-R3"]
    path.write_text(POS_HEADER + pos_row(7, "store-009"), encoding="utf-8")  # a new export
    connector(tmp_path, log).run(once=True)
    assert event_ids(log)[-1] == "pos-store-009-R7"
    assert len(event_ids(log)) == 4


def test_files_of_unknown_kinds_are_left_alone_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "drop" / "loyalty" / "a.csv"
    other.parent.mkdir(parents=True)
    other.write_text("x\n1\n")
    log = Log()
    assert connector(tmp_path, log).run(once=True) == {"rows": 0, "dead_letters": 0}
    assert "no mapping for kind 'loyalty'" in caplog.text


def test_a_crm_record_without_customer_id_is_identified_by_its_record_id() -> None:
    row = {
        "customer_id": "",
        "record_id": "SIGNUP-7",
        "last_name": "Weiß",
        "loyalty_id": "LC-1",
        "updated_at": "2026-11-20T08:00:00Z",
    }
    event = map_row(row, DEFAULT_MAPPINGS["crm"], file_id="crm:f:abc", line=9, received_at=NOW)
    assert isinstance(event, ChannelEvent)
    assert event.event_id == "crm-SIGNUP-7"
    assert [(i.namespace, i.value) for i in event.identifiers] == [("loyalty_id", "LC-1")]


class FlakySink(FakeSink):
    """Kafka unreachable for the first ``outages`` deliveries."""

    def __init__(self, log: Log, outages: int) -> None:
        super().__init__(log)
        self.outages = outages

    def deliver(self, records: Sequence[Outgoing]) -> None:
        if self.outages:
            self.outages -= 1
            raise DeliveryError("broker unreachable")
        super().deliver(records)


def test_while_kafka_is_unreachable_the_checkpoint_waits_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    drop(tmp_path, "till.csv", POS_HEADER + "".join(pos_row(n) for n in range(15)))
    log = Log()
    config = FileConnectorConfig(
        tmp_path / "drop", tmp_path / "cp", DEFAULT_MAPPINGS, batch_rows=10
    )
    sleeps: list[float] = []
    flaky = FileConnector(
        config,
        FlakySink(log, outages=3),
        FakeProbe(log),  # type: ignore[arg-type]
        clock=lambda: NOW,
        sleep=sleeps.append,
    )
    flaky.run(once=True)
    assert sorted(event_ids(log)) == sorted(f"pos-store-001-R{n}" for n in range(15))
    assert sleeps.count(config.retry_backoff_s) == 3  # backed off once per failed delivery


def test_a_jsonl_row_with_a_lone_surrogate_is_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "drop" / "pos" / "rows.jsonl"
    path.parent.mkdir(parents=True)
    good = {
        "receipt_id": "R1",
        "store_id": "s1",
        "timestamp": "2026-11-20T10:00:00Z",
        "loyalty_card": "LC-1",
    }
    path.write_text(
        json.dumps(good)
        + "\n"
        + json.dumps({**good, "receipt_id": "R2", "loyalty_card": "LC-\ud800"})
        + "\n",
        encoding="utf-8",
    )
    log = Log()
    assert connector(tmp_path, log).run(once=True) == {"rows": 1, "dead_letters": 1}
    headers = dict(log.topics["dead-letters"][0].headers() or [])
    assert headers["omnistitch.dlq.reason"] == b"invalid_utf8"
