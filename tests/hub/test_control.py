"""Per-user control: disconnect_user and unsubscribe_user, in one process and across
processes through Redis (plain, sharded and Redis Cluster)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from roomcast.hub.broker import PresenceEntry, Recovery, Unavailable
from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.redis import RedisBroker
from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.codes import CloseCode
from roomcast.protocol.events import Position

from ..redis_server import RedisServer

UNSUBSCRIBED_R = {"type": "unsubscribed", "room": "r", "reason": "server"}


def sub(name: str, user_id: str | None, *, sse: bool = False) -> Subscriber:
    return Subscriber(
        name, name.rstrip("0123456789"), max_messages=1000, max_bytes=1 << 20, sse=sse,
        user_id=user_id,
    )  # fmt: skip


def drain(s: Subscriber) -> list[dict[str, Any]]:
    """The frames queued for ``s``, as JSON (an SSE event's ``data`` line)."""
    frames = []
    while (frame := s.pop()) is not None:
        if s.sse:
            (frame,) = [line[6:] for line in frame.splitlines() if line.startswith("data: ")]
        frames.append(json.loads(frame))
    return frames


def about(frames: list[dict[str, Any]], conn: str) -> list[str]:
    """The presence notices in ``frames`` about connection ``conn``, in order."""
    return [f["type"] for f in frames if f.get("conn") == conn]


def messages(frames: list[dict[str, Any]], room: str) -> list[Any]:
    """The ``data`` of the message events of ``room`` in ``frames``."""
    return [f["data"] for f in frames if f.get("type") == "message" and f["room"] == room]


async def subscribed(hub: Hub, room: str, *subs: Subscriber) -> None:
    for s in subs:
        hub.register(s)
        await hub.subscribe(s, room, None, lambda rec: None)


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def receive(
    s: Subscriber, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0
) -> list[dict[str, Any]]:
    """The frames queued for ``s``, gathered until ``until(frames)`` holds."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not until(frames):
            await asyncio.sleep(0.01)
            frames += drain(s)
    return frames


# -- one process ------------------------------------------------------------------------


async def test_disconnect_user_closes_every_connection_of_that_user_with_the_code() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    ann_ws, ann_sse = sub("ann1", "u-ann"), sub("ann2", "u-ann", sse=True)
    bob, anonymous = sub("bob", "u-bob"), sub("anon", None)
    await subscribed(hub, "r", ann_ws, ann_sse, bob, anonymous)
    idle_ann = sub("ann3", "u-ann")
    hub.register(idle_ann)  # in no room: closed all the same
    await hub.publish("r", b"1", "bob")
    await hub.disconnect_user("u-ann", CloseCode.DISCONNECTED)
    for s in (ann_ws, ann_sse, idle_ann):
        assert s.close_code is CloseCode.DISCONNECTED
    assert ann_ws.queued == ann_sse.queued == 1  # what was queued still goes out, then the close
    assert bob.close_code is None
    assert anonymous.close_code is None
    await hub.publish("r", b"2", "bob")
    await asyncio.sleep(0)  # a room's events go out at the end of the loop iteration
    assert messages(drain(bob), "r") == [1, 2]


async def test_disconnect_user_closes_with_the_code_it_is_given() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    ann = sub("ann", "u-ann")
    hub.register(ann)
    await hub.disconnect_user("u-ann", CloseCode.FORBIDDEN)
    await hub.disconnect_user("u-ann", CloseCode.DISCONNECTED)  # the first close code wins
    assert ann.close_code is CloseCode.FORBIDDEN


async def test_unsubscribe_user_takes_only_that_user_out_of_only_that_room() -> None:
    hub = Hub(MemoryBroker(), presence=True)
    ann_ws, ann_sse, bob = sub("ann1", "u-ann"), sub("ann2", "u-ann", sse=True), sub("bob", "u2")
    await subscribed(hub, "r", ann_ws, ann_sse, bob)
    await subscribed(hub, "s", ann_ws)
    await asyncio.sleep(0)  # the join notices go out at the end of the loop iteration
    for s in (ann_ws, ann_sse, bob):
        drain(s)
    await hub.unsubscribe_user("u-ann", "r")
    await hub.publish("r", b"1", "bob")
    await hub.publish("s", b"2", "bob")
    await asyncio.sleep(0)
    frames = drain(ann_ws)
    assert frames[0] == UNSUBSCRIBED_R
    assert (messages(frames, "r"), messages(frames, "s")) == ([], [2])
    unsubscribed = '{"type":"unsubscribed","room":"r","reason":"server"}'
    assert ann_sse.pop() == f"event: unsubscribed\ndata: {unsubscribed}\n\n"
    assert ann_sse.pop() is None
    assert (ann_ws.rooms, ann_sse.rooms, bob.rooms) == ({"s"}, set(), {"r"})
    assert ann_ws.close_code is None  # the connections stay open
    assert ann_sse.close_code is None
    bob_frames = await receive(bob, lambda frames: len(frames) == 3)
    assert messages(bob_frames, "r") == [1]
    assert about(bob_frames, "ann1") == about(bob_frames, "ann2") == ["leave"]
    assert [e.user for e in await hub.presence("r")] == ["bob"]
    assert {e.conn for e in await hub.presence("s")} == {"ann1"}
    assert hub.local_subscribers("r") == 1


async def test_the_last_subscriber_taken_out_lets_the_process_leave_the_room() -> None:
    broker = MemoryBroker()
    hub = Hub(broker, presence=True)
    ann = sub("ann", "u-ann")
    await subscribed(hub, "r", ann)
    await hub.unsubscribe_user("u-ann", "r")
    await wait_for(lambda: "r" not in broker._subscribed)
    assert hub.local_subscribers("r") == 0
    assert await hub.presence("r") == []


async def test_unsubscribe_user_of_a_room_without_that_user_changes_nothing() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    bob = sub("bob", "u-bob")
    await subscribed(hub, "r", bob)
    await hub.unsubscribe_user("u-ann", "r")
    await hub.unsubscribe_user("u-bob", "nowhere")
    await hub.publish("r", b"1", "bob")
    await asyncio.sleep(0)
    assert messages(drain(bob), "r") == [1]


class BehindMemoryBroker(MemoryBroker):
    """Live delivery reports itself behind history, as Redis pub/sub can be: a
    resumed subscriber stays pending after its subscribe returns."""

    def live_position(self, room: str) -> Position | None:
        live = super().live_position(room)
        return None if live is None else Position(live.epoch, 0)


async def test_a_subscriber_still_catching_up_with_live_delivery_is_taken_out_too() -> None:
    hub = Hub(BehindMemoryBroker(), presence=True)
    first = await hub.publish("r", b"1", "bob")
    await hub.publish("r", b"2", "bob")
    ann = sub("ann", "u-ann")
    hub.register(ann)
    await hub.subscribe(ann, "r", Position(first.epoch, 0), lambda rec: None)
    assert hub.local_subscribers("r") == 0  # pending, not live
    await hub.unsubscribe_user("u-ann", "r")
    await hub.publish("r", b"3", "bob")
    frames = drain(ann)
    assert messages(frames, "r") == [1, 2]
    assert frames[-1] == UNSUBSCRIBED_R
    await wait_for(lambda: hub._rooms.get("r") is None)
    assert await hub.presence("r") == []


class GatedMemoryBroker(MemoryBroker):
    """The memory broker; ``recover`` waits for :attr:`open` (a replay being read)
    and ``presence_add`` of :attr:`slow_conn` for :attr:`joined` (a join on its way)."""

    def __init__(self) -> None:
        super().__init__()
        self.reading, self.open = asyncio.Event(), asyncio.Event()
        self.joining, self.joined = asyncio.Event(), asyncio.Event()
        self.open.set()
        self.slow_conn = ""

    async def recover(self, room: str, since: Position | None) -> Recovery:
        self.reading.set()
        await self.open.wait()
        return await super().recover(room, since)

    async def presence_add(self, room: str, entry: PresenceEntry) -> None:
        if entry.conn == self.slow_conn:
            self.joining.set()
            await self.joined.wait()
        await super().presence_add(room, entry)


async def test_a_subscriber_taken_out_while_its_replay_is_read_gets_the_reply_then_the_notice() -> (
    None
):
    broker = GatedMemoryBroker()
    hub = Hub(broker, presence=True)
    first = await hub.publish("r", b"1", "bob")
    ann = sub("ann", "u-ann")
    hub.register(ann)
    broker.open.clear()
    subscribing = asyncio.create_task(
        hub.subscribe(ann, "r", Position(first.epoch, 0), lambda rec: ann.offer('{"reply":1}'))
    )
    await broker.reading.wait()
    await hub.unsubscribe_user("u-ann", "r")
    await hub.publish("r", b"2", "bob")  # before the replay is read: part of it
    broker.open.set()
    await subscribing
    await hub.publish("r", b"3", "bob")
    frames = drain(ann)
    assert frames == [{"reply": 1}, *frames[1:3], UNSUBSCRIBED_R]
    assert messages(frames, "r") == [1, 2]
    assert ann.rooms == set()
    assert await hub.presence("r") == []  # it never joined
    await wait_for(lambda: "r" not in broker._subscribed)


async def test_a_subscriber_taken_out_during_its_join_is_not_left_in_presence() -> None:
    broker = GatedMemoryBroker()
    hub = Hub(broker, presence=True)
    bob, ann = sub("bob", "u-bob"), sub("ann", "u-ann")
    await subscribed(hub, "r", bob)
    broker.slow_conn = "ann"
    hub.register(ann)
    subscribing = asyncio.create_task(hub.subscribe(ann, "r", None, lambda rec: None))
    await broker.joining.wait()  # ann is live, its presence entry not written yet
    await hub.unsubscribe_user("u-ann", "r")
    await asyncio.sleep(0.01)  # the control's own leave goes out first
    broker.joined.set()
    await subscribing
    assert [e.user for e in await hub.presence("r")] == ["bob"]
    assert about(drain(bob), "ann")[-1] == "leave"
    assert drain(ann) == [UNSUBSCRIBED_R]


async def test_a_control_message_this_process_does_not_understand_is_ignored() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    ann = sub("ann", "u-ann")
    hub.register(ann)
    hub.deliver_control({"op": "from-a-newer-worker", "user": "u-ann"})
    hub.deliver_control({"op": "unsubscribe", "user": 7, "room": "r"})
    assert ann.close_code is None
    hub.deliver_control({"op": "disconnect", "user": "u-ann", "code": 4999})
    assert ann.close_code is CloseCode.DISCONNECTED  # an unknown code still disconnects


# -- several processes through Redis ------------------------------------------------------


@pytest.fixture(params=["plain", "sharded", "cluster"])
def redis_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Where two hubs meet: one Redis (PUBLISH or SPUBLISH) or a Redis Cluster."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    if request.param == "cluster":
        return {
            "url": request.getfixturevalue("redis_cluster").url,
            "prefix": prefix,
            "cluster": True,
        }
    server = request.getfixturevalue("redis_server")
    return {"url": server.url, "prefix": prefix, "sharded": request.param == "sharded"}


@pytest.fixture
async def two_hubs(redis_options: dict[str, Any]) -> AsyncIterator[tuple[Hub, Hub]]:
    """Two processes of one deployment: two hubs, each with its own RedisBroker."""
    hubs = [Hub(RedisBroker(**redis_options), presence=True) for _ in range(2)]
    for hub in hubs:
        await hub.start()
    try:
        yield hubs[0], hubs[1]
    finally:
        for hub in hubs:
            await hub.stop()


async def test_disconnect_user_on_one_process_closes_the_users_connections_on_another(
    two_hubs: tuple[Hub, Hub],
) -> None:
    a, b = two_hubs
    ann_ws, ann_sse, bob = sub("ann1", "u-ann"), sub("ann2", "u-ann", sse=True), sub("bob", "u2")
    await subscribed(b, "r", ann_ws, ann_sse, bob)
    ann_on_a = sub("ann3", "u-ann")
    a.register(ann_on_a)
    await a.disconnect_user("u-ann", CloseCode.DISCONNECTED)
    assert ann_on_a.close_code is CloseCode.DISCONNECTED  # here at once
    await wait_for(lambda: ann_ws.closing and ann_sse.closing)
    assert ann_ws.close_code is ann_sse.close_code is CloseCode.DISCONNECTED
    assert bob.close_code is None


async def test_unsubscribe_user_on_one_process_takes_the_user_out_on_another(
    two_hubs: tuple[Hub, Hub],
) -> None:
    a, b = two_hubs
    ann, bob, carol = sub("ann", "u-ann"), sub("bob", "u-bob"), sub("carol", "u-carol")
    await subscribed(b, "r", ann, bob)
    await subscribed(a, "r", carol)
    await a.publish("r", b"0", "carol")
    await receive(ann, lambda frames: messages(frames, "r") == [0])
    await a.unsubscribe_user("u-ann", "r")
    assert await receive(ann, lambda frames: bool(frames)) == [UNSUBSCRIBED_R]
    await a.publish("r", b"1", "carol")
    await receive(bob, lambda frames: 1 in messages(frames, "r"))
    assert drain(ann) == []  # nothing of the room after the notice
    assert ann.rooms == set()
    assert ann.close_code is None
    await receive(carol, lambda frames: "leave" in about(frames, "ann"))
    assert {e.user for e in await a.presence("r")} == {"bob", "carol"}


async def test_a_control_call_raises_unavailable_while_redis_is_down(
    own_redis: RedisServer,
) -> None:
    hub = Hub(RedisBroker(own_redis.url, prefix="t", timeout=1.0), presence=False)
    await hub.start()
    try:
        ann = sub("ann", "u-ann")
        await subscribed(hub, "r", ann)
        own_redis.stop()
        with pytest.raises(Unavailable):
            await hub.unsubscribe_user("u-ann", "r")
        with pytest.raises(Unavailable):
            await hub.disconnect_user("u-ann", CloseCode.DISCONNECTED)
        assert ann.rooms == set()  # this process acted all the same: it is idempotent
        assert ann.close_code is CloseCode.DISCONNECTED
    finally:
        await hub.stop()
