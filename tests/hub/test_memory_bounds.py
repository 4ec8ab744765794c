"""What one process keeps is bounded: rooms (memory broker and hub alike) and the
history of all rooms together. Reads create nothing, and cost no resume."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from roomcast.auth import Authority
from roomcast.hub.broker import BrokerUnavailable, PresenceEntry, Unavailable
from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker, event_cost
from roomcast.hub.redis import RedisBroker
from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.events import Position
from roomcast.protocol.session import Session, SessionLimits
from roomcast.runtime import Roomcast, make_broker
from roomcast.settings import Settings
from roomcast.transports.client import Client
from roomcast.transports.dispatch import handle_text

from ..redis_server import RedisServer
from .broker_contract import RecordingSink


def memory(**options: int) -> MemoryBroker:
    broker = MemoryBroker(**options)
    broker.bind(RecordingSink())
    return broker


def sub(name: str = "s") -> Subscriber:
    return Subscriber(name, name, max_messages=10_000, max_bytes=1 << 30)


def retained(broker: MemoryBroker) -> int:
    """The history's cost counted from scratch, to check the running count."""
    return sum(event_cost(e) for log in broker._rooms.values() for e in log.events)


# -- reads of unknown rooms --------------------------------------------------------------


async def test_reading_rooms_that_do_not_exist_creates_none() -> None:
    broker = memory()
    for n in range(1000):
        room = f"probe-{n}"
        page = await broker.history(room, limit=10, before=None)
        assert (page.events, page.more, page.position.offset) == ([], False, 0)
        recovery = await broker.recover(room, None)
        assert (recovery.recovered, recovery.position) == (False, page.position)
        assert not (await broker.recover(room, Position("elsewhere", 3))).recovered
        assert await broker.presence_list(room) == []
        await broker.presence_remove(room, "c1")
        assert broker.live_position(room) is None
    assert broker._rooms == {}


async def test_a_resume_from_a_read_of_a_room_before_it_existed_replays_all_of_it() -> None:
    broker = MemoryBroker()
    hub = Hub(broker, presence=False)
    before = (await hub.history("r", limit=10, before=None)).position  # nothing made
    assert before.offset == 0
    for n in range(3):
        await hub.publish("r", b"%d" % n, "ann")
    s = sub()
    recovery = await hub.subscribe(s, "r", before, lambda rec: None)
    assert recovery.recovered
    assert [e.offset for e in recovery.events] == [1, 2, 3]


async def test_a_dropped_room_comes_back_in_another_epoch_even_to_readers() -> None:
    broker = memory(room_ttl=10)
    unknown = (await broker.history("r", limit=1, before=None)).position
    old = await broker.publish("r", b"1", "ann")
    assert old.position == Position(unknown.epoch, 1)  # the epoch the read answered with
    assert broker.sweep(now=time.monotonic() + 11) == 1
    fresh = (await broker.history("r", limit=1, before=None)).position
    assert fresh.epoch != old.epoch  # a position from the old life must not resume here
    new = await broker.publish("r", b"2", "ann")
    assert new.position == Position(fresh.epoch, 1)
    assert (await broker.recover("r", fresh)).recovered  # read before this life began
    assert not (await broker.recover("r", old.position)).recovered
    assert not (await broker.recover("r", unknown)).recovered  # read across the drop: reload


# -- max_rooms ------------------------------------------------------------------------------


async def test_the_memory_broker_refuses_a_room_past_max_rooms_and_takes_it_once_one_goes() -> None:
    broker = memory(max_rooms=2, room_ttl=10)
    await broker.publish("a", b"1", "ann")
    await broker.subscribe("b")
    with pytest.raises(BrokerUnavailable):
        await broker.publish("c", b"1", "ann")
    with pytest.raises(BrokerUnavailable):
        await broker.subscribe("c")
    with pytest.raises(BrokerUnavailable):
        await broker.presence_add("c", PresenceEntry("c1", "ann", 1.0))
    assert "c" not in broker._subscribed
    assert (await broker.history("c", limit=1, before=None)).events == []  # reads still answer
    assert (await broker.publish("a", b"2", "ann")).offset == 2  # existing rooms go on
    assert sorted(broker._rooms) == ["a", "b"]
    broker.sweep(now=time.monotonic() + 11)  # "a" is idle and unsubscribed
    assert (await broker.publish("c", b"1", "ann")).offset == 1


async def test_the_hub_refuses_a_local_room_past_max_rooms(redis_server: RedisServer) -> None:
    broker = RedisBroker(redis_server.url, prefix=f"t{uuid.uuid4().hex[:8]}")
    hub = Hub(broker, presence=False, max_rooms=2)
    await hub.start()
    try:
        a, b = sub("a"), sub("b")
        await hub.subscribe(a, "r1", None, lambda rec: None)
        await hub.subscribe(b, "r2", None, lambda rec: None)
        await hub.subscribe(b, "r1", None, lambda rec: None)  # an existing room: fine
        with pytest.raises(Unavailable):
            await hub.subscribe(a, "r3", None, lambda rec: None)
        assert hub.census()[3] == 2
        assert broker.channel("r3") not in broker._wanted  # nothing subscribed for it
        await hub.unsubscribe(b, "r2")
        await hub.subscribe(a, "r3", None, lambda rec: None)
    finally:
        await hub.stop()


async def test_a_client_past_max_rooms_is_answered_unavailable() -> None:
    hub = Hub(memory(max_rooms=1), presence=False, max_rooms=1)
    s = sub()
    authority = Authority(Settings())
    client = Client(authority, s, authority.limiter.lease(None))
    session = Session(SessionLimits(), s.rooms)
    for text in (
        '{"op": "subscribe", "id": 1, "room": "a"}',
        '{"op": "subscribe", "id": 2, "room": "b"}',
        '{"op": "publish", "id": 3, "room": "c", "data": 1}',
    ):
        await handle_text(text, hub, session, client)
    await asyncio.sleep(0)  # a publish the broker answered at once: replied to after the flush
    replies = {f["id"]: f for f in map(json.loads, iter(s.pop, None)) if "id" in f}
    assert replies[1]["ok"]
    assert replies[2]["error"]["code"] == "unavailable"
    assert replies[3]["error"]["code"] == "unavailable"
    assert s.rooms == {"a"}


async def test_the_settings_bound_the_memory_brokers_rooms_and_history() -> None:
    broker = make_broker(Settings(max_rooms=1, max_history_bytes=20_000))
    broker.bind(RecordingSink())
    assert isinstance(broker, MemoryBroker)
    for n in range(100):
        await broker.publish("a", b'"%d"' % n, "ann")
    assert broker.history_bytes <= 20_000
    with pytest.raises(BrokerUnavailable):
        await broker.publish("b", b"1", "ann")


async def test_the_setting_bounds_the_runtime_hubs_rooms_on_redis(
    redis_server: RedisServer,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    settings = Settings(
        redis_url=redis_server.url, redis_prefix=prefix, max_rooms=1, presence=False
    )
    hub = Roomcast(settings).hub
    await hub.start()
    try:
        await hub.subscribe(sub(), "a", None, lambda rec: None)
        with pytest.raises(Unavailable):
            await hub.subscribe(sub(), "b", None, lambda rec: None)
    finally:
        await hub.stop()


# -- max_history_bytes ------------------------------------------------------------------------


async def test_all_rooms_history_stays_under_max_history_bytes_the_largest_giving_way() -> None:
    cost = event_cost(await memory().publish("x", b'"%s"' % (b"x" * 90), "ann"))
    broker = memory(history_size=1000, max_history_bytes=100 * cost)
    trims = 0
    trim = broker.trim

    def counting_trim() -> None:
        nonlocal trims
        trims += 1
        trim()

    broker.trim = counting_trim  # type: ignore[method-assign]
    data = b'"%s"' % (b"x" * 90)
    small = [await broker.publish(f"small{n}", data, "ann") for n in range(10)]
    big = [await broker.publish("big", data, "ann") for _ in range(200)]
    medium = [await broker.publish("medium", data, "ann") for _ in range(60)]
    assert broker.history_bytes <= 100 * cost
    assert broker.history_bytes == retained(broker)  # the running count is exact
    assert trims <= (200 + 60) // 12 + 1  # a pass per 1/8 of the bound, not per publish
    for event in small:  # the small rooms kept theirs
        recovery = await broker.recover(event.room, Position(event.epoch, 0))
        assert [e.offset for e in recovery.events] == [1]
    big_kept = len(broker._rooms["big"].events)
    medium_kept = len(broker._rooms["medium"].events)
    assert 0 < big_kept < 200
    assert 0 < medium_kept <= 60
    assert abs(big_kept - medium_kept) <= 1  # cut down to one size
    assert big_kept + medium_kept + 10 <= 100
    # A resume from before what was let go is not recovered; from within, it is.
    assert not (await broker.recover("big", Position(big[0].epoch, 0))).recovered
    within = big[-big_kept - 1].position
    assert [e.offset for e in (await broker.recover("big", within)).events] == list(
        range(within.offset + 1, 201)
    )
    assert medium[-1].offset == 60


async def test_the_history_count_follows_rings_room_sizes_seeds_and_drops() -> None:
    broker = memory(history_size=5, room_ttl=10)
    for n in range(12):  # the ring lets its oldest go
        await broker.publish("a", b"%d" % n, "ann")
    assert len(broker._rooms["a"].events) == 5
    assert broker.history_bytes == retained(broker)
    await broker.publish("a", b"1", "ann", history_size=2)  # a smaller ring for this room
    assert broker.history_bytes == retained(broker)
    events = [await broker.publish("b", b"1", "ann") for _ in range(3)]
    broker.seed("b", events[-1].position, events[1:])
    assert broker.history_bytes == retained(broker)
    broker.sweep(now=time.monotonic() + 11)
    assert broker._rooms == {}
    assert broker.history_bytes == 0
