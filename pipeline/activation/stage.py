"""``omnistitch activate``: audiences evaluated as profiles change and as time passes.

Reads the profiles topic from its own offsets, judges every audience of
``OMNISTITCH_AUDIENCES_FILE`` (pipeline.activation.memberships, pipeline.engine.audiences) and
produces each entry and exit to the audiences topic and each customer's current audiences to
the compacted memberships topic. Every ``OMNISTITCH_ACTIVATION_SWEEP_S`` the customers for
whom a time window of an audience turned since are judged again (an index by that moment: the
timer reads those customers only); every ``OMNISTITCH_RFM_REFRESH_S`` the population's RFM bins
are computed anew and every customer's score and time- and RFM-based audiences with them. A
new or changed definition is backfilled from the stored profiles at start, and when the
definitions file changes while the stage runs (looked at every ``RELOAD_CHECK_S``; a file that
does not parse is logged and the definitions in use stay).
Outputs are acknowledged by Kafka before the state and offsets that produced them are
written (at-least-once, deterministic change ids). An erased or merged-away customer (a
profile tombstone) leaves every audience and its stored profile is deleted and purged from the
files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline import metrics
from pipeline.activation.destinations import Destination, parse_destinations
from pipeline.activation.memberships import Memberships, Outcome, offset_key
from pipeline.clock import Clock, system_clock
from pipeline.contract.models import CustomerProfile
from pipeline.engine.audiences import Audience, parse
from pipeline.engine.rfm import uses_rfm
from pipeline.exceptions import (
    ConfigurationError,
    DecodeError,
    DeliveryError,
    VaultUnavailableError,
)
from pipeline.settings import Settings
from pipeline.stream.serialization import Serde
from pipeline.stream.topics import AUDIENCES, MEMBERSHIPS, PROFILES
from pipeline.vault.client import Vault
from pipeline.vault.sealer import readable
from pipeline.vault.store import Cells, Staged

log = logging.getLogger("omnistitch.activate")
BATCH = 500
RELOAD_CHECK_S = 5.0


def _stamp(path: Path | None) -> tuple[int, int] | None:
    """When and how big the file was last written (None: no file)."""
    try:
        found = path.stat() if path is not None else None
    except OSError:
        return None
    return None if found is None else (found.st_mtime_ns, found.st_size)


def _data(path: Path, what: str) -> Any:
    """The content of a YAML (or JSON) file; a ConfigurationError naming it otherwise."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{what} {path}: {exc}") from exc


def load_audiences(path: Path) -> list[Audience]:
    """Audience definitions from a YAML or JSON file (docs/audiences.md)."""
    return parse(_data(path, "audience definitions"))


def load_destinations(path: Path) -> list[Destination]:
    """Destinations from a YAML or JSON file (pipeline.activation.destinations)."""
    return parse_destinations(_data(path, "destinations"))


def opener(vault: Vault | None) -> Any:
    """Profiles as the audiences judge them (pipeline.vault.sealer.readable)."""
    return lambda record: readable(record, vault)


class ActivationStage:
    def __init__(
        self,
        settings: Settings,
        audiences: list[Audience],
        cells: Cells,
        serde: Serde,
        vault: Vault | None,
        clock: Clock = system_clock,
        definitions: Path | None = None,
    ) -> None:
        """``definitions``: the file ``audiences`` came from, read again when it changes."""
        self.settings, self.serde, self.clock, self.cells = settings, serde, clock, cells
        self.definitions, self.stamp = definitions, _stamp(definitions)
        self.behind = False  # a backfill of changed definitions is still to be done
        self.memberships = Memberships(cells, audiences, opener(vault), settings.rfm_currency)
        prefix = settings.topic_prefix
        self.profiles = PROFILES.name(prefix)
        self.audiences_topic = AUDIENCES.name(prefix)
        self.memberships_topic = MEMBERSHIPS.name(prefix)
        self.halt = threading.Event()
        self.ready = threading.Event()
        self.producer: Any = None

    def stop(self, *_args: Any) -> None:
        self.halt.set()

    def _deliver(self, outcome: Outcome) -> None:
        """Produce the batch's outputs and wait for Kafka's acknowledgement (or raise)."""
        failed: list[str] = []

        def done(error: Any, _message: Any) -> None:
            if error is not None:
                failed.append(str(error))

        for change in outcome.changes:
            value = self.serde.encode(self.audiences_topic, change)
            self.producer.produce(
                self.audiences_topic, key=change.customer_id.encode(), value=value, on_delivery=done
            )
        for customer, membership in outcome.memberships.items():
            record = (
                None
                if membership is None
                else self.serde.encode(self.memberships_topic, membership)
            )
            self.producer.produce(
                self.memberships_topic, key=customer.encode(), value=record, on_delivery=done
            )
        if self.producer.flush(self.settings.delivery_timeout_s) or failed:
            raise DeliveryError(f"activation outputs not acknowledged: {failed[:1] or 'timeout'}")
        entered = sum(c.entered for c in outcome.changes)
        metrics.RECORDS_OUT.labels("activate", "entered").inc(entered)
        metrics.RECORDS_OUT.labels("activate", "exited").inc(len(outcome.changes) - entered)

    def _commit(self, staged: Staged, outcome: Outcome, purge: bool) -> None:
        """Outputs first, then the state that produced them (a crash repeats, never loses)."""
        while True:
            try:
                self._deliver(outcome)
                break
            except DeliveryError as exc:
                log.warning("activate: %s; retrying", exc)
                if self.halt.wait(1.0):
                    raise
        staged.commit()
        if purge:
            self.cells.purge()  # a gone customer's profile leaves the files

    def backfill(self, audiences: frozenset[str], now: datetime) -> int:
        staged, outcome = Staged(self.cells), Outcome()
        seen = self.memberships.sweep(audiences, now, staged, outcome)
        self._commit(staged, outcome, purge=False)
        return seen

    def timed(self) -> frozenset[str]:
        """The audiences the RFM refresh re-evaluates for everyone: time windows and RFM."""
        return frozenset(
            a.audience_id
            for a in self.memberships.audiences
            if a.time_based() or uses_rfm(a.condition)
        )

    def windowed(self) -> frozenset[str]:
        """The audiences with time windows: the timer looks at the customers they turn for."""
        return frozenset(a.audience_id for a in self.memberships.audiences if a.time_based())

    def tick(self) -> int:
        """The timer: time-windowed audiences judged again for the customers whose window
        turned since (pipeline.activation.memberships ``t|`` index), not for everyone."""
        staged, outcome = Staged(self.cells), Outcome()
        seen = self.memberships.sweep_due(self.windowed(), self.clock(), staged, outcome)
        self._commit(staged, outcome, purge=False)
        return seen

    def reload(self) -> bool:
        """Read the definitions file again if it changed since it was read: new, changed and
        removed audiences are backfilled from the stored profiles. Returns whether the
        definitions in use changed. A file that does not parse changes nothing (logged)."""
        stamp = _stamp(self.definitions)
        if self.definitions is None or stamp is None or stamp == self.stamp:
            return False
        self.stamp = stamp
        try:
            audiences = load_audiences(self.definitions)
        except (ConfigurationError, OSError) as exc:
            log.error(
                "activate: %s changed but was not loaded (%s); the definitions in use stay",
                self.definitions,
                exc,
            )
            return False
        self.memberships.audiences = audiences
        log.info("activate: %d audiences from %s", len(audiences), self.definitions)
        return self.catch_up()

    def catch_up(self) -> bool:
        """New, changed and removed audiences backfilled from the stored profiles. Returns
        whether there were any. The vault unreachable: ``behind`` stays set, tried again."""
        stale = self.memberships.stale_definitions()
        self.behind = bool(stale)
        if stale and self._timer(lambda: self.backfill(stale, self.clock()), "the backfill"):
            self.behind = False
            log.info("activate: %d audiences (re)built from the stored profiles", len(stale))
        return bool(stale)

    def _timer(self, step: Callable[[], Any], what: str) -> bool:
        """One step that reads stored profiles (a timer's, a backfill): with the vault out of
        reach nothing of it is written and it is tried again later (logged), the stage goes on
        with the stream."""
        try:
            step()
            return True
        except VaultUnavailableError:
            log.warning("activate: the vault is unreachable; %s is tried again later", what)
            return False

    def refresh(self) -> None:
        """The population's RFM bins anew, then the time- and RFM-based audiences and every
        customer's score again, for everyone (at start and every ``OMNISTITCH_RFM_REFRESH_S``)."""
        now = self.clock()
        staged = Staged(self.cells)
        scored = self.memberships.refresh_bins(now, staged)
        staged.commit()
        seen = self.backfill(self.timed(), now)
        log.info("activate: RFM bins from %d buyers; %d customers re-evaluated", scored, seen)

    def handle(self, messages: list[Any], now: datetime) -> int:
        items: list[tuple[str, dict[str, Any] | None]] = []
        staged = Staged(self.cells)
        for message in messages:
            staged.put(
                offset_key(message.topic(), message.partition()), b"%d" % (message.offset() + 1)
            )
            raw, key = message.value(), (message.key() or b"").decode("utf-8", "replace")
            if raw is None:
                items.append((key, None))
                continue
            try:
                items.append((key, self.serde.decode(self.profiles, raw, CustomerProfile)))
            except DecodeError as exc:
                log.warning(
                    "activate: %s[%d]@%d not readable (%s): passed over",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    exc.rejection.reason.value,
                )
        outcome = Outcome()
        while True:
            try:
                self.memberships.on_profiles(items, now, staged, outcome)
                break
            except VaultUnavailableError:
                log.warning("activate: the vault is unreachable; the batch waits")
                staged, outcome = Staged(self.cells), Outcome()
                for message in messages:
                    staged.put(
                        offset_key(message.topic(), message.partition()),
                        b"%d" % (message.offset() + 1),
                    )
                if self.halt.wait(1.0):
                    raise
        self._commit(staged, outcome, purge=any(record is None for _, record in items))
        metrics.RECORDS_IN.labels("activate").inc(len(messages))
        return len(outcome.changes)

    def run(self) -> None:
        from confluent_kafka import Consumer, Producer, TopicPartition

        kafka = self.settings.kafka_security().librdkafka()
        self.producer = Producer({**kafka, "enable.idempotence": True, "acks": "all"})
        consumer = Consumer(
            {
                **kafka,
                "group.id": f"{self.settings.app_id}.activate",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            metadata = consumer.list_topics(self.profiles, timeout=30).topics[self.profiles]
            partitions = sorted(metadata.partitions)
            offsets = self.memberships.offsets(self.profiles, partitions)
            consumer.assign([TopicPartition(self.profiles, p, o) for p, o in offsets.items()])
            self.catch_up()
            swept = looked = refreshed = time.monotonic()
            if not self._timer(self.refresh, "the RFM refresh"):
                refreshed -= self.settings.rfm_refresh_s - RELOAD_CHECK_S  # soon, not in an hour
            self.ready.set()
            metrics.STAGE_READY.labels("activate").set(1)
            while not self.halt.is_set():
                messages = [m for m in consumer.consume(BATCH, 0.5) if not m.error()]
                if messages:
                    self.handle(messages, self.clock())
                if time.monotonic() - looked >= RELOAD_CHECK_S:
                    looked = time.monotonic()
                    if not self.reload() and self.behind:
                        self.catch_up()
                if time.monotonic() - refreshed >= self.settings.rfm_refresh_s:
                    swept = refreshed = time.monotonic()
                    if not self._timer(self.refresh, "the RFM refresh"):
                        refreshed = swept - self.settings.rfm_refresh_s + RELOAD_CHECK_S
                elif time.monotonic() - swept >= self.settings.activation_sweep_s:
                    swept = time.monotonic()
                    self._timer(self.tick, "the timer")
        finally:
            consumer.close()
            self.producer.flush(10)
