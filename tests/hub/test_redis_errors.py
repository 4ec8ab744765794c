"""Errors on the Redis receive path are never swallowed: a message that does not
decode is logged with its channel and skipped; a delivery that raises is logged with
the room and offset, its room's subscribers are told to reload, and the reader goes on
for every room. The gate moves only once the hub has taken the event."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from roomcast.hub.redis import RedisBroker
from roomcast.protocol.events import Event, Position

from ..redis_server import RedisServer
from .broker_contract import RecordingSink, sink_has


class Brokers:
    def __init__(self, reader: RedisBroker, writer: RedisBroker) -> None:
        self.reader = reader
        self.writer = writer


@pytest.fixture
async def brokers(redis_server: RedisServer) -> AsyncIterator[Brokers]:
    p = f"t{uuid.uuid4().hex[:8]}"
    reader = RedisBroker(redis_server.url, prefix=p)
    writer = RedisBroker(redis_server.url, prefix=p)
    writer.bind(RecordingSink())
    await writer.start()
    yield Brokers(reader, writer)
    await reader.stop()
    await writer.stop()


async def start(reader: RedisBroker, sink: RecordingSink) -> None:
    reader.bind(sink)
    await reader.start()


async def test_a_malformed_pubsub_message_is_logged_with_its_channel_and_skipped(
    brokers: Brokers, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    await start(brokers.reader, sink)
    await brokers.reader.subscribe("r")
    channel = brokers.reader.channel("r").decode()
    control = brokers.reader.control_channel.decode()
    for where, garbage in [
        (channel, "not an event"),
        (channel, "e1 notanumber 1.0 1 ax"),
        (channel, '!{"no": "type"}'),
        (control, "othernode [1, 2]"),
    ]:
        await asyncio.to_thread(redis_server.cli, "PUBLISH", where, garbage)
    await brokers.writer.publish("r", b"1", "w")
    await sink_has(sink, 1)  # the reader read on
    assert [e.offset for e in sink.events] == [1]
    assert sink.notices == []
    assert sink.controls == []
    skipped = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert {r.levelno for r in skipped} == {logging.WARNING}
    assert all(r.exc_info is None for r in skipped)  # not a bug of ours: no traceback
    assert sum(channel in r.getMessage() for r in skipped) == 3
    # Both brokers (two processes of one deployment) read the control channel.
    assert sum(control in r.getMessage() for r in skipped) == 2


class FailsOn(RecordingSink):
    """A hub stand-in that raises while delivering one event (a bug in the hub)."""

    def __init__(self, room: str, offset: int) -> None:
        super().__init__()
        self.target = (room, offset)

    def deliver(self, event: Event) -> None:
        if (event.room, event.offset) == self.target:
            raise RuntimeError("injected")
        super().deliver(event)


async def test_a_delivery_that_raises_is_logged_and_its_room_reloads_while_the_reader_goes_on(
    brokers: Brokers, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FailsOn("a", 2)
    await start(brokers.reader, sink)
    await brokers.reader.subscribe("a")
    await brokers.reader.subscribe("b")
    for room, data in [("a", b"1"), ("a", b"2"), ("b", b"1"), ("a", b"3")]:
        await brokers.writer.publish(room, data, "w")
    await sink_has(sink, 3)
    assert [(e.room, e.offset) for e in sink.events] == [("a", 1), ("b", 1), ("a", 3)]
    (reset,) = sink.notices  # told to reload from the event it missed
    epoch = sink.events[0].epoch
    assert (reset.kind, reset.room, reset.fields) == ("reset", "a", {"epoch": epoch, "offset": 2})
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.exc_info is not None  # a bug: with its traceback
    assert f"a offset {epoch}:2" in error.getMessage()
    assert brokers.reader.live_position("a") == Position(epoch, 3)


async def test_the_gate_moves_only_once_the_hub_has_taken_the_event(brokers: Brokers) -> None:
    seen: list[Position | None] = []

    class Watching(RecordingSink):
        def deliver(self, event: Event) -> None:
            seen.append(brokers.reader.live_position(event.room))  # during delivery
            super().deliver(event)

    sink = Watching()
    await start(brokers.reader, sink)
    await brokers.reader.subscribe("r")
    first = await brokers.writer.publish("r", b"1", "w")
    await brokers.writer.publish("r", b"2", "w")
    await sink_has(sink, 2)
    assert seen == [Position(first.epoch, 0), Position(first.epoch, 1)]
