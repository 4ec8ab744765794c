"""The broker contract on the Redis broker, against a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from roomcast.hub.broker import Broker, BrokerSink
from roomcast.hub.redis import RedisBroker, decode_payload, encode_payload

from ..redis_server import RedisServer
from .broker_contract import BrokerContract, MakeBroker


class TestRedisBrokerContract(BrokerContract):
    @pytest.fixture
    async def make_broker(self, redis_server: RedisServer) -> AsyncIterator[MakeBroker]:
        started: list[Broker] = []
        prefix = f"t{uuid.uuid4().hex[:8]}"

        async def make(sink: BrokerSink, history_size: int = 100) -> Broker:
            broker = RedisBroker(redis_server.url, history_size=history_size, prefix=prefix)
            broker.bind(sink)
            await broker.start()
            assert broker.ready
            started.append(broker)
            return broker

        yield make
        for broker in started:
            await broker.stop()


class TestShardedRedisBrokerContract(TestRedisBrokerContract):
    @pytest.fixture
    async def make_broker(self, redis_server: RedisServer) -> AsyncIterator[MakeBroker]:
        started: list[Broker] = []
        prefix = f"s{uuid.uuid4().hex[:8]}"

        async def make(sink: BrokerSink, history_size: int = 100) -> Broker:
            broker = RedisBroker(
                redis_server.url, history_size=history_size, prefix=prefix, sharded=True
            )
            broker.bind(sink)
            await broker.start()
            started.append(broker)
            return broker

        yield make
        for broker in started:
            await broker.stop()


def test_payloads_round_trip_any_sender_and_data() -> None:
    for sender in ("ann", "with space", "ünï 😀", "", "a b c 12 x"):
        for data in (b'{"x":1}', b'"a b"', b"null", b'"\\u0000 12 "'):
            assert decode_payload(encode_payload(1763800000.125, sender, data)) == (
                1763800000.125,
                sender,
                data,
            )
