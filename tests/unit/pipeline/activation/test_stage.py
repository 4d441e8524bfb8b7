"""The activation stage without a broker: definitions read again when their file changes
(backfilled from the stored profiles; a broken file changes nothing), outputs produced before
the state is written."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.activation.memberships import Outcome
from pipeline.activation.stage import ActivationStage, load_audiences
from pipeline.contract.models import AudienceChange, ComputedTraits
from pipeline.exceptions import VaultUnavailableError
from pipeline.settings import Settings
from pipeline.vault.store import MemoryCells, Staged
from tests.factories import NOW, MemorySerde, make_profile
from tests.unit.pipeline.serving.conftest import decoded

BUYERS = """
audiences:
  - id: buyers
    condition: {trait: computed.order_count, op: gte, value: 1}
"""
LAPSED = """
audiences:
  - id: lapsed
    condition: {older_than_days: 90, of: computed.last_order_at}
"""
BIG_BUYERS = """
audiences:
  - id: buyers
    condition: {trait: computed.order_count, op: gte, value: 1}
  - id: big-buyers
    condition: {trait: computed.order_count, op: gte, value: 3}
"""


class Producer:
    """Takes every record and acknowledges it at flush."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    def produce(self, topic: str, key: bytes, value: bytes | None, on_delivery: Any) -> None:
        self.sent.append((topic, value))

    def flush(self, _timeout: float) -> int:
        return 0


def _write(path: Path, text: str, tick: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(tick * 10**9, tick * 10**9))  # a new stamp even within one clock tick


@pytest.fixture
def stage(tmp_path: Path) -> ActivationStage:
    path = tmp_path / "audiences.yaml"
    _write(path, BUYERS, 1)
    made = ActivationStage(
        Settings(topic_prefix="t."),
        load_audiences(path),
        MemoryCells(),
        MemorySerde(),
        None,
        lambda: NOW,
        definitions=path,
    )
    made.producer = Producer()
    staged, outcome = Staged(made.cells), Outcome()
    for n, orders in enumerate((1, 4)):
        ordered = NOW - timedelta(days=10 * (n + 1))
        computed = ComputedTraits(order_count=orders, last_order_at=ordered)
        profile = decoded(make_profile(customer_id=f"cus-{n}", version=1, computed=computed))
        made.memberships.on_profiles([(f"cus-{n}", profile)], NOW, staged, outcome)
    made._commit(staged, outcome, purge=False)
    made.backfill(made.memberships.stale_definitions(), NOW)  # as at start: definitions kept
    assert made.memberships.stale_definitions() == frozenset()
    return made


def _entered(stage: ActivationStage) -> list[tuple[str, str]]:
    serde, topic = stage.serde, stage.audiences_topic
    changes = [
        AudienceChange.model_validate(serde.decode(topic, value, AudienceChange))
        for sent_to, value in stage.producer.sent
        if sent_to == topic and value is not None
    ]
    return sorted((c.audience_id, c.customer_id) for c in changes if c.entered)


def test_a_changed_definitions_file_is_read_again_and_backfilled(stage: ActivationStage) -> None:
    assert _entered(stage) == [("buyers", "cus-0"), ("buyers", "cus-1")]
    assert stage.reload() is False  # unchanged: nothing read, nothing done
    assert stage.definitions is not None
    _write(stage.definitions, BIG_BUYERS, 2)
    assert stage.reload() is True
    assert [a.audience_id for a in stage.memberships.audiences] == ["buyers", "big-buyers"]
    assert ("big-buyers", "cus-1") in _entered(stage)
    assert ("big-buyers", "cus-0") not in _entered(stage)
    assert stage.memberships.stale_definitions() == frozenset()
    assert stage.timed() == frozenset()


def test_removing_an_audience_lets_its_members_leave(stage: ActivationStage) -> None:
    assert stage.definitions is not None
    _write(stage.definitions, "audiences: []\n", 2)
    assert stage.reload() is True
    serde, topic = stage.serde, stage.audiences_topic
    exits = [
        AudienceChange.model_validate(serde.decode(topic, value, AudienceChange))
        for sent_to, value in stage.producer.sent
        if sent_to == topic and value is not None
    ]
    assert sorted(c.customer_id for c in exits if not c.entered) == ["cus-0", "cus-1"]


def test_a_broken_definitions_file_keeps_the_definitions_in_use(
    stage: ActivationStage, caplog: pytest.LogCaptureFixture
) -> None:
    assert stage.definitions is not None
    sent = len(stage.producer.sent)
    _write(stage.definitions, "audiences: [{id: broken, condition: {trait: x, op: nope}}]", 2)
    with caplog.at_level(logging.ERROR, logger="omnistitch.activate"):
        assert stage.reload() is False
    assert "the definitions in use stay" in caplog.text
    assert [a.audience_id for a in stage.memberships.audiences] == ["buyers"]
    assert len(stage.producer.sent) == sent
    stage.definitions.unlink()
    assert stage.reload() is False  # a file gone for a moment is no change either


def test_the_timer_judges_the_customers_whose_window_turned(stage: ActivationStage) -> None:
    assert stage.definitions is not None
    _write(stage.definitions, LAPSED, 2)
    assert stage.reload() is True and stage.windowed() == frozenset({"lapsed"})
    moments = iter([NOW + timedelta(days=d) for d in (60, 75, 85)])
    stage.clock = lambda: next(moments)
    assert stage.tick() == 0  # nobody's last order is 90 days old yet
    assert stage.tick() == 1  # cus-1's is (ordered 20 days before NOW), cus-0's (10) not yet
    assert ("lapsed", "cus-1") in _entered(stage) and ("lapsed", "cus-0") not in _entered(stage)
    assert stage.tick() == 1
    assert ("lapsed", "cus-0") in _entered(stage)


def test_the_vault_out_of_reach_delays_the_timer_and_the_backfill_without_a_crash(
    stage: ActivationStage, caplog: pytest.LogCaptureFixture
) -> None:
    assert stage.definitions is not None
    readable = stage.memberships.opener

    def unreachable(_record: dict[str, Any]) -> dict[str, Any] | None:
        raise VaultUnavailableError("vault down")

    stage.memberships.opener = unreachable
    sent = len(stage.producer.sent)
    _write(stage.definitions, LAPSED, 2)
    with caplog.at_level(logging.WARNING, logger="omnistitch.activate"):
        assert stage.reload() is True  # the definitions are read; their backfill waits
        assert stage.behind
    assert "the vault is unreachable; the backfill is tried again later" in caplog.text
    assert len(stage.producer.sent) == sent and stage.memberships.stale_definitions()
    stage.memberships.opener = readable  # back: the next look catches up
    assert stage.catch_up() is True and not stage.behind
    assert stage.memberships.stale_definitions() == frozenset()
    stage.clock = lambda: NOW + timedelta(days=75)  # cus-1's window has turned
    stage.memberships.opener = unreachable
    sent = len(stage.producer.sent)
    with caplog.at_level(logging.WARNING, logger="omnistitch.activate"):
        assert not stage._timer(stage.tick, "the timer")
    assert "the timer is tried again later" in caplog.text and len(stage.producer.sent) == sent
    stage.memberships.opener = readable
    assert stage._timer(stage.tick, "the timer") and ("lapsed", "cus-1") in _entered(stage)
