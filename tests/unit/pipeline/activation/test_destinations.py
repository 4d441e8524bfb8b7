"""Destinations: only declared fields leave and only with an entry; the ad platforms' hashing;
refused definitions; the webhook sink against a local receiver — retries with backoff, the
idempotency key, Retry-After, a refusal and exhausted attempts dead-lettered, the rate limit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.activation import delivery
from pipeline.activation.delivery import Members, WebhookSink
from pipeline.activation.destinations import (
    Destination,
    hashed_email,
    hashed_phone,
    parse_destinations,
    payload,
    selected,
)
from pipeline.activation.receiver import Receiver
from pipeline.contract.models import AudienceChange
from pipeline.exceptions import ConfigurationError
from pipeline.settings import Settings
from pipeline.vault.store import MemoryCells
from tests.factories import NOW, MemorySerde

PROFILE = {
    "customer_id": "cus-1",
    "version": 3,
    "identifiers": {"email": ["kim@example.de"], "phone": ["+4915112345678"]},
    "traits": {"first_name": "Kim", "birth_date": "1990-01-02"},
    "computed": {"preferred_store": "S-1", "revenue": {"EUR": "80.00"}},
}


def _change(entered: bool = True, change_id: str = "aud-1") -> dict[str, Any]:
    return AudienceChange(
        change_id=change_id,
        audience_id="buyers",
        customer_id="cus-1",
        entered=entered,
        reason="meets the audience's conditions",
        profile_version=3,
        occurred_at=NOW,
    ).model_dump(mode="json")


def test_only_declared_fields_leave_and_only_with_an_entry() -> None:
    crm = Destination(
        "crm",
        "http://x",
        frozenset({"buyers"}),
        ("traits.first_name", "computed.preferred_store", "traits.city"),
    )
    body = payload(crm, _change(), PROFILE)
    assert body["profile"] == {"traits.first_name": "Kim", "computed.preferred_store": "S-1"}
    assert "birth_date" not in json.dumps(body) and "kim@example.de" not in json.dumps(body)
    assert (body["idempotency_key"], body["event"]) == ("aud-1", "entered")
    exit_body = payload(crm, _change(entered=False), PROFILE)
    assert exit_body["profile"] == {} and exit_body["event"] == "exited"
    assert selected(None, crm.fields) == {}


def test_ad_platform_hashing() -> None:
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    assert hashed_email(" Kim.Lo@Gmail.com ", "google") == sha("kimlo@gmail.com")
    assert hashed_email(" Kim.Lo@Gmail.com ", "meta") == sha("kim.lo@gmail.com")
    assert hashed_email("Kim.Lo@example.de", "google") == sha("kim.lo@example.de")
    assert hashed_phone("+4915112345678", "google") == sha("+4915112345678")
    assert hashed_phone("+4915112345678", "meta") == sha("4915112345678")


@pytest.mark.parametrize(
    "item, message",
    [
        ({"id": "A", "url": "http://x", "audiences": ["a"]}, "unique id"),
        ({"id": "a", "url": "ftp://x", "audiences": ["a"]}, "http"),
        ({"id": "a", "url": "http://x", "audiences": []}, "non-empty"),
        ({"id": "a", "url": "http://x", "audiences": ["a"], "fields": ["a b"]}, "dotted"),
        ({"id": "a", "url": "http://x", "audiences": ["a"], "rate_per_s": 0}, "rate_per_s"),
        ({"id": "a", "url": "http://x", "audiences": ["a"], "max_attempts": 50}, "max_attempts"),
        ({"id": "a", "url": "http://x", "audiences": ["a"], "token_env": "HOME"}, "OMNISTITCH_"),
    ],
)
def test_a_bad_destination_is_refused(item: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_destinations({"destinations": [item]})


class Message:
    def __init__(self, value: bytes | None, topic: str = "t.audiences.v1") -> None:
        self._value, self._topic = value, topic

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes:
        return b"cus-1"

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7


class Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.sent.append({"topic": topic, **kwargs})

    def flush(self, _timeout: float) -> int:
        return 0


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(delivery, "BACKOFF_START_S", 0.05)
    monkeypatch.setattr(delivery, "BACKOFF_MAX_S", 0.2)
    yield


def _sink(url: str, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> tuple[WebhookSink, Producer]:
    import urllib3

    monkeypatch.setenv("OMNISTITCH_DESTINATION_T_TOKEN", "dest-token-123")
    destination = Destination(
        "crm",
        url,
        frozenset({"buyers"}),
        ("traits.first_name",),
        token_env="OMNISTITCH_DESTINATION_T_TOKEN",
        **extra,
    )
    serde = MemorySerde()
    members = Members(
        lambda _c: PROFILE, lambda _c: ["buyers"], lambda record: record, MemoryCells()
    )
    sink = WebhookSink(Settings(topic_prefix="t."), destination, serde, members)
    sink.http = urllib3.PoolManager(timeout=urllib3.Timeout(total=2), retries=False)
    producer = Producer()
    sink.producer = producer
    return sink, producer


def _message(sink: WebhookSink, **change: Any) -> Message:
    record = AudienceChange.model_validate(_change(**change))
    return Message(sink.serde.encode(sink.topic, record))


def test_retries_with_the_same_idempotency_key_until_acknowledged(
    fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver([(503, {}), (429, {"Retry-After": "0"}), (200, {})])
    sink, producer = _sink(receiver.url, monkeypatch)
    assert sink.handle(_message(sink)) is True
    assert len(receiver.got) == 3 and producer.sent == []
    keys = {d.headers["Idempotency-Key"] for d in receiver.got}
    assert keys == {"aud-1"}
    assert receiver.got[0].headers["Authorization"] == "Bearer dest-token-123"
    assert receiver.got[-1].body["profile"] == {"traits.first_name": "Kim"}
    assert sink.delivered == 1


def test_a_refusal_and_exhausted_attempts_go_to_the_dead_letters(
    fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver([(400, {})])
    sink, producer = _sink(receiver.url, monkeypatch)
    message = _message(sink)
    assert sink.handle(message) is True
    assert len(receiver.got) == 1  # a 400 is not retried
    (letter,) = producer.sent
    headers = dict(letter["headers"])
    assert letter["topic"] == "t.dead-letters.v1" and letter["value"] == message.value()
    assert headers["omnistitch.dlq.reason"] == b"undeliverable"
    receiver.answers[:] = [(500, {})] * 10
    sink, producer = _sink(receiver.url, monkeypatch, max_attempts=3)
    assert sink.handle(_message(sink, change_id="aud-2")) is True
    assert len(receiver.got) == 1 + 3
    assert b"after 3 attempts" in dict(producer.sent[0]["headers"])["omnistitch.dlq.detail"]


def test_the_rate_limit_spaces_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver([])
    sink, _ = _sink(receiver.url, monkeypatch, rate_per_s=10.0)
    for n in range(25):
        assert sink.handle(_message(sink, change_id=f"aud-{n}")) is True
    times = [d.at for d in receiver.got]
    # A burst of 20 (2 s worth), then 10 per second.
    assert times[-1] - times[0] >= 0.4
    assert sink.delivered == 25


def test_other_audiences_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver([])
    sink, _ = _sink(receiver.url, monkeypatch)
    record = AudienceChange.model_validate(_change() | {"audience_id": "lapsed"})
    assert sink.handle(Message(sink.serde.encode(sink.topic, record))) is True
    assert receiver.got == []


def test_export_rows_pair_every_address_and_number() -> None:
    from pipeline.activation.export import rows

    found = rows(
        {"identifiers": {"email": ["a@x.de", "b@x.de"], "phone": ["+4930123456"]}}, "google"
    )
    assert found == [
        (hashed_email("a@x.de", "google"), hashed_phone("+4930123456", "google")),
        (hashed_email("b@x.de", "google"), ""),
    ]
    assert rows({"identifiers": {"anonymous_id": ["x"]}}, "meta") == []


def test_members_profile_updates_go_out_when_declared_fields_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.contract.models import Traits
    from tests.factories import make_profile

    receiver = Receiver([])
    sink, _ = _sink(receiver.url, monkeypatch, profile_updates=True)

    def version(first_name: str, city: str, n: int) -> Message:
        profile = make_profile(
            customer_id="cus-1", traits=Traits(first_name=first_name, city=city), version=n
        )
        return Message(sink.serde.encode(sink.profiles_topic, profile), "t.profiles.v1")

    assert sink.handle(version("Kim", "Köln", 1)) is True
    assert sink.handle(version("Kim", "Bonn", 2)) is True  # an undeclared field: nothing sent
    assert sink.handle(version("Kimberly", "Bonn", 3)) is True
    assert [body["profile"] for body in receiver.bodies()] == [
        {"traits.first_name": "Kim"},
        {"traits.first_name": "Kimberly"},
    ]
    assert {body["event"] for body in receiver.bodies()} == {"updated"}
    assert receiver.got[0].body["audience_ids"] == ["buyers"]
    assert sink.handle(Message(None, "t.profiles.v1")) is True  # gone: its fingerprint too
    assert sink.members.sent.get(b"u|crm|cus-1") is None
