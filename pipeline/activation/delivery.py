"""Webhook delivery of audience changes (part of ``omnistitch activate``): one consumer group per
destination on the audiences topic, records delivered in order.

- An ``Idempotency-Key`` header (the change id) on every request: a receiver deduplicates what
  a retry or a crash repeats.
- Retries with exponential backoff (0.5 s doubling to 30 s; a 429's ``Retry-After`` honoured)
  on timeouts, connection errors, 429 and 5xx, up to the destination's ``max_attempts``; any
  other answer, or the last failure, sends the change to the dead-letter topic with reason
  ``undeliverable`` and the record's original bytes.
- A token bucket per destination (``rate_per_s``).
- The checkpoint is the consumer group's committed offset, committed synchronously after each
  record was acknowledged (2xx) or dead-lettered: a restart resends nothing that was
  acknowledged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline import metrics
from pipeline.activation.destinations import (
    Destination,
    fields_fingerprint,
    payload,
    selected,
    update_payload,
)
from pipeline.clock import Clock, system_clock
from pipeline.contract.dead_letters import DeadLetter, Origin, Reason, Rejection
from pipeline.contract.models import AudienceChange, CustomerProfile
from pipeline.exceptions import DecodeError
from pipeline.rates import TokenBucket
from pipeline.settings import Settings
from pipeline.stream.serialization import Serde
from pipeline.stream.topics import AUDIENCES, DEAD_LETTERS, PROFILES
from pipeline.vault.store import Cells

log = logging.getLogger("omnistitch.destinations")

BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 30.0
TIMEOUT_S = 10.0
PROFILE_WAIT_S = 10.0
RETRIED = frozenset({408, 425, 429, 500, 502, 503, 504})
Profiles = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Members:
    """What a sink reads of the activation stage's state (pipeline.activation.memberships),
    and where it keeps the fingerprint of the last update it sent per customer."""

    profile: Profiles  # the latest stored profile, opened
    audiences: Callable[[str], list[str]]  # the audiences a customer is in now
    open: Callable[[dict[str, Any]], dict[str, Any] | None]  # a profile record, opened
    sent: Cells


def sent_key(destination: str, customer: str) -> bytes:
    return f"u|{destination}|{customer}".encode("utf-8", "surrogatepass")


class WebhookSink(threading.Thread):
    def __init__(
        self,
        settings: Settings,
        destination: Destination,
        serde: Serde,
        members: Members,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(name=f"destination-{destination.destination_id}", daemon=True)
        self.settings, self.destination, self.serde = settings, destination, serde
        self.members, self.profiles, self.clock = members, members.profile, clock
        self.topic = AUDIENCES.name(settings.topic_prefix)
        self.profiles_topic = PROFILES.name(settings.topic_prefix)
        self.dead_topic = DEAD_LETTERS.name(settings.topic_prefix)
        self.bucket = TokenBucket(
            rate=destination.rate_per_s, capacity=max(1.0, 2 * destination.rate_per_s)
        )
        self.halt = threading.Event()
        self.failed: BaseException | None = None
        self.delivered = 0
        self.dead_lettered = 0
        token = os.environ.get(destination.token_env, "") if destination.token_env else ""
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.label = f"destination:{destination.destination_id}"

    def stop(self) -> None:
        self.halt.set()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.failed = exc
            log.error("%s stopped: %s", self.label, type(exc).__name__)

    def _run(self) -> None:
        import urllib3
        from confluent_kafka import Consumer, Producer

        kafka = self.settings.kafka_security().librdkafka()
        self.http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=TIMEOUT_S), retries=False, maxsize=2
        )
        self.producer = Producer({**kafka, "enable.idempotence": True, "acks": "all"})
        consumer = Consumer(
            {
                **kafka,
                "group.id": f"{self.settings.app_id}.destination.{self.destination.destination_id}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe(
            [self.topic, self.profiles_topic] if self.destination.profile_updates else [self.topic]
        )
        try:
            while not self.halt.is_set():
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                if self.handle(message):
                    consumer.commit(message=message, asynchronous=False)
        finally:
            consumer.close()
            self.producer.flush(10)

    def handle(self, message: Any) -> bool:
        """Deliver one record (or skip it: another audience, unreadable); False: stopped before
        it was settled (not committed: delivered again after a restart)."""
        if message.topic() == self.profiles_topic:
            return self.update(message)
        try:
            record = self.serde.decode(self.topic, message.value() or b"", AudienceChange)
        except DecodeError as exc:
            return self._dead_letter(message, f"not readable: {exc.rejection.reason.value}")
        if record["audience_id"] not in self.destination.audiences:
            return True
        change = AudienceChange.from_avro(record).model_dump(mode="json")
        profile = self._profile(change) if change["entered"] else None
        body = json.dumps(payload(self.destination, change, profile), default=str).encode()
        outcome = self._post(body, change["change_id"])
        if outcome is None:
            return False
        if outcome == "ok":
            self.delivered += 1
            metrics.CONNECTOR_RECORDS.labels(self.label, "delivered").inc()
            return True
        return self._dead_letter(message, outcome)

    def update(self, message: Any) -> bool:
        """A profile version: its declared fields to the destination when the customer is in
        one of its audiences and those fields changed since the last update sent."""
        customer = (message.key() or b"").decode("utf-8", "replace")
        at = sent_key(self.destination.destination_id, customer)
        if message.value() is None:  # gone: nothing more to send, nothing kept
            self.members.sent.write({}, [at])
            return True
        audiences = sorted(set(self.members.audiences(customer)) & self.destination.audiences)
        if not audiences:
            return True
        try:
            record = self.serde.decode(self.profiles_topic, message.value(), CustomerProfile)
        except DecodeError:
            return True  # the stage logs unreadable profiles
        profile = self.members.open(record)
        if profile is None:
            return True
        fields = selected(profile, self.destination.fields)
        fingerprint = fields_fingerprint(fields).encode()
        if self.members.sent.get(at) == fingerprint:
            return True
        key = f"upd-{fingerprint.decode()[:24]}-{customer}"[:120]
        when = self.clock().isoformat()
        body = update_payload(self.destination, customer, audiences, fields, key, when)
        outcome = self._post(json.dumps(body, default=str).encode(), key)
        if outcome is None:
            return False
        if outcome != "ok":
            return self._dead_letter(message, outcome)
        self.members.sent.write({at: fingerprint}, [])
        self.delivered += 1
        metrics.CONNECTOR_RECORDS.labels(self.label, "delivered").inc()
        return True

    def _profile(self, change: dict[str, Any]) -> Mapping[str, Any] | None:
        """The profile the entry was judged on or a later one: the stage writes it right after
        Kafka acknowledged the change, so it may lag by a moment (at most PROFILE_WAIT_S)."""
        deadline = time.monotonic() + PROFILE_WAIT_S
        while True:
            profile = self.profiles(change["customer_id"])
            current = profile is not None and int(profile.get("version") or 0) >= int(
                change["profile_version"]
            )
            if current or time.monotonic() > deadline or self.halt.wait(0.1):
                return profile

    def _post(self, body: bytes, key: str) -> str | None:
        """ "ok", a failure description, or None when stopped meanwhile."""
        delay, why = BACKOFF_START_S, "no attempt"
        for attempt in range(1, self.destination.max_attempts + 1):
            while not self.bucket.take(self.destination.destination_id):
                if self.halt.wait(self.bucket.wait_s(self.destination.destination_id)):
                    return None
            wait = delay
            try:
                answer = self.http.request(
                    "POST",
                    self.destination.url,
                    body=body,
                    headers={**self.headers, "Idempotency-Key": key},
                )
                if 200 <= answer.status < 300:
                    return "ok"
                why = f"HTTP {answer.status}"
                if answer.status not in RETRIED:
                    return why
                retry_after = answer.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = min(float(retry_after), BACKOFF_MAX_S)
            except Exception as exc:  # urllib3's timeouts and connection errors
                why = type(exc).__name__
            if attempt < self.destination.max_attempts:
                log.info(
                    "%s: attempt %d failed (%s), again in %.1fs", self.label, attempt, why, wait
                )
                if self.halt.wait(wait):
                    return None
                delay = min(delay * 2, BACKOFF_MAX_S)
        return f"{why} after {self.destination.max_attempts} attempts"

    def _dead_letter(self, message: Any, why: str) -> bool:
        letter = DeadLetter(
            Origin(f"{self.label}:{message.topic()}", message.partition(), message.offset()),
            Rejection(Reason.undeliverable, why),
            message.key(),
            message.value(),
            self.clock(),
        ).bounded()
        failed: list[str] = []
        headers: list[tuple[str, str | bytes | None]] = list(letter.headers())
        self.producer.produce(
            self.dead_topic,
            key=message.key(),
            value=letter.value,
            headers=headers,
            on_delivery=lambda error, _m: failed.append(str(error)) if error else None,
        )
        while self.producer.flush(5) or failed:
            if failed or self.halt.is_set():
                return False  # not settled: tried again after a restart
        self.dead_lettered += 1
        metrics.CONNECTOR_RECORDS.labels(self.label, "dead_lettered").inc()
        metrics.DEAD_LETTERS.labels(self.label, Reason.undeliverable.value).inc()
        log.warning("%s: a change went to the dead letters (%s)", self.label, why)
        return True


def wait_all(sinks: list[WebhookSink], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for sink in sinks:
        sink.join(max(0.0, deadline - time.monotonic()))
