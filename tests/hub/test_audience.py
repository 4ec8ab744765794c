"""A room's fan-out writes again to the transports it wrote to last time
(hub/audience.py) only while nothing changed: any subscriber's sink changing,
anywhere, or a subscriber joining or leaving makes it read every sink again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.subscriber import SINKS, Subscriber
from roomcast.protocol.codes import CloseCode
from roomcast.protocol.events import Event

from ..direct_recorder import direct_subscriber as subscriber


def wire(event: Event, sse: bool) -> bytes:
    return event.sse_wire if sse else event.wire


async def room_of(subs: list[Subscriber], room: str = "r", hub: Hub | None = None) -> Hub:
    hub = hub or Hub(MemoryBroker(), presence=False)
    for sub in subs:
        await hub.subscribe(sub, room, None, lambda rec: None)
    return hub


async def publish(hub: Hub, data: bytes, room: str = "r") -> Event:
    event = await hub.publish(room, data, "ann")
    await asyncio.sleep(0)  # the room's batch goes out at the end of the iteration
    return event


@pytest.mark.parametrize("sse", [False, True], ids=["websocket", "sse"])
async def test_the_transports_of_the_last_fan_out_are_written_again_while_nothing_changed(
    sse: bool,
) -> None:
    pairs = [subscriber(f"s{i}", sse=sse) for i in range(3)]
    hub = await room_of([s for s, _ in pairs])
    first = await publish(hub, b"1")
    # Behind the counter's back (nothing real does this): the next fan-out does not
    # read the sinks again, so it still writes to the transport it recorded.
    pairs[0][0].sink = None
    second = await publish(hub, b"2")
    assert [rec.writes for _, rec in pairs] == [[wire(first, sse), wire(second, sse)]] * 3


@pytest.mark.parametrize("sse", [False, True], ids=["websocket", "sse"])
async def test_a_sink_that_changes_after_a_fan_out_is_read_again_at_the_next(sse: bool) -> None:
    (fast, fast_rec), (slow, slow_rec) = subscriber("fast", sse=sse), subscriber("slow", sse=sse)
    hub = await room_of([fast, slow])
    first = await publish(hub, b"1")
    before = SINKS.changes
    slow_rec.writable = False  # paused between two fan-outs
    assert SINKS.changes == before + 1
    second = await publish(hub, b"2")
    assert slow_rec.writes == [wire(first, sse)]  # not written past the pause
    assert slow.pop() == (second.sse if sse else second.frame)  # queued instead (sent)
    assert fast_rec.writes == [wire(first, sse), wire(second, sse)]
    slow_rec.writable = True  # resumed, behind its queue; its writer catches up:
    assert slow.pop() is None
    assert slow.caught_up()  # direct again, and read so
    third = await publish(hub, b"3")
    assert slow_rec.writes == [wire(first, sse), wire(third, sse)]


async def test_a_sink_changed_by_another_rooms_fan_out_is_read_again() -> None:
    """Two rooms flushed in one iteration: the first room's write pauses a
    subscriber of both, so the second room queues its event for it."""
    (both, both_rec), (other, other_rec) = subscriber("both"), subscriber("other")
    hub = await room_of([both, other], "a")
    await room_of([both, other], "b", hub)
    await publish(hub, b"0", "a")
    await publish(hub, b"0", "b")  # both rooms have recorded their transports
    both_rec.pause_on_write = True
    in_a = await hub.publish("a", b"1", "ann")
    in_b = await hub.publish("b", b"1", "ann")
    await asyncio.sleep(0)
    assert both_rec.writes[-1] == in_a.wire  # its write paused it...
    assert both.pop() == in_b.frame  # ...so b's event waits in its outbox, after a's
    assert other_rec.writes[-2:] == [in_a.wire, in_b.wire]


async def test_who_joins_or_leaves_after_a_fan_out_is_counted_at_the_next() -> None:
    (stay, stay_rec), (leave, leave_rec) = subscriber("stay"), subscriber("leave")
    joiner, join_rec = subscriber("joiner")  # attached now: no sink changes below
    hub = await room_of([stay, leave])
    first = await publish(hub, b"1")
    changes = SINKS.changes
    await hub.unsubscribe(leave, "r")
    second = await publish(hub, b"2")
    await room_of([joiner], hub=hub)
    third = await publish(hub, b"3")
    assert SINKS.changes == changes  # only the room's own record says who is in it
    assert stay_rec.writes == [first.wire, second.wire, third.wire]
    assert leave_rec.writes == [first.wire]
    assert join_rec.writes == [third.wire]


async def test_a_write_that_raises_on_recorded_transports_spares_the_rest_and_the_queued(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pairs = [subscriber(f"s{i}") for i in range(4)]
    subs = [s for s, _ in pairs]
    hub = await room_of(subs)
    pairs[3][1].writable = False  # offered, not written: queues its events
    first = await publish(hub, b"1")
    second_recorded = await publish(hub, b"2")  # the lists of this state are recorded now
    pairs[1][1].fail = True
    third = await publish(hub, b"3")
    fourth = await publish(hub, b"4")
    assert pairs[0][1].writes == [e.wire for e in (first, second_recorded, third, fourth)]
    assert pairs[2][1].writes == [e.wire for e in (first, second_recorded, third, fourth)]
    assert pairs[1][1].writes == [first.wire, second_recorded.wire]
    assert subs[1].close_code is CloseCode.INTERNAL_ERROR
    queued = [e.frame for e in (first, second_recorded, third, fourth)]
    assert list(iter(subs[3].pop, None)) == queued  # each once, in order
    errors = [r for r in caplog.records if r.name == "roomcast.hub" and r.levelno >= logging.ERROR]
    (error,) = errors
    assert f"r offset {third.epoch}:3" in error.getMessage()
