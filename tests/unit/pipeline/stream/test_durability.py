"""pipeline.stream.durability: table writes queued in faust's producer buffer are all handed to the
Kafka producer, in order, before a flush returns and before the buffer stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.producer import ProducerBuffer

from pipeline.stream import durability

durability.install()


@dataclass
class SlowChannel:
    """Stands in for a changelog topic whose first sends wait (e.g. for metadata)."""

    delays: list[float]
    published: list[int] = field(default_factory=list)

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(self.delays[len(self.published)] if self.delays else 0)
        self.published.append(fut.number)


def message_factory(channel: SlowChannel) -> Callable[[int], Any]:
    def make(number: int) -> Any:
        return SimpleNamespace(number=number, message=SimpleNamespace(channel=channel))

    return make


def buffer() -> ProducerBuffer:
    made = ProducerBuffer()
    made.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    return made


async def started_buffer(
    delays: list[float], queued: int
) -> tuple[ProducerBuffer, SlowChannel, Callable[[int], Any]]:
    """A running buffer whose sends wait ``delays``, with records 0..queued-1 put."""
    channel = SlowChannel(delays=delays)
    make = message_factory(channel)
    buf = buffer()
    await buf.start()
    for number in range(queued):
        buf.put(make(number))
    return buf, channel, make


def test_flush_waits_for_slow_sends_and_the_record_in_hand() -> None:
    async def scenario() -> list[int]:
        buf, channel, _ = await started_buffer([0.35, 0.3, 0.0, 0.25], queued=4)
        await buf.flush()
        sent = list(channel.published)
        await buf.stop()
        return sent

    # The unpatched flush returned after 0.1 s with records still queued or in hand.
    assert asyncio.run(scenario()) == [0, 1, 2, 3]


def test_stop_sends_everything_still_queued_in_order() -> None:
    async def scenario() -> list[int]:
        buf, channel, _ = await started_buffer([0.2] * 5, queued=5)
        await buf.stop()
        return channel.published

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_flush_atmost_counts_what_it_waited_for() -> None:
    async def scenario() -> tuple[int, int]:
        buf, channel, _ = await started_buffer([0.05] * 6, queued=6)
        flushed = await buf.flush_atmost(2)
        await buf.flush()
        await buf.stop()
        return flushed, len(channel.published)

    flushed, total = asyncio.run(scenario())
    assert flushed == 2
    assert total == 6


def test_flush_waits_only_for_what_was_queued_before_it() -> None:
    async def scenario() -> tuple[list[int], int]:
        buf, channel, make = await started_buffer([0.05] * 40, queued=2)
        flush = asyncio.ensure_future(buf.flush())
        number = 2
        while not flush.done():  # a writer that never pauses: the queue is never empty
            buf.put(make(number))
            number += 1
            await asyncio.sleep(0.01)
        at_flush = list(channel.published)
        await buf.flush()
        await buf.stop()
        return at_flush, number

    at_flush, queued = asyncio.run(scenario())
    assert at_flush[:2] == [0, 1]
    assert len(at_flush) < queued  # returned although later records were still waiting


def test_a_dead_buffer_fails_loudly_instead_of_dropping_writes() -> None:
    async def scenario() -> None:
        buf = buffer()
        await buf.start()
        await buf.stop()
        buf.put(message_factory(SlowChannel(delays=[]))(1))
        await buf.flush()

    with pytest.raises(RuntimeError, match="1 table writes not sent"):
        asyncio.run(scenario())


def test_install_is_idempotent() -> None:
    before = ProducerBuffer.flush_atmost
    durability.install()
    assert ProducerBuffer.flush_atmost is before
    assert durability.installed()
