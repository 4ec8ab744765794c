"""A subscriber that raises during fan-out (hub/fanout.py): every other subscriber
still gets the event exactly once, the one that raised is closed with 1011 (its
client resumes, so it misses nothing), and the error is logged once, with its
traceback and the event's room and offset."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.codes import CloseCode

from ..direct_recorder import direct_subscriber


class Faulty(Subscriber):
    """A subscriber whose next offer raises, as a bug in it would."""

    __slots__ = ("fail",)

    def __init__(self, name: str, *, sse: bool = False) -> None:
        super().__init__(name, name, max_messages=100, max_bytes=1 << 20, sse=sse)
        self.fail = False

    def offer(self, frame: str) -> bool:
        self._maybe_fail()
        return super().offer(frame)

    def _maybe_fail(self) -> None:
        if self.fail:
            self.fail = False
            raise RuntimeError("injected")


def offsets(sub: Subscriber) -> list[int]:
    return [json.loads(frame)["offset"] for frame in iter(sub.pop, None)]


def fanout_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "roomcast.hub" and r.levelno >= logging.ERROR]


async def subscribed(hub: Hub, subs: list[Subscriber]) -> None:
    for sub in subs:
        await hub.subscribe(sub, "r", None, lambda rec: None)


@pytest.mark.parametrize("sse", [False, True], ids=["websocket", "sse"])
async def test_a_subscriber_that_raises_is_closed_and_every_other_gets_the_event_once(
    sse: bool, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(MemoryBroker(), presence=False)
    subs = [Faulty(f"s{i}", sse=sse) for i in range(5)]
    await subscribed(hub, list(subs))
    subs[2].fail = True
    event = await hub.publish("r", b"1", "ann")  # the broker's delivery does not raise
    await asyncio.sleep(0)  # the room's batch is sent at the end of the loop iteration
    await hub.publish("r", b"2", "ann")
    await asyncio.sleep(0)
    if sse:
        assert [f.count("event: message") for s in subs for f in iter(s.pop, None)] == [1] * 8
    else:
        assert [offsets(s) for s in subs] == [[1, 2], [1, 2], [], [1, 2], [1, 2]]
    assert subs[2].close_code is CloseCode.INTERNAL_ERROR  # it resumes from offset 0
    assert all(s.close_code is None for s in subs if s is not subs[2])
    (record,) = fanout_errors(caplog)
    assert record.exc_info is not None
    assert f"r offset {event.epoch}:1" in record.getMessage()


async def test_a_direct_write_that_raises_does_not_keep_the_event_from_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(MemoryBroker(), presence=False)
    subs, recorders = zip(*(direct_subscriber(f"s{i}") for i in range(4)), strict=True)
    await subscribed(hub, list(subs))
    recorders[1].fail = True
    first = await hub.publish("r", b"1", "ann")
    await asyncio.sleep(0)  # a room's batch is flushed at the end of the loop iteration
    second = await hub.publish("r", b"2", "ann")
    await asyncio.sleep(0)
    others = [recorders[i].writes for i in (0, 2, 3)]
    assert others == [[first.wire, second.wire]] * 3
    assert recorders[1].writes == []
    assert subs[1].close_code is CloseCode.INTERNAL_ERROR
    assert len(fanout_errors(caplog)) == 1
