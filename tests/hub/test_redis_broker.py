"""The broker contract on the Redis broker, against a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.crc import key_slot

from roomcast.hub.broker import BrokerUnavailable, Duplicate, IdempotencyKey, Recovery
from roomcast.hub.redis import RedisBroker, decode_payload, encode_payload
from roomcast.protocol.events import Position

from ..redis_server import RedisCluster, RedisServer
from .broker_contract import (
    BrokerContract,
    MakeBroker,
    RecordingSink,
    sink_has,
    started_brokers,
)


def prefix() -> str:
    """Each test's own key prefix, so tests sharing a Redis never meet."""
    return f"t{uuid.uuid4().hex[:8]}"


class TestRedisBrokerContract(BrokerContract):
    shares_control = True

    @pytest.fixture
    async def make_broker(self, redis_server: RedisServer) -> AsyncIterator[MakeBroker]:
        p = prefix()
        async with started_brokers(
            lambda size, ns: RedisBroker(redis_server.url, history_size=size, prefix=p + ns)
        ) as make:
            yield make


class TestShardedRedisBrokerContract(BrokerContract):
    shares_control = True

    @pytest.fixture
    async def make_broker(self, redis_server: RedisServer) -> AsyncIterator[MakeBroker]:
        p = prefix()
        async with started_brokers(
            lambda size, ns: RedisBroker(
                redis_server.url, history_size=size, prefix=p + ns, sharded=True
            )
        ) as make:
            yield make


class TestRedisClusterBrokerContract(BrokerContract):
    shares_control = True

    @pytest.fixture
    async def make_broker(self, redis_cluster: RedisCluster) -> AsyncIterator[MakeBroker]:
        p = prefix()
        async with started_brokers(
            lambda size, ns: RedisBroker(
                redis_cluster.url, history_size=size, prefix=p + ns, cluster=True
            )
        ) as make:
            yield make


async def test_on_a_cluster_each_room_is_carried_by_its_own_shards_link(
    redis_cluster: RedisCluster,
) -> None:
    p = prefix()
    rooms: dict[int, str] = {}
    for n in range(100):  # one room per shard
        rooms.setdefault(redis_cluster.node_of(f"{p}:{{r{n}}}:ch"), f"r{n}")
    assert len(rooms) == 3
    sink = RecordingSink()
    broker = RedisBroker(redis_cluster.url, prefix=p, cluster=True)
    broker.bind(sink)
    await broker.start()
    try:
        for room in rooms.values():
            await broker.subscribe(room)
        assert len(broker._links) == 3
        for room in rooms.values():
            await broker.publish(room, b"1", "ann")
        await sink_has(sink, 3)
        assert sorted(e.room for e in sink.events) == sorted(rooms.values())
    finally:
        await broker.stop()


def test_payloads_round_trip_any_sender_and_data() -> None:
    for sender in ("ann", "with space", "ünï 😀", "", "a b c 12 x"):
        for data in (b'{"x":1}', b'"a b"', b"null", b'"\\u0000 12 "'):
            assert decode_payload(encode_payload(1763800000.125, sender, data)) == (
                1763800000.125,
                sender,
                data,
            )


async def test_a_resync_overtaken_by_another_drop_leaves_the_release_to_the_newer_one(
    redis_server: RedisServer,
) -> None:
    """The link drops, comes back, and drops again while the first resync reads the
    gap. Messages published during the second outage are only in the stream, and live
    messages after the second reconnect may arrive before the second resync reads it:
    they must stay held, or the gate would pass them and then drop the gap as seen."""
    p = prefix()
    sink = RecordingSink()
    reader = RedisBroker(redis_server.url, prefix=p)
    writer = RedisBroker(redis_server.url, prefix=p)
    reader.bind(sink)
    writer.bind(RecordingSink())
    await reader.start()
    await writer.start()
    try:
        await reader.subscribe("r")
        for n in range(3):
            await writer.publish("r", b"%d" % n, "w")
        await sink_has(sink, 3)
        (name,) = reader._links
        link = reader._links[name]
        real_recover = reader.recover
        read = asyncio.Event()

        async def slow_recover(room: str, since: Position | None) -> Recovery:
            result = await real_recover(room, since)  # reads the gap (empty) now...
            await read.wait()  # ...and returns only after the second drop
            return result

        reader._hold_link(name)  # first drop, and its reconnect:
        reader.recover = slow_recover  # type: ignore[method-assign]
        first = asyncio.create_task(reader._resync("r", link, link.serial))
        await asyncio.sleep(0.05)
        reader._hold_link(name)  # second drop, while the first resync reads,
        link.serial += 1  # and the second reconnect (as PubSubLink._open counts them)
        for n in (3, 4):  # published during the second outage: lost to pub/sub
            await writer.publish("r", b"%d" % n, "w")
        await wait_for(lambda: len(reader._held["r"]) == 2)
        reader._held["r"].clear()
        read.set()
        await first
        assert "r" in reader._held, "an overtaken resync released the hold"
        reader.recover = real_recover  # type: ignore[method-assign]
        await writer.publish("r", b"5", "w")  # live, before the second resync reads
        await wait_for(lambda: len(reader._held["r"]) == 1)
        await reader._resync("r", link, link.serial)  # the second reconnect's resync
        assert [e.offset for e in sink.events] == [1, 2, 3, 4, 5, 6]
    finally:
        await reader.stop()
        await writer.stop()


async def test_a_resync_for_a_connection_already_lost_leaves_the_hold(
    redis_server: RedisServer,
) -> None:
    """The link reconnects and drops again before that reconnect's resync starts: the
    drop was counted already, so only the connection tells the two apart. Releasing
    would let live messages pass before what the next outage loses (a gap)."""
    p = prefix()
    sink = RecordingSink()
    reader = RedisBroker(redis_server.url, prefix=p)
    writer = RedisBroker(redis_server.url, prefix=p)
    reader.bind(sink)
    writer.bind(RecordingSink())
    await reader.start()
    await writer.start()
    try:
        await reader.subscribe("r")
        await writer.publish("r", b"0", "w")
        await sink_has(sink, 1)
        (name,) = reader._links
        link = reader._links[name]
        reader._hold_link(name)  # a drop; its reconnect is connection `serial`
        serial = link.serial
        reader._hold_link(name)  # dropped again before that reconnect's resync ran,
        link.serial += 1  # and connected again
        await writer.publish("r", b"1", "w")  # live on the new connection: held
        await wait_for(lambda: len(reader._held["r"]) == 1)
        await reader._resync("r", link, serial)  # the stale resync
        assert "r" in reader._held, "a resync for a lost connection released the hold"
        assert [e.offset for e in sink.events] == [1]
        await reader._resync("r", link, link.serial)
        assert [e.offset for e in sink.events] == [1, 2]
    finally:
        await reader.stop()
        await writer.stop()


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_publishes_enqueued_together_share_round_trips(redis_server: RedisServer) -> None:
    broker = RedisBroker(redis_server.url, prefix=prefix())
    broker.bind(RecordingSink())
    await broker.start()
    try:
        events = await asyncio.gather(*(broker.enqueue_publish("r", b"1", "t") for _ in range(100)))
        assert [e.offset for e in events] == list(range(1, 101))
        assert 1 <= broker.publish_pipelines < 100
    finally:
        await broker.stop()


async def test_an_idempotency_key_is_one_string_in_the_rooms_slot_expiring_with_the_window(
    redis_server: RedisServer,
) -> None:
    p = prefix()
    broker = RedisBroker(redis_server.url, prefix=p, idempotency_window=30)
    broker.bind(RecordingSink())
    await broker.start()
    try:
        key = IdempotencyKey("u:1", "a:b")
        event = await broker.publish("chat:r", b"1", "t", idempotency=key)
        name = broker.idempotency_key("chat:r", key)
        assert name == f"{p}:{{chat:r}}:idem:3:u:1a:b"
        assert key_slot(name.encode()) == key_slot(f"{p}:{{chat:r}}:meta".encode())
        stored = await asyncio.to_thread(redis_server.cli, "GET", name)
        assert stored == f"{event.epoch} {event.offset}"
        ttl = int(await asyncio.to_thread(redis_server.cli, "PTTL", name))
        assert 0 < ttl <= 30_000
        # A duplicate runs no XADD and no PUBLISH: the stream holds one entry
        again = await broker.publish("chat:r", b"2", "t", idempotency=key)
        assert isinstance(again, Duplicate)
        length = await asyncio.to_thread(redis_server.cli, "XLEN", f"{p}:{{chat:r}}:log")
        assert int(length) == 1
    finally:
        await broker.stop()


async def test_when_redis_is_gone_every_queued_publish_fails_and_later_ones_go_through(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    broker = RedisBroker(server.url, prefix=prefix(), timeout=1.0, ping_interval=0.5)
    broker.bind(RecordingSink())
    await broker.start()
    try:
        assert (await broker.publish("r", b"1", "t")).offset == 1
        server.stop()
        futures = [broker.enqueue_publish("r", b"2", "t") for _ in range(5)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(r, BrokerUnavailable) for r in results), results
        await asyncio.to_thread(server.start)  # empty: the room starts again, new epoch
        deadline = asyncio.get_running_loop().time() + 20
        failures: list[BaseException] = []
        while True:
            try:
                event = await broker.publish("r", b"3", "t")
                break
            except BrokerUnavailable as exc:
                failures.append(exc)
                assert asyncio.get_running_loop().time() < deadline, failures[-3:]
                await asyncio.sleep(0.1)
        assert event.offset == 1, (event, failures[-3:])
    finally:
        await broker.stop()
        server.stop()


async def test_the_control_channel_is_subscribed_again_after_a_pubsub_reconnect_and_is_no_room(
    own_redis: RedisServer,
) -> None:
    p = prefix()
    sink = RecordingSink()
    reader = RedisBroker(own_redis.url, prefix=p, ping_interval=0.5)
    writer = RedisBroker(own_redis.url, prefix=p)
    reader.bind(sink)
    writer.bind(RecordingSink())
    await reader.start()
    await writer.start()
    try:
        await reader.subscribe("r")
        await writer.publish_control({"op": "before"})
        await writer.publish("r", b"1", "w")
        await sink_has(sink, 1)
        await asyncio.to_thread(own_redis.cli, "CLIENT", "KILL", "TYPE", "pubsub")
        await wait_for(lambda: reader.reconnects >= 1 and reader.ready)
        await writer.publish("r", b"2", "w")
        await sink_has(sink, 2)  # resubscribed: the room and the control channel alike
        await writer.publish_control({"op": "after"})
        await wait_for(lambda: len(sink.controls) == 2)
        assert sink.controls == [{"op": "before"}, {"op": "after"}]
        assert [e.offset for e in sink.events] == [1, 2]
        assert sink.notices == []  # no reset
        assert reader._held == {}  # only the room was held and resynced
        assert set(reader._delivered) == {"r"}
        assert await asyncio.to_thread(own_redis.cli, "KEYS", "*control*") == ""
    finally:
        await reader.stop()
        await writer.stop()
