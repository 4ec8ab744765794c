"""The broker contract on the memory broker, plus what is specific to it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from roomcast.hub.broker import Broker
from roomcast.hub.memory import MemoryBroker
from roomcast.protocol.events import Position

from .broker_contract import (
    BrokerContract,
    MakeBroker,
    RecordingSink,
    publish_n,
    started_brokers,
)


class TestMemoryBrokerContract(BrokerContract):
    @pytest.fixture
    async def make_broker(self) -> AsyncIterator[MakeBroker]:
        async with started_brokers(lambda size, _: MemoryBroker(history_size=size)) as make:
            yield make


class SerialMemoryBroker(MemoryBroker):
    """The memory broker with Broker's default enqueue_publish (one at a time, in
    order), as a broker that does not override it gets: its contract holds too."""

    enqueue_publish = Broker.enqueue_publish


class TestDefaultEnqueuePublishContract(BrokerContract):
    @pytest.fixture
    async def make_broker(self) -> AsyncIterator[MakeBroker]:
        async with started_brokers(lambda size, _: SerialMemoryBroker(history_size=size)) as make:
            yield make


async def test_an_idle_room_is_dropped_and_comes_back_in_a_new_epoch() -> None:
    broker = MemoryBroker(room_ttl=10)
    broker.bind(RecordingSink())
    (event,) = await publish_n(broker, "r", 1)
    assert broker.sweep(now=time.monotonic() + 5) == 0
    assert broker.sweep(now=time.monotonic() + 11) == 1
    rec = await broker.recover("r", Position(event.epoch, 1))
    assert not rec.recovered
    assert rec.position.epoch != event.epoch
    assert rec.position.offset == 0


async def test_a_subscribed_room_is_never_dropped() -> None:
    broker = MemoryBroker(room_ttl=10)
    broker.bind(RecordingSink())
    await broker.subscribe("r")
    await publish_n(broker, "r", 1)
    assert broker.sweep(now=time.monotonic() + 100) == 0
