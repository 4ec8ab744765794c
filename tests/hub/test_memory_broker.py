"""The broker contract on the memory broker, plus what is specific to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from roomcast.hub.broker import Broker, Duplicate, IdempotencyKey
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


async def test_past_the_cap_a_rooms_oldest_keys_are_forgotten_and_may_publish_again() -> None:
    broker = MemoryBroker(max_idempotency_keys=3)
    broker.bind(RecordingSink())
    keys = [IdempotencyKey("alice", f"k{n}") for n in range(4)]
    first = [await broker.publish("r", b"1", "a", idempotency=key) for key in keys]
    elsewhere = await broker.publish("r2", b"1", "a", idempotency=keys[0])  # rooms apart
    assert not isinstance(elsewhere, Duplicate)
    newest = await broker.publish("r", b"2", "a", idempotency=keys[3])
    assert isinstance(newest, Duplicate)
    assert newest.position == first[3].position
    oldest = await broker.publish("r", b"2", "a", idempotency=keys[0])  # pushed out by k3
    assert not isinstance(oldest, Duplicate)
    assert oldest.offset == 5
    assert isinstance(await broker.publish("r2", b"2", "a", idempotency=keys[0]), Duplicate)


async def test_expired_keys_are_let_go_as_the_room_publishes() -> None:
    broker = MemoryBroker(idempotency_window=0.2)
    broker.bind(RecordingSink())
    for n in range(50):
        await broker.publish("r", b"1", "a", idempotency=IdempotencyKey("alice", f"k{n}"))
    await asyncio.sleep(0.4)
    await broker.publish("r", b"1", "a", idempotency=IdempotencyKey("alice", "last"))
    kept = broker._rooms["r"].keys
    assert kept is not None
    assert list(kept) == [("alice", "last")]


async def test_the_sweep_lets_expired_keys_of_quiet_rooms_go() -> None:
    broker = MemoryBroker(idempotency_window=5)
    broker.bind(RecordingSink())
    await broker.subscribe("r")  # never dropped itself
    key = IdempotencyKey("alice", "k")
    await broker.publish("r", b"1", "a", idempotency=key)
    broker.sweep(now=time.monotonic() + 1)
    assert broker._rooms["r"].keys is not None
    broker.sweep(now=time.monotonic() + 6)
    assert broker._rooms["r"].keys is None
    assert not isinstance(await broker.publish("r", b"1", "a", idempotency=key), Duplicate)


async def test_a_dropped_room_drops_its_keys() -> None:
    broker = MemoryBroker(room_ttl=10)
    broker.bind(RecordingSink())
    key = IdempotencyKey("alice", "k")
    first = await broker.publish("r", b"1", "a", idempotency=key)
    assert broker.sweep(now=time.monotonic() + 11) == 1
    assert await broker.find_duplicate("r", key) is None
    again = await broker.publish("r", b"1", "a", idempotency=key)
    assert not isinstance(again, Duplicate)
    assert again.offset == 1
    assert again.epoch != first.epoch
