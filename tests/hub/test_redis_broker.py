"""The broker contract on the Redis broker, against a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from roomcast.hub.redis import RedisBroker, decode_payload, encode_payload

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
    @pytest.fixture
    async def make_broker(self, redis_server: RedisServer) -> AsyncIterator[MakeBroker]:
        p = prefix()
        async with started_brokers(
            lambda size: RedisBroker(redis_server.url, history_size=size, prefix=p)
        ) as make:
            yield make


class TestShardedRedisBrokerContract(BrokerContract):
    @pytest.fixture
    async def make_broker(self, redis_server: RedisServer) -> AsyncIterator[MakeBroker]:
        p = prefix()
        async with started_brokers(
            lambda size: RedisBroker(redis_server.url, history_size=size, prefix=p, sharded=True)
        ) as make:
            yield make


class TestRedisClusterBrokerContract(BrokerContract):
    @pytest.fixture
    async def make_broker(self, redis_cluster: RedisCluster) -> AsyncIterator[MakeBroker]:
        p = prefix()
        async with started_brokers(
            lambda size: RedisBroker(redis_cluster.url, history_size=size, prefix=p, cluster=True)
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
