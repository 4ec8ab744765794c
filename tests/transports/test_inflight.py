"""Pipelined publishes: replies leave in request order, whatever order the
publishes complete in; the bound holds the reader back; others wait their turn."""

from __future__ import annotations

import asyncio
import json

import pytest

from roomcast.hub.broker import BrokerUnavailable
from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.events import Event
from roomcast.transports.inflight import InFlight


def event(offset: int) -> Event:
    return Event("r", "e", offset, b"1", "ann", 0.0)


def sent(sub: Subscriber) -> list[dict[str, object]]:
    return [json.loads(f) for f in iter(sub.pop, None)]


def new() -> tuple[InFlight, Subscriber]:
    sub = Subscriber("c", "ann", max_messages=100, max_bytes=1 << 20)
    return InFlight(sub, limit=3), sub


async def test_replies_leave_in_request_order_when_publishes_complete_out_of_order() -> None:
    inflight, sub = new()
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(3)]
    for rid, future in enumerate(futures, 1):
        inflight.add(rid, future)
    futures[2].set_result(event(3))
    futures[1].set_exception(BrokerUnavailable("redis: gone"))
    await asyncio.sleep(0)
    assert sent(sub) == []  # the first is not answered yet
    futures[0].set_result(event(1))
    await inflight.settle()
    replies = sent(sub)
    assert [r["id"] for r in replies] == [1, 2, 3]
    assert replies[0]["result"] == {"epoch": "e", "offset": 1}
    assert replies[1]["error"]["code"] == "unavailable"  # type: ignore[index]
    assert replies[2]["ok"] is True
    assert len(inflight) == 0


async def test_an_error_known_at_once_waits_behind_the_replies_ahead_of_it() -> None:
    inflight, sub = new()
    pending: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    inflight.add(1, pending)
    inflight.add_frame('{"id":2,"ok":false}')
    assert sent(sub) == []
    pending.set_result(event(1))
    await inflight.settle()
    assert [r["id"] for r in sent(sub)] == [1, 2]
    inflight.add_frame('{"id":3,"ok":false}')  # nothing in flight: sent at once
    assert [r["id"] for r in sent(sub)] == [3]


async def test_a_publish_answered_already_is_replied_to_after_the_rooms_flush() -> None:
    """The memory broker answers at once, and the room's batch is flushed at the end
    of the loop iteration: the reply follows it, in the same iteration, and an error
    known at once after it waits its turn."""
    inflight, sub = new()
    loop = asyncio.get_running_loop()
    replies_at_flush: list[int] = []
    loop.call_soon(lambda: replies_at_flush.append(sub.queued))  # the hub's flush
    done: asyncio.Future[Event] = loop.create_future()
    done.set_result(event(1))
    inflight.add(1, done)
    inflight.add_frame('{"id":2,"ok":false}')
    assert sub.queued == 0
    await asyncio.sleep(0)
    assert replies_at_flush == [0]
    assert [r["id"] for r in sent(sub)] == [1, 2]


async def test_a_second_publish_answered_already_in_one_iteration_sends_the_replies_at_once() -> (
    None
):
    """Two in one loop iteration: the publisher does not wait for each reply, and
    its replies go out at once (in order), so that it can send more while the batch
    is written; the drain scheduled for the first finds nothing left."""
    inflight, sub = new()
    loop = asyncio.get_running_loop()
    replies_at_flush: list[int] = []
    loop.call_soon(lambda: replies_at_flush.append(sub.queued))  # the hub's flush
    for rid in (1, 2, 3):
        done: asyncio.Future[Event] = loop.create_future()
        done.set_result(event(rid))
        inflight.add(rid, done)
        assert sub.queued == (0 if rid == 1 else rid)
    await asyncio.sleep(0)
    assert replies_at_flush == [3]
    assert [r["id"] for r in sent(sub)] == [1, 2, 3]
    assert len(inflight) == 0


@pytest.mark.timeout(5)
async def test_at_the_bound_room_waits_for_the_oldest() -> None:
    inflight, sub = new()
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(3)]
    for rid, future in enumerate(futures, 1):
        inflight.add(rid, future)
    waiting = asyncio.ensure_future(inflight.room())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    futures[1].set_result(event(2))  # not the oldest: still full
    await asyncio.sleep(0.01)
    assert not waiting.done()
    futures[0].set_result(event(1))
    await asyncio.wait_for(waiting, 1)
    assert len(inflight) == 1
    assert [r["id"] for r in sent(sub)] == [1, 2]
