"""Corked direct writes: one write per connection per loop iteration, in offer order,
and the bounded outbox whenever the connection cannot take frames directly."""

from __future__ import annotations

import asyncio

import orjson

from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.codes import CloseCode
from roomcast.protocol.wsframe import text_frame


class Recorder:
    """A DirectWrite that keeps what it was given; ``writable`` plays flow control."""

    def __init__(self) -> None:
        self.writable = True
        self.writes: list[bytes] = []

    def ready(self) -> bool:
        return self.writable

    def write(self, data: bytes) -> None:
        self.writes.append(data)


def direct_sub(max_messages: int = 100) -> tuple[Subscriber, Recorder]:
    s = Subscriber("c", "u", max_messages=max_messages, max_bytes=1 << 20)
    s.direct = rec = Recorder()
    return s, rec


class Item:
    """What the hub offers: a text frame and its WebSocket frame."""

    def __init__(self, frame: str, wire: bytes) -> None:
        self.frame = frame
        self.wire = wire


def frame(n: int) -> tuple[str, bytes]:
    text = f'{{"n":{n}}}'
    return text, text_frame(text.encode())


def item(n: int) -> Item:
    return Item(*frame(n))


def test_frames_offered_in_one_iteration_go_out_as_one_write_in_order() -> None:
    s, rec = direct_sub()
    assert s.offer_wire(item(1)) is True  # the caller must flush
    assert s.offer_wire(item(2)) is False  # already corked
    assert rec.writes == []
    s.flush()
    assert rec.writes == [frame(1)[1] + frame(2)[1]]
    assert s.queued == 0
    s.flush()  # nothing corked: nothing written
    assert len(rec.writes) == 1


def test_an_outbox_offer_sends_what_is_corked_first() -> None:
    s, rec = direct_sub()
    s.offer_wire(item(1))
    s.offer('{"reply":true}')  # e.g. a publish reply, through the writer task
    assert rec.writes == [frame(1)[1]]
    assert s.pop() == '{"reply":true}'


def test_while_frames_are_queued_new_frames_queue_behind_them() -> None:
    s, rec = direct_sub()
    s.offer("first")
    assert s.offer_wire(item(2)) is False
    assert rec.writes == []
    assert [s.pop(), s.pop()] == ["first", frame(2)[0]]


def test_a_paused_connection_queues_and_a_reader_that_never_catches_up_is_evicted() -> None:
    s, rec = direct_sub(max_messages=3)
    rec.writable = False
    s.offer_wire(item(0))
    s.flush()  # not writable: queued, not written
    for n in range(1, 3):
        assert s.offer_wire(item(n)) is False  # behind the queue
    assert s.queued == 3
    assert rec.writes == []
    s.offer_wire(item(3))
    assert s.close_code == CloseCode.SLOW_CONSUMER
    assert rec.writes == []


def test_flow_control_pausing_between_offer_and_flush_queues_the_corked_frames() -> None:
    s, rec = direct_sub()
    s.offer_wire(item(1))
    s.offer_wire(item(2))
    rec.writable = False
    s.flush()
    assert rec.writes == []
    assert [s.pop(), s.pop()] == [frame(1)[0], frame(2)[0]]


def test_close_sends_the_corked_frames_first_unless_the_peer_is_gone() -> None:
    s, rec = direct_sub()
    s.offer_wire(item(1))
    s.close(CloseCode.GOING_AWAY)
    assert rec.writes == [frame(1)[1]]

    s, rec = direct_sub()
    s.offer_wire(item(1))
    s.close(CloseCode.GOING_AWAY, peer_gone=True)
    s.flush()
    assert rec.writes == []


async def test_the_hub_flushes_every_corked_subscriber_once_per_iteration() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    subs = [direct_sub() for _ in range(3)]
    for s, _ in subs:
        await hub.subscribe(s, "r", None, lambda rec: None)
    events = [await hub.publish("r", orjson.dumps({"n": n}), "ann") for n in range(3)]
    await asyncio.sleep(0)  # the flush runs at the end of this loop iteration
    shared = b"".join(event.wire for event in events)
    for s, rec in subs:
        assert s.queued == 0
        assert b"".join(rec.writes) == shared  # every event, in offset order
    assert all(len(rec.writes) == 1 for _, rec in subs)  # the memory broker never yields
    last = await hub.publish("r", b"4", "ann")
    await asyncio.sleep(0)
    assert all(rec.writes[-1] is last.wire for _, rec in subs)  # one frame, shared
