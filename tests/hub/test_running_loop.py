"""The hub and the memory broker keep the loop they were started on
(hub/running.py): the publish path asks ``asyncio.get_running_loop()`` (a
``getpid()`` system call each time) only when they are not started, and never
uses a loop that has stopped since."""

from __future__ import annotations

import asyncio

import pytest

from roomcast.hub import running
from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.running import loop_of

from ..direct_recorder import DirectRecorder, direct_subscriber


async def test_loop_of_is_the_kept_loop_while_it_runs_and_the_running_one_otherwise() -> None:
    here = asyncio.get_running_loop()
    assert loop_of(here) is here
    assert loop_of(None) is here
    stopped = asyncio.new_event_loop()
    stopped.close()
    assert loop_of(stopped) is here  # a closed loop is never handed out


def test_loop_of_outside_a_loop_without_a_kept_one_raises() -> None:
    with pytest.raises(RuntimeError):
        loop_of(None)


async def publish_and_flush(hub: Hub, rec: DirectRecorder) -> None:
    event = await hub.publish("r", b"1", "ann")
    await asyncio.sleep(0)  # the room's batch is flushed at the end of the iteration
    assert rec.writes[-1] is event.wire


def test_a_started_hub_publishes_without_asking_for_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> None:
        hub = Hub(MemoryBroker(), presence=False)
        sub, rec = direct_subscriber()
        await hub.start()
        try:
            await hub.subscribe(sub, "r", None, lambda r: None)
            await asyncio.sleep(0)  # the background tasks it started have begun

            def refuse() -> asyncio.AbstractEventLoop:
                raise AssertionError("asked for the running loop on the publish path")

            monkeypatch.setattr(running.asyncio, "get_running_loop", refuse)
            await publish_and_flush(hub, rec)
            monkeypatch.undo()
        finally:
            await hub.stop()

    asyncio.run(main())


def test_a_hub_used_on_a_second_loop_flushes_there_stopped_or_not() -> None:
    broker = MemoryBroker()
    hub = Hub(broker, presence=False)
    sub, rec = direct_subscriber()

    async def first() -> None:
        await hub.start()
        await hub.subscribe(sub, "r", None, lambda r: None)
        await publish_and_flush(hub, rec)
        await hub.stop()

    async def second() -> None:  # stopped before: asks for this loop
        await publish_and_flush(hub, rec)
        await hub.start()  # and left started: its loop closes with asyncio.run

    async def third() -> None:  # started on a loop that is closed now: not that one
        await publish_and_flush(hub, rec)

    asyncio.run(first())
    asyncio.run(second())
    asyncio.run(third())
    assert len(rec.writes) == 3
