"""The pub/sub side on real Redis (issue 16): sharded subscriptions go slot by slot,
an error reply fails only its own command's channels and never drops the link, and
a room whose cluster slot moves follows it to the new owner without losing an
acknowledged event."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio.connection import Connection

from roomcast.hub.broker import BrokerUnavailable
from roomcast.hub.redis import RedisBroker
from roomcast.hub.redis_pubsub import PubSubLink, SlotMoved

from ..cluster.topology import migrate_slot
from ..conftest import require
from ..redis_server import RedisCluster, RedisServer, free_port, redis_available
from .broker_contract import RecordingSink, sink_has


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def slot_of(cluster: RedisCluster, key: str) -> int:
    return int(cluster.nodes[0].cli("CLUSTER", "KEYSLOT", key))


def channels_on(cluster: RedisCluster, node: int, count: int, p: str) -> list[bytes]:
    """``count`` channels whose slots (one each) node ``node`` owns."""
    chosen: dict[int, bytes] = {}
    for n in itertools.count():
        channel = f"{p}:{{c{n}}}:ch"
        slot = slot_of(cluster, channel)
        if slot not in chosen and cluster.node_of(channel) == node:
            chosen[slot] = channel.encode()
            if len(chosen) == count:
                return list(chosen.values())
    raise AssertionError("unreachable")


def room_on(cluster: RedisCluster, node: int, p: str) -> str:
    return next(f"r{n}" for n in itertools.count() if cluster.node_of(f"{p}:{{r{n}}}:ch") == node)


class Recorder:
    """A link's callbacks: messages received, resyncs asked for, evictions."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.reconnects = 0
        self.evicted: list[bytes] = []

    def on_message(self, channel: bytes, data: bytes) -> None:
        self.messages.append((channel, data))

    async def on_reconnect(self) -> None:
        self.reconnects += 1

    def on_evicted(self, channel: bytes, moved: object) -> None:
        self.evicted.append(channel)


def link_to(port: int, recorder: Recorder, **options: object) -> PubSubLink:
    connect = functools.partial(
        Connection,
        host="127.0.0.1",
        port=port,
        username=options.pop("username", None),
        password=options.pop("password", None),
    )
    return PubSubLink(
        connect,
        recorder.on_message,
        recorder.on_reconnect,
        lambda: None,
        sharded=True,
        health_interval=0.5,
        backoff_cap=0.2,
        on_evicted=recorder.on_evicted,
        **options,  # type: ignore[arg-type]
    )


# -- slot by slot ---------------------------------------------------------------------------


async def test_channels_of_several_slots_on_one_node_are_subscribed_slot_by_slot(
    redis_cluster: RedisCluster,
) -> None:
    """Six channels of six slots on one master, asked for in one loop iteration,
    and again after a reconnect: Redis confirms every one (one SSUBSCRIBE for
    several slots would be refused with CROSSSLOT)."""
    node = redis_cluster.nodes[0]
    channels = channels_on(redis_cluster, 0, 6, prefix())
    recorder = Recorder()
    link = link_to(node.port, recorder)
    await link.start()
    try:
        await asyncio.gather(*(link.subscribe(channel) for channel in channels))
        assert link.subscribed == set(channels)
        assert (link.refusals, link.serial) == (0, 1)

        killed = await asyncio.to_thread(node.cli, "CLIENT", "KILL", "TYPE", "pubsub")
        assert int(killed) >= 1
        await wait_for(lambda: recorder.reconnects == 1)  # every resubscription answered
        assert link.subscribed == set(channels)
        assert (link.refusals, link.serial) == (0, 2)
        for channel in channels:
            await asyncio.to_thread(node.cli, "SPUBLISH", channel.decode(), "x")
        await wait_for(lambda: len(recorder.messages) == len(channels))
        assert sorted(c for c, _ in recorder.messages) == sorted(channels)
    finally:
        await link.stop()


# -- error replies --------------------------------------------------------------------------


async def test_a_moved_reply_fails_only_that_subscribe_and_the_link_reads_on(
    redis_cluster: RedisCluster,
) -> None:
    """A channel of another master's slot, subscribed together with one of this
    master's: the first gets :class:`SlotMoved` naming its owner, the second is
    confirmed, and the connection is the same one."""
    p = prefix()
    (mine,) = channels_on(redis_cluster, 0, 1, p)
    (theirs,) = channels_on(redis_cluster, 1, 1, p)
    recorder = Recorder()
    link = link_to(redis_cluster.nodes[0].port, recorder)
    await link.start()
    try:
        results = await asyncio.gather(
            link.subscribe(theirs), link.subscribe(mine), return_exceptions=True
        )
        moved, confirmed = results
        assert isinstance(moved, SlotMoved), moved
        assert moved.moved is not None
        assert moved.moved.port == redis_cluster.nodes[1].port
        assert confirmed is None
        assert link.connected
        assert (link.serial, link.refusals) == (1, 1)
        assert link.wanted == {mine}  # the moved one is forgotten, not kept to retry
        assert recorder.evicted == []  # its caller was told: no eviction callback
        await asyncio.to_thread(redis_cluster.nodes[0].cli, "SPUBLISH", mine.decode(), "x")
        await wait_for(lambda: recorder.messages == [(mine, b"x")])
    finally:
        await link.stop()


@pytest.fixture
def limited_user(redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    """A Redis user that may use channels ``<user>:ok*`` only: (name, password)."""
    name = f"u{uuid.uuid4().hex[:8]}"
    redis_server.cli("ACL", "SETUSER", name, "on", ">pw", "+@all", "~*", f"&{name}:ok*")
    yield name, "pw"
    redis_server.cli("ACL", "DELUSER", name)


async def test_a_refused_resubscription_is_tried_again_on_the_same_connection(
    redis_server: RedisServer,
    limited_user: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis refuses one channel (NOPERM here; CLUSTERDOWN or TRYAGAIN on a
    cluster): its subscriber is told, the other channels and the connection are
    unharmed. After a reconnect the channel, still wanted, is refused again and
    retried with backoff, without reconnecting, until Redis takes it; the
    rooms confirmed are resynced at once, the late one when it is confirmed.
    The warning is logged once per interval, the rest counted."""
    user, password = limited_user
    allowed, denied = f"{user}:ok".encode(), f"{user}:no".encode()
    recorder = Recorder()
    caplog.set_level(logging.WARNING, logger="roomcast.redis")
    link = link_to(redis_server.port, recorder, username=user, password=password, warn_interval=60)
    await link.start()
    try:
        results = await asyncio.gather(
            link.subscribe(allowed), link.subscribe(denied), return_exceptions=True
        )
        assert results[0] is None
        assert isinstance(results[1], BrokerUnavailable)
        assert not isinstance(results[1], SlotMoved)
        assert "NOPERM" in str(results[1]) or "permission" in str(results[1]).lower()
        assert (link.connected, link.serial, link.subscribed) == (True, 1, {allowed})

        await asyncio.to_thread(redis_server.cli, "CLIENT", "KILL", "USER", user)
        await wait_for(lambda: recorder.reconnects == 1)  # `allowed` confirmed, resynced
        assert link.subscribed == {allowed}
        assert link.refusals >= 2
        await asyncio.to_thread(redis_server.cli, "ACL", "SETUSER", user, f"&{user}:no*")
        await wait_for(lambda: recorder.reconnects == 2)  # `denied` taken at last
        assert link.subscribed == {allowed, denied}
        assert link.serial == 2  # the refusals never cost the connection
        await asyncio.to_thread(redis_server.cli, "SPUBLISH", denied.decode(), "y")
        await wait_for(lambda: recorder.messages == [(denied, b"y")])
        refused = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) == 1
        assert link._warn_refused.skipped >= 1
    finally:
        await link.stop()


async def test_a_connection_lost_again_and_again_is_logged_once_per_interval(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    caplog.set_level(logging.WARNING, logger="roomcast.redis")
    link = link_to(own_redis.port, recorder, warn_interval=60)
    await link.start()
    try:
        await link.subscribe(b"ch")
        for n in range(3):
            await asyncio.to_thread(own_redis.cli, "CLIENT", "KILL", "TYPE", "pubsub")
            await wait_for(lambda n=n: recorder.reconnects == n + 1)  # type: ignore[misc]
        lost = [r for r in caplog.records if "lost" in r.getMessage()]
        assert len(lost) == 1
        assert link._warn_lost.skipped == 2
        assert link.reconnects == 3
    finally:
        await link.stop()


# -- slots that move ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moving_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A cluster of this module's own: its tests move slots."""
    require(redis_available(), "redis-server (apt-get install redis-server)")
    cluster = RedisCluster(tmp_path_factory.mktemp("moving")).start()
    yield cluster
    cluster.stop()


async def brokers(cluster: RedisCluster, p: str) -> tuple[RedisBroker, RecordingSink, RedisBroker]:
    sink = RecordingSink()
    reader = RedisBroker(cluster.url, prefix=p, cluster=True, ping_interval=0.5, timeout=2)
    writer = RedisBroker(cluster.url, prefix=p, cluster=True, timeout=2)
    reader.bind(sink)
    writer.bind(RecordingSink())
    await reader.start()
    await writer.start()
    return reader, sink, writer


async def test_a_live_rooms_subscription_follows_its_migrated_slot_and_loses_nothing(
    moving_cluster: RedisCluster, tmp_path: Path
) -> None:
    """The room's slot is migrated to another master while it is published to:
    Redis ends the subscription (a pushed ``sunsubscribe``); the broker holds the
    room, subscribes on the new owner and fills the gap from the room's stream,
    which moved with the slot. Every acknowledged event arrives once, in order,
    with no ``reset``, and later ones come from the new owner."""
    p = prefix()
    room = room_on(moving_cluster, 0, p)
    reader, sink, writer = await brokers(moving_cluster, p)
    acked: list[int] = []
    stopping = asyncio.Event()

    async def publish() -> None:
        for n in itertools.count():
            if stopping.is_set():
                return
            with contextlib.suppress(BrokerUnavailable):  # mid-migration: told, not acked
                acked.append((await writer.publish(room, b"%d" % n, "w")).offset)
            await asyncio.sleep(0.005)

    try:
        await reader.subscribe(room)
        old = reader._links[f"127.0.0.1:{moving_cluster.nodes[0].port}"]
        publisher = asyncio.create_task(publish())
        await wait_for(lambda: len(acked) >= 30)
        slot = slot_of(moving_cluster, f"{p}:{{{room}}}")
        assert await migrate_slot(moving_cluster, slot, 0, 1)  # the room's keys moved
        before = len(acked)
        await wait_for(lambda: len(acked) >= before + 30)
        stopping.set()
        await publisher
        await wait_for(lambda: set(acked) <= {e.offset for e in sink.events})
        offsets = [e.offset for e in sink.events]
        assert offsets == list(range(1, offsets[-1] + 1))  # once each, in order, no gap
        assert sink.notices == []  # the stream moved with the slot: no reset
        new = reader._links[f"127.0.0.1:{moving_cluster.nodes[1].port}"]
        channel = reader.channel(room)
        assert channel in new.subscribed
        assert channel not in old.wanted
        assert old.evictions >= 1  # the pushed sunsubscribe (and MOVED, if tried there)
        assert reader._held == {}
    finally:
        stopping.set()
        await reader.stop()
        await writer.stop()


async def test_a_subscribe_through_a_stale_slot_map_follows_moved(
    moving_cluster: RedisCluster,
) -> None:
    """The slot moved after this process read the slot map: SSUBSCRIBE on the
    old owner answers MOVED, and the subscribe goes on to the new owner."""
    p = prefix()
    room = room_on(moving_cluster, 0, p)
    reader, sink, writer = await brokers(moving_cluster, p)
    try:
        await writer.publish(room, b"0", "w")  # the room has keys to move
        slot = slot_of(moving_cluster, f"{p}:{{{room}}}")
        await migrate_slot(moving_cluster, slot, 0, 2)
        await reader.subscribe(room)  # the reader's map still says node 0
        new = reader._links[f"127.0.0.1:{moving_cluster.nodes[2].port}"]
        assert reader.channel(room) in new.subscribed
        assert reader.live_position(room) is not None
        assert reader.live_position(room).offset == 1  # type: ignore[union-attr]
        await writer.publish(room, b"1", "w")
        await sink_has(sink, 1)
        assert [e.offset for e in sink.events] == [2]
        assert sink.notices == []
    finally:
        await reader.stop()
        await writer.stop()


async def test_a_room_held_on_an_unreachable_node_follows_its_slot_to_a_new_owner(
    moving_cluster: RedisCluster,
) -> None:
    """The link to the room's master is lost and cannot connect again (its
    connections go to a port nobody listens on: a dead node, as far as this
    process can tell), and meanwhile the slot gets another owner (here moved by
    hand, as a failover would). The failed connects have the slot map read
    again; the room follows its slot and its gap is filled from the stream:
    every event once, in order, no reset."""
    p = prefix()
    room = room_on(moving_cluster, 1, p)
    reader, sink, writer = await brokers(moving_cluster, p)
    source = moving_cluster.nodes[1]
    try:
        await reader.subscribe(room)
        await writer.publish(room, b"0", "w")
        await sink_has(sink, 1)
        old = reader._links[f"127.0.0.1:{source.port}"]
        old._connect = functools.partial(Connection, host="127.0.0.1", port=free_port())
        await asyncio.to_thread(source.cli, "CLIENT", "KILL", "TYPE", "pubsub")
        await wait_for(lambda: room in reader._held)
        await writer.publish(room, b"1", "w")  # lost to pub/sub: only in the stream
        slot = slot_of(moving_cluster, f"{p}:{{{room}}}")
        assert await migrate_slot(moving_cluster, slot, 1, 0)
        await writer.publish(room, b"2", "w")  # on the new owner, nobody subscribed yet
        new = reader._links[f"127.0.0.1:{moving_cluster.nodes[0].port}"]
        channel = reader.channel(room)
        await wait_for(lambda: channel in new.subscribed and room not in reader._held)
        assert channel not in old.wanted
        assert not old.connected  # still unreachable: the room did not wait for it
        await writer.publish(room, b"3", "w")
        await sink_has(sink, 4)
        assert [e.offset for e in sink.events] == [1, 2, 3, 4]
        assert [e.data for e in sink.events] == [b"0", b"1", b"2", b"3"]
        assert sink.notices == []
    finally:
        await reader.stop()
        await writer.stop()
