"""Per-shard state (Broker.shards) and readiness built on it: a broker is ready while
some shard serves. The Redis broker against real redis-servers and a real cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

from roomcast.hub.broker import ShardState
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.redis import RedisBroker

from ..redis_server import RedisCluster, RedisServer
from .broker_contract import RecordingSink, sink_has


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


class Sharded(MemoryBroker):
    """A memory broker that reports the shard states a test gives it."""

    def __init__(self, states: list[ShardState]) -> None:
        super().__init__()
        self.states = states

    def shards(self) -> list[ShardState]:
        return self.states


def test_a_broker_is_ready_while_some_shard_is_up_or_when_it_has_none() -> None:
    a, b, c = (ShardState(f"127.0.0.1:700{n}", up=True) for n in range(3))
    down = [ShardState(s.node, up=False) for s in (a, b, c)]
    assert MemoryBroker().shards() == []
    assert MemoryBroker().ready
    assert Sharded([a, b, c]).ready
    assert Sharded([a, down[1], down[2]]).ready  # one shard serving is enough
    assert not Sharded(down).ready
    assert not Sharded([ShardState("main", up=False)]).ready  # a single Redis: all or nothing
    assert Sharded([ShardState("main", up=True)]).ready


async def test_a_single_redis_is_one_shard_main_down_while_redis_is(
    own_redis: RedisServer,
) -> None:
    broker = RedisBroker(own_redis.url, prefix=prefix(), ping_interval=0.5, timeout=1)
    assert broker.shards() == []  # not started: nothing known
    broker.bind(RecordingSink())
    await broker.start()
    try:
        await broker.subscribe("r")
        assert broker.shards() == [ShardState("main", up=True)]
        assert broker.ready
        await asyncio.to_thread(own_redis.stop)
        await wait_for(lambda: not broker.ready)
        assert broker.shards() == [ShardState("main", up=False, held_rooms=1)]
        await asyncio.to_thread(own_redis.start)
        await wait_for(lambda: broker.ready and not broker.shards()[0].held_rooms)
        assert broker.shards() == [ShardState("main", up=True, reconnects=1)]
    finally:
        await broker.stop()


async def test_on_a_single_redis_a_failed_publish_leaves_readiness_to_the_link(
    redis_server: RedisServer,
) -> None:
    """As before shards: one publish that failed (a timeout, an OOM reply) must not
    take every replica out of the load balancer; the pub/sub link decides."""
    broker = RedisBroker(redis_server.url, prefix=prefix(), ping_interval=0.2)
    broker.bind(RecordingSink())
    await broker.start()
    try:
        broker.note_publish("main", False)
        assert broker.shards() == [ShardState("main", up=True)]
        assert broker.ready
    finally:
        await broker.stop()


async def test_messages_held_for_a_resync_are_counted_on_their_shard(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """As in test_redis_hold.py: after a failover the process still reads pub/sub from
    the old master, now a replica, and every resync read fails (READONLY), so the
    room stays held and live messages pile up for it."""
    new_master = RedisServer(tmp_path / "new-master", None, "--repl-diskless-sync-delay", "0")
    new_master.start()
    p = prefix()
    sink = RecordingSink()
    reader = RedisBroker(own_redis.url, prefix=p, ping_interval=0.5, timeout=1, backoff_cap=0.2)
    writer = RedisBroker(new_master.url, prefix=p)
    reader.bind(sink)
    writer.bind(RecordingSink())
    await reader.start()
    await writer.start()
    try:
        await reader.subscribe("r")
        await reader.subscribe("s")
        await writer.publish("r", b"0", "w")
        await asyncio.to_thread(own_redis.cli, "REPLICAOF", "127.0.0.1", str(new_master.port))
        async with asyncio.timeout(10):
            while "master_link_status:up" not in await asyncio.to_thread(
                own_redis.cli, "INFO", "replication"
            ):
                await asyncio.sleep(0.05)
        await asyncio.to_thread(own_redis.cli, "CLIENT", "KILL", "TYPE", "pubsub")
        await wait_for(lambda: reader.reconnects >= 1 and reader.ready)
        for n in range(3):
            await writer.publish("r", b"%d" % n, "w")
        await writer.publish("s", b"0", "w")
        await wait_for(lambda: reader.shards()[0].held_messages == 4)
        assert reader.shards() == [
            ShardState("main", up=True, reconnects=1, held_rooms=2, held_messages=4)
        ]
        assert sink.events == []  # held, not delivered
    finally:
        await reader.stop()
        await writer.stop()
        new_master.stop()


async def test_a_cluster_has_a_shard_per_master_named_host_port_and_ready_while_any_serves(
    redis_cluster: RedisCluster,
) -> None:
    p = prefix()
    rooms: dict[int, str] = {}
    for n in range(100):  # one room per master
        rooms.setdefault(redis_cluster.node_of(f"{p}:{{r{n}}}:ch"), f"r{n}")
    names = sorted(f"127.0.0.1:{node.port}" for node in redis_cluster.nodes)
    sink = RecordingSink()
    broker = RedisBroker(redis_cluster.url, prefix=p, cluster=True, ping_interval=0.2)
    broker.bind(sink)
    await broker.start()
    try:
        # Before any room: masters without a link here yet count as up.
        assert broker.shards() == [ShardState(name, up=True) for name in names]
        room = next(iter(rooms.values()))
        await broker.subscribe(room)
        await broker.publish(room, b"1", "ann")
        await sink_has(sink, 1)
        assert broker.shards() == [ShardState(name, up=True) for name in names]

        broker.note_publish(names[0], False)
        broker.note_publish(names[1], False)
        assert [s.up for s in broker.shards()] == [False, False, True]
        assert broker.ready  # one shard serves
        broker.note_publish(names[2], False)
        assert not broker.ready
        broker.note_publish(names[0], True)  # a later publish to it succeeded
        assert [s.up for s in broker.shards()] == [True, False, False]
        assert broker.ready
        await wait_for(lambda: all(s.up for s in broker.shards()))  # 2 * ping_interval on
    finally:
        await broker.stop()
