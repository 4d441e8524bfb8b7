"""Table writes reach Kafka before the offsets that caused them are committed.

faust-streaming (0.15.3) does not produce a table's changelog record when the table is written:
``table[key] = value`` puts the record in the producer's ``ProducerBuffer`` and a background
task hands it to the Kafka producer later. Three flaws in that buffer break at-least-once:

1. ``ProducerBuffer.flush()``, which the consumer awaits before every offset commit, gives up
   after 0.1 s without a record sent, so offsets can be committed while table writes are still
   queued whenever one send takes longer than that (a loaded machine, a producer waiting for
   metadata or for room in its buffer).
2. It also ignores the record the background task has taken from the queue but not yet handed
   to Kafka: the queue is empty, the record is not in the Kafka producer either.
3. At shutdown the Kafka producer is stopped before the buffer, the background task ends after
   the record in hand, and the buffer's own flush refuses to run ("Cannot flush: Producer not
   Running"): whatever is still queued is dropped.

A worker stopped (or killed) after such a commit restarts with a table that misses writes whose
input offsets are committed: they are never redone. ``install()`` replaces those pieces: a
full flush (before a commit, at a stop) that waits until every record queued before it was
handed to Kafka (counted, so the one in hand counts too, and records queued meanwhile cannot
keep it waiting), a background task that drains the queue before it ends, and a producer stop
that flushes the buffer while Kafka still accepts records. It is idempotent and is called by
every faust app of the project.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import ProducerBuffer
from mode import Service

log = logging.getLogger("omnistitch.durability")

#: How long one wait for the next record to be sent lasts before the flush checks that the
#: buffer can still send, and logs that it is waiting.
WAIT_STEP_S = 1.0
WARN_EVERY_S = 10.0

_INSTALLED = "_omnistitch_durable"


def _count(buffer: Any, name: str) -> int:
    return int(getattr(buffer, name, 0))


def _put(self: Any, fut: Any) -> None:
    """Queue a record as before, and count it (the flush waits for a count, not for empty)."""
    self._omnistitch_put = _count(self, "_omnistitch_put") + 1
    _ORIGINAL_PUT(self, fut)


async def _handle_pending(self: Any) -> None:
    """Hand queued records to Kafka, one at a time and in order, until stopped *and* empty."""
    get_pending = self.pending.get
    self._omnistitch_ended = False
    try:
        while not (self.should_stop and self.pending.empty()):
            message = await get_pending()
            await self._send_pending(message)
            self._omnistitch_sent = _count(self, "_omnistitch_sent") + 1
            self.message_sent.set()
    finally:
        self._omnistitch_ended = True


async def _flush_atmost(self: Any, max_messages: int | None) -> int:
    """A full flush (commit, stop) waits until every record queued before it was handed to
    Kafka; records queued meanwhile are not waited for (under steady load the buffer is rarely
    empty, and a commit only needs the writes made before it). A bounded flush is faust's
    back-pressure (streams pause while the buffer holds more than 100 records) and keeps
    faust's behaviour: it may return early, nothing is committed on it."""
    if max_messages is not None or (self.app is not None and self.app.conf.producer_threaded):
        return await _ORIGINAL_FLUSH_ATMOST(self, max_messages)
    first = _count(self, "_omnistitch_sent")
    target = _count(self, "_omnistitch_put")
    waited = 0.0
    while _count(self, "_omnistitch_sent") < target:
        if self.state in ("init", "crashed") or getattr(self, "_omnistitch_ended", False):
            unsent = target - _count(self, "_omnistitch_sent")
            raise RuntimeError(f"producer buffer not sending: {unsent} table writes not sent")
        self.message_sent.clear()
        try:
            await asyncio.wait_for(self.message_sent.wait(), timeout=WAIT_STEP_S)
        except TimeoutError:
            waited += WAIT_STEP_S
            if waited % WARN_EVERY_S < WAIT_STEP_S:
                log.warning(
                    "waiting %.0fs for %d table writes to reach Kafka",
                    waited,
                    target - _count(self, "_omnistitch_sent"),
                )
    return _count(self, "_omnistitch_sent") - first


async def _producer_on_stop(self: Any) -> None:
    """Flush the buffer while the Kafka producer still runs, then stop as before."""
    if self._producer is not None:
        await self.flush()
    await _ORIGINAL_PRODUCER_ON_STOP(self)


_ORIGINAL_PUT = ProducerBuffer.put
_ORIGINAL_FLUSH_ATMOST = ProducerBuffer.flush_atmost
_ORIGINAL_PRODUCER_ON_STOP = aiokafka_driver.Producer.on_stop


def install() -> None:
    """Patch faust's producer buffer and producer (once per process)."""
    if getattr(ProducerBuffer, _INSTALLED, False):
        return
    ProducerBuffer.put = _put  # type: ignore[method-assign]
    ProducerBuffer._handle_pending = Service.task(_handle_pending)  # type: ignore[method-assign]
    ProducerBuffer.flush_atmost = _flush_atmost  # type: ignore[method-assign]
    aiokafka_driver.Producer.on_stop = _producer_on_stop  # type: ignore[method-assign]
    setattr(ProducerBuffer, _INSTALLED, True)


def installed() -> bool:
    return bool(getattr(ProducerBuffer, _INSTALLED, False))
