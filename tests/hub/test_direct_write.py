"""Direct writes: a room's events of one loop iteration go out as one write per
connection, built once and shared; the bounded outbox takes over whenever a
connection cannot take frames directly (paused, something queued, closing)."""

from __future__ import annotations

import asyncio

import orjson

from roomcast.hub.hub import Hub
from roomcast.hub.local_room import BATCH_EVENTS
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.codes import CloseCode
from roomcast.protocol.wsframe import text_frame

from ..direct_recorder import direct_subscriber


def wire(text: str) -> bytes:
    return text_frame(text.encode())


def test_a_ready_connection_is_written_at_once_and_a_paused_one_queues() -> None:
    sub, rec = direct_subscriber()
    assert sub.sink is not None
    assert sub.offer('{"reply":1}') is True
    assert rec.writes == [wire('{"reply":1}')]
    assert sub.queued == 0
    rec.writable = False  # flow control paused the transport: the outbox takes over
    assert sub.sink is None
    sub.offer('{"reply":2}')
    rec.writable = True  # resumed, but a frame is queued: it goes first, through the writer
    assert sub.sink is None
    assert sub.pop() == '{"reply":2}'
    sub.offer('{"reply":3}')  # behind the one being sent
    assert sub.pop() == '{"reply":3}'
    assert sub.pop() is None
    assert len(rec.writes) == 1


async def test_the_writer_catching_up_restores_direct_writes() -> None:
    sub, rec = direct_subscriber(writable=False)
    sub.offer("a")
    rec.writable = True
    assert sub.pop() == "a"
    assert sub.sink is None
    assert sub.pop() is None
    waiting = asyncio.create_task(sub.wait())  # the writer is idle: caught up
    await asyncio.sleep(0)
    assert sub.sink is not None
    sub.offer("b")
    assert rec.writes == [wire("b")]
    waiting.cancel()


def test_closing_and_eviction_stop_direct_writes() -> None:
    sub, rec = direct_subscriber()
    sub.close(CloseCode.SHUTDOWN)
    assert sub.sink is None
    assert sub.offer("late") is False
    assert rec.writes == []
    sub, rec = direct_subscriber(max_messages=2, writable=False)
    for n in range(3):
        sub.offer(str(n))
    assert sub.close_code is CloseCode.SLOW_CONSUMER
    rec.writable = True
    assert sub.sink is None


async def hub_with(subs: list[Subscriber]) -> Hub:
    hub = Hub(MemoryBroker(), presence=False)
    for sub in subs:
        await hub.subscribe(sub, "r", None, lambda rec: None)
    return hub


async def test_a_rooms_events_of_one_iteration_are_one_shared_write_per_connection() -> None:
    pairs = [direct_subscriber(f"s{i}") for i in range(3)]
    hub = await hub_with([s for s, _ in pairs])
    events = [await hub.publish("r", orjson.dumps({"n": n}), "ann") for n in range(3)]
    assert all(rec.writes == [] for _, rec in pairs)  # sent at the end of the iteration
    await asyncio.sleep(0)
    shared = b"".join(event.wire for event in events)
    assert all(rec.writes == [shared] for _, rec in pairs)  # every event, in offset order
    last = await hub.publish("r", b"4", "ann")
    await asyncio.sleep(0)
    assert all(rec.writes[-1] is last.wire for _, rec in pairs)  # one frame, the same object


async def test_a_connection_that_cannot_take_frames_gets_them_queued_in_order() -> None:
    (fast, fast_rec), (slow, slow_rec) = direct_subscriber("fast"), direct_subscriber("slow")
    hub = await hub_with([fast, slow])
    slow_rec.writable = False
    first = await hub.publish("r", b"1", "ann")
    await asyncio.sleep(0)
    slow_rec.writable = True  # resumed: still behind its queue
    second = await hub.publish("r", b"2", "ann")
    await asyncio.sleep(0)
    assert fast_rec.writes == [first.wire, second.wire]
    assert slow_rec.writes == []
    assert [slow.pop(), slow.pop(), slow.pop()] == [first.frame, second.frame, None]


async def test_flow_control_pausing_before_the_flush_queues_the_batch() -> None:
    sub, rec = direct_subscriber()
    hub = await hub_with([sub])
    events = [await hub.publish("r", bytes(str(n), "ascii"), "ann") for n in range(2)]
    rec.writable = False
    await asyncio.sleep(0)
    assert rec.writes == []
    assert [sub.pop(), sub.pop()] == [e.frame for e in events]


async def test_a_full_batch_is_sent_at_once() -> None:
    sub, rec = direct_subscriber()
    hub = await hub_with([sub])
    events = [await hub.publish("r", b"1", "ann") for _ in range(BATCH_EVENTS + 1)]
    assert rec.writes == [b"".join(e.wire for e in events[:BATCH_EVENTS])]
    await asyncio.sleep(0)
    assert rec.writes[1] is events[-1].wire


async def test_who_leaves_or_joins_mid_iteration_gets_exactly_what_was_delivered_while_in() -> None:
    (stay, stay_rec), (leave, leave_rec) = direct_subscriber("stay"), direct_subscriber("leave")
    hub = await hub_with([stay, leave])
    before = await hub.publish("r", b"1", "ann")
    await hub.unsubscribe(leave, "r")
    after = await hub.publish("r", b"2", "ann")
    joiner, join_rec = direct_subscriber("joiner")
    await hub.subscribe(joiner, "r", None, lambda rec: None)
    last = await hub.publish("r", b"3", "ann")
    await asyncio.sleep(0)
    assert leave_rec.writes == [before.wire]
    assert b"".join(stay_rec.writes) == before.wire + after.wire + last.wire
    assert b"".join(join_rec.writes) == last.wire  # subscribed without a position: live only


async def test_shutdown_sends_what_was_delivered_before_the_close() -> None:
    sub, rec = direct_subscriber()
    hub = await hub_with([sub])
    hub.register(sub)
    event = await hub.publish("r", b"1", "ann")
    closing = asyncio.create_task(hub.shutdown(timeout=0.01))
    await asyncio.sleep(0)
    assert rec.writes == [event.wire]
    assert sub.close_code is CloseCode.SHUTDOWN
    hub.unregister(sub)
    await closing
