"""The hub: fan-out, the replay/live handover, eviction and shutdown, in process."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from roomcast.hub.broker import BrokerSink, Recovery
from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.codes import CloseCode
from roomcast.protocol.events import Event, Notice, Position


class YieldingMemoryBroker(MemoryBroker):
    """The memory broker, but subscribe and recover give the loop away first.

    Real brokers (Redis) await the network in these calls; publishes that land
    meanwhile are exactly what the hub's handover must neither lose nor repeat.
    """

    async def subscribe(self, room: str) -> None:
        await asyncio.sleep(random.random() / 500)
        await super().subscribe(room)

    async def recover(self, room: str, since: Position | None) -> Recovery:
        await asyncio.sleep(random.random() / 500)
        result = await super().recover(room, since)
        await asyncio.sleep(random.random() / 500)
        return result


class LaggingMemoryBroker(YieldingMemoryBroker):
    """Live delivery trails history, in order, as Redis pub/sub trails the stream."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._delivered: dict[str, Position] = {}
        self._pump: asyncio.Task[None] | None = None

    def bind(self, sink: BrokerSink) -> None:
        class Deferred:
            def deliver(_, event: Event) -> None:
                self._queue.put_nowait(event)

            def deliver_notice(_, notice: Notice) -> None:
                sink.deliver_notice(notice)

            def deliver_control(_, message: dict[str, object]) -> None:
                sink.deliver_control(message)

        self._real_sink = sink
        super().bind(Deferred())

    async def start(self) -> None:
        await super().start()
        self._pump = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._pump is not None
        self._pump.cancel()
        await super().stop()

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            await asyncio.sleep(random.random() / 500)
            self._delivered[event.room] = event.position
            self._real_sink.deliver(event)

    def live_position(self, room: str) -> Position | None:
        if room not in self._subscribed:
            return None
        return self._delivered.get(room) or Position((super().live_position(room) or ("", 0))[0], 0)


def sub(name: str = "s", max_messages: int = 100_000) -> Subscriber:
    return Subscriber(name, name, max_messages=max_messages, max_bytes=1 << 30)


def drain(s: Subscriber) -> list[dict[str, Any]]:
    frames = []
    while (frame := s.pop()) is not None:
        frames.append(json.loads(frame))
    return frames


def offsets(frames: list[dict[str, Any]]) -> list[int]:
    return [f["offset"] for f in frames if f.get("type") == "message"]


async def noop_ready(_: Recovery) -> None:
    return None


async def test_an_event_reaches_every_local_subscriber_once_as_the_same_frame() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    subs = [sub(str(i)) for i in range(3)]
    for s in subs:
        await hub.subscribe(s, "r", None, lambda rec: None)
    await hub.publish("r", b'{"x":1}', "ann")
    await asyncio.sleep(0)  # a room's events go out at the end of the loop iteration
    frames = [s.pop() for s in subs]
    assert frames[0] is not None
    assert all(f is frames[0] for f in frames)  # encoded once, shared
    assert all(s.pop() is None for s in subs)


async def test_the_subscribe_reply_comes_before_replayed_and_live_events() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    first = await hub.publish("r", b"1", "ann")
    await hub.publish("r", b"2", "ann")
    s = sub()
    await hub.subscribe(s, "r", Position(first.epoch, 0), lambda rec: s.offer('{"reply":1}'))
    await hub.publish("r", b"3", "ann")
    await asyncio.sleep(0)  # a room's events go out at the end of the loop iteration
    frames = drain(s)
    assert frames[0] == {"reply": 1}
    assert offsets(frames) == [1, 2, 3]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("broker_class", [YieldingMemoryBroker, LaggingMemoryBroker])
async def test_resume_under_concurrent_publishing_has_no_gap_and_no_duplicate(
    seed: int, broker_class: type[MemoryBroker]
) -> None:
    random.seed(seed)
    hub = Hub(broker_class(history_size=10_000), presence=False)
    await hub.start()
    stop = asyncio.Event()
    published: list[int] = []

    async def publisher(n: int) -> None:
        while not stop.is_set():
            published.append((await hub.publish("room", b'{"p":%d}' % n, f"p{n}")).offset)
            await asyncio.sleep(random.random() / 2000)

    async def resuming_subscriber(n: int) -> list[int]:
        seen: list[int] = []
        since: Position | None = None
        for _ in range(4):
            s = sub(f"s{n}")
            await hub.subscribe(s, "room", since, lambda rec: None)
            await asyncio.sleep(random.random() / 50)
            frames = drain(s)
            await hub.unsubscribe(s, "room")  # sends what was delivered while it was in
            frames += drain(s)
            got = offsets(frames)
            seen += got
            if got:
                since = Position(frames[-1]["epoch"], got[-1])
            elif since is None:
                since = (await hub.broker.recover("room", None)).position
        return seen

    publishers = [asyncio.create_task(publisher(n)) for n in range(3)]
    await asyncio.sleep(0.005)
    results = await asyncio.gather(*(resuming_subscriber(n) for n in range(8)))
    stop.set()
    await asyncio.gather(*publishers)
    await hub.stop()
    assert len(published) > 50
    for seen in results:
        assert seen, "a subscriber saw nothing"
        assert seen == list(range(seen[0], seen[-1] + 1)), "gap or duplicate"


async def test_a_subscriber_whose_outbox_overflows_is_evicted_and_others_get_everything() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    evicted: list[str] = []
    slow = sub("slow", max_messages=5)
    slow.on_evict = lambda: evicted.append("slow")
    fast = [sub(f"f{i}") for i in range(10)]
    for s in [slow, *fast]:
        await hub.subscribe(s, "r", None, lambda rec: None)
    for i in range(20):
        await hub.publish("r", b"%d" % i, "ann")
    await asyncio.sleep(0)  # a room's events go out at the end of the loop iteration
    assert slow.close_code is CloseCode.SLOW_CONSUMER
    assert slow.queued == 0  # the outbox was dropped
    assert evicted == ["slow"]
    for s in fast:
        assert offsets(drain(s)) == list(range(1, 21))


async def test_presence_join_and_leave_are_announced_to_the_room() -> None:
    hub = Hub(MemoryBroker(), presence=True)
    ann, bob = sub("ann"), sub("bob")
    await hub.subscribe(ann, "r", None, lambda rec: None)
    await hub.subscribe(bob, "r", None, lambda rec: None)
    assert {e.user for e in await hub.presence("r")} == {"ann", "bob"}
    await hub.disconnect(bob)
    assert [e.user for e in await hub.presence("r")] == ["ann"]
    await asyncio.sleep(0)  # a room's events go out at the end of the loop iteration
    kinds = [(f["type"], f["user"]) for f in drain(ann)]
    assert kinds == [("join", "ann"), ("join", "bob"), ("leave", "bob")]
    assert bob.rooms == set()


async def test_shutdown_closes_every_connection_and_waits_for_them() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    subs = [sub(str(i)) for i in range(3)]
    for s in subs:
        hub.register(s)

    async def connection(s: Subscriber) -> None:
        while s.pop() is not None or not s.closing:
            await s.wait()
        await hub.disconnect(s)

    tasks = [asyncio.create_task(connection(s)) for s in subs]
    assert await hub.shutdown(timeout=2)
    assert {s.close_code for s in subs} == {CloseCode.SHUTDOWN}
    await asyncio.gather(*tasks)
    assert hub.connections == 0


async def test_shutdown_evicts_connections_that_do_not_go_and_reports_them() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    stuck, unstuck = sub("stuck"), sub("unstuck")
    evicted: list[str] = []
    stuck.on_evict = lambda: evicted.append("stuck")
    unstuck.on_evict = lambda: hub.unregister(unstuck)  # its writer stops, it leaves
    hub.register(stuck)
    hub.register(unstuck)
    assert not await hub.shutdown(timeout=0.05)
    assert evicted == ["stuck"]
    assert stuck.close_code is CloseCode.SHUTDOWN  # eviction keeps the shutdown code
    assert hub.connections == 1


async def test_shutdown_succeeds_once_evicted_writers_let_go() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    s = sub()
    s.on_evict = lambda: hub.unregister(s)
    hub.register(s)
    assert await hub.shutdown(timeout=0.05)


async def test_the_last_local_subscriber_leaving_unsubscribes_the_process() -> None:
    broker = MemoryBroker()
    hub = Hub(broker, presence=False)
    a, b = sub("a"), sub("b")
    await hub.subscribe(a, "r", None, lambda rec: None)
    await hub.subscribe(b, "r", None, lambda rec: None)
    await hub.unsubscribe(a, "r")
    assert hub.local_subscribers("r") == 1
    await hub.unsubscribe(b, "r")
    assert hub.local_subscribers("r") == 0
    assert "r" not in broker._subscribed


async def test_a_replay_larger_than_the_outbox_bound_does_not_evict() -> None:
    hub = Hub(MemoryBroker(history_size=500), presence=False)
    first = await hub.publish("r", b"0", "ann")
    for i in range(299):
        await hub.publish("r", b"%d" % i, "ann")
    s = sub("resumer", max_messages=10)
    await hub.subscribe(s, "r", Position(first.epoch, 0), lambda rec: None)
    assert s.close_code is None
    assert s.queued == 300
    for _ in range(295):
        s.pop()
    for _ in range(5):  # live traffic within the bound is fine once the replay is sent
        await hub.publish("r", b"live", "ann")
    await asyncio.sleep(0)  # a room's events go out at the end of the loop iteration
    assert s.close_code is None
    for _ in range(11):  # more than max_messages of live backlog is not
        await hub.publish("r", b"live", "ann")
    await asyncio.sleep(0)
    assert s.close_code is CloseCode.SLOW_CONSUMER


def test_the_send_watchdog_evicts_a_writer_stuck_on_one_frame() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    stuck, busy, idle = sub("stuck"), sub("busy"), sub("idle")
    evicted: list[str] = []
    stuck.on_evict = lambda: evicted.append("stuck")
    for s in (stuck, busy, idle):
        hub.register(s)
        s.offer("frame")
        s.pop()  # each writer takes a frame...
    idle.sending = False  # ...idle finished it and went back to waiting
    assert hub.check_sends() == 0  # first look: nothing known yet
    busy.offer("more")
    busy.pop()  # busy makes progress between looks
    assert hub.check_sends() == 0  # stuck has made no progress for one interval
    assert hub.check_sends() == 1  # ...and now for two: evicted
    assert stuck.close_code is CloseCode.SLOW_CONSUMER
    assert evicted == ["stuck"]
    assert busy.close_code is None
    assert idle.close_code is None
    busy.offer("more")
    busy.pop()
    assert hub.check_sends() == 0  # stuck is evicted once only; busy progressed


def test_eviction_keeps_an_earlier_close_code() -> None:
    s = sub()
    s.close(CloseCode.SHUTDOWN)
    s.evict()
    assert s.close_code is CloseCode.SHUTDOWN
