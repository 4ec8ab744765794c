"""The Redis broker behind Redis Sentinel (``ROOMCAST_REDIS_SENTINELS``): real
redis-servers and sentinels (roomcast.testing.redis_sentinel), a master killed or
failed over by the sentinels, and the broker following the master they name."""

from __future__ import annotations

import asyncio
import types
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from roomcast.hub import redis_queues
from roomcast.hub.broker import BrokerUnavailable
from roomcast.hub.redis import RedisBroker
from roomcast.protocol.events import Event
from roomcast.runtime import make_broker
from roomcast.settings import Settings
from roomcast.testing import redis_available
from roomcast.testing.redis_sentinel import RedisSentinels

from ..conftest import require
from .broker_contract import BrokerContract, MakeBroker, RecordingSink, started_brokers

TIMEOUT = 1.0
"""The brokers' ``redis_timeout``: every publish is answered within it (plus slack)."""


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def shared_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinels]:
    """A master, its replica and a sentinel that no test disturbs."""
    require(redis_available(), "redis-server (apt-get install redis-server)")
    with RedisSentinels(tmp_path_factory.mktemp("sentinels")) as redis:
        yield redis


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[RedisSentinels]:
    """A master, its replica and a sentinel for one test, which may fail it over."""
    require(redis_available(), "redis-server (apt-get install redis-server)")
    with RedisSentinels(tmp_path / "redis") as redis:
        yield redis


def out_of_the_sentinels_reach(redis: RedisSentinels) -> RedisSentinels:
    """``redis`` (not started) with a master the sentinels cannot demote once they
    failed it over, as when a partition keeps them from it but not roomcast: its
    REPLICAOF (SLAVEOF) is renamed away, so their reconfiguration (REPLICAOF, then
    CLIENT KILL of its clients, in one MULTI) fails, and it goes on answering as a
    master to whoever is still connected."""
    hidden = ("--rename-command", "SLAVEOF", "", "--rename-command", "REPLICAOF", "")
    redis.master.extra = (*redis.master.extra, *hidden)
    return redis


def sentinel_broker(redis: RedisSentinels, **settings: object) -> RedisBroker:
    """A RedisBroker made from settings as `roomcast serve` makes it: no
    ``redis_url``, only the sentinels and the service."""
    broker = make_broker(
        Settings(
            redis_sentinels=redis.addresses,
            redis_sentinel_service=redis.service,
            redis_prefix=prefix(),
            redis_timeout=TIMEOUT,
            redis_ping_interval=0.5,
            redis_backoff_cap=0.5,
            **settings,
        )
    )
    assert isinstance(broker, RedisBroker)
    return broker


class TestRedisSentinelBrokerContract(BrokerContract):
    shares_control = True

    @pytest.fixture
    async def make_broker(self, shared_sentinels: RedisSentinels) -> AsyncIterator[MakeBroker]:
        p = prefix()
        sentinels = [("127.0.0.1", s.port) for s in shared_sentinels.sentinels]
        async with started_brokers(
            lambda size, ns: RedisBroker(
                "redis://", history_size=size, prefix=p + ns, sentinels=sentinels
            )
        ) as make:
            yield make


async def replicated(redis: RedisSentinels, broker: RedisBroker, offset: int) -> None:
    """Wait until the replica has room ``r`` up to ``offset`` (Redis replicates
    asynchronously: a failover before that loses what it has not got)."""
    meta = broker._keys("r", "meta")[0]
    async with aioredis.Redis(port=redis.replica.port) as client:
        async with asyncio.timeout(10):
            while int(await client.hget(meta, "o") or 0) < offset:
                await asyncio.sleep(0.02)


async def publish(broker: RedisBroker, n: int) -> Event | None:
    """Publish ``n`` in room ``r``: the event, or None for ``unavailable``. Never
    left unanswered (the test fails if it is not answered within its deadline)."""
    async with asyncio.timeout(TIMEOUT + 2):
        try:
            return await broker.publish("r", b"%d" % n, "w")
        except BrokerUnavailable:
            return None


async def test_a_killed_master_is_followed_to_the_replica_the_sentinels_promote(
    sentinels: RedisSentinels,
) -> None:
    """SIGKILL the master: publishes answer ``unavailable`` (never hang) until the
    sentinels promote the replica, then succeed there; the live subscriber receives
    every acknowledged publish, before and after, once and in order; the one shard
    is still ``main`` and up, its pub/sub link on the new master."""
    broker = sentinel_broker(sentinels)
    sink = RecordingSink()
    broker.bind(sink)
    await broker.start()
    try:
        await broker.subscribe("r")
        before = [await broker.publish("r", b"%d" % n, "w") for n in range(3)]
        await replicated(sentinels, broker, before[-1].offset)
        await wait_for(lambda: len(sink.events) == 3)
        sentinels.master.stop()
        outcomes: list[Event | None] = []
        n = 3
        async with asyncio.timeout(30):
            while True:  # until a publish succeeds on the promoted replica
                outcomes.append(await publish(broker, n))
                n += 1
                if outcomes[-1] is not None:
                    break
                await asyncio.sleep(0.05)
        assert await asyncio.to_thread(sentinels.master_port) == sentinels.replica.port
        after = [await broker.publish("r", b"%d" % k, "w") for k in range(n, n + 5)]
        acked = [e for e in [*before, *outcomes, *after] if e is not None]
        await wait_for(lambda: any(e.position == acked[-1].position for e in sink.events))
        got = [(e.position, e.data) for e in sink.events]

        assert None in outcomes  # the master was down for a while: unavailable, answered
        assert [(e.position, e.data) for e in acked if (e.position, e.data) not in got] == []
        offsets = [position.offset for position, _ in got]
        assert offsets == sorted(set(offsets))  # once each, in order
        assert len({position.epoch for position, _ in got}) == 1
        assert sink.notices == []  # replicated before the kill: nothing lost, no reset
        promoted = ("127.0.0.1", sentinels.replica.port)
        await wait_for(lambda: broker.master == promoted and broker.ready)
        assert broker._links["main"].address == promoted
        assert [(s.node, s.up) for s in broker.shards()] == [("main", True)]
    finally:
        await broker.stop()


async def test_after_a_failover_the_old_master_still_up_gets_no_more_publishes(
    tmp_path: Path,
) -> None:
    """``SENTINEL FAILOVER`` leaves the old master up, and here the sentinels cannot
    demote it: it answers as a master for ever to the connections it has. The broker
    follows ``+switch-master``: its publishes (pooled connections) and its pub/sub
    link move to the new master, whose stream has every event acknowledged from
    then on; the subscriber gets them live."""
    require(redis_available(), "redis-server (apt-get install redis-server)")
    with out_of_the_sentinels_reach(RedisSentinels(tmp_path / "redis")) as sentinels:
        await follow_a_failover_of_a_master_left_up(sentinels)


async def follow_a_failover_of_a_master_left_up(sentinels: RedisSentinels) -> None:
    broker = sentinel_broker(sentinels)
    sink = RecordingSink()
    broker.bind(sink)
    await broker.start()
    new = sentinels.replica
    try:
        await broker.subscribe("r")
        for n in range(3):
            last = await broker.publish("r", b"%d" % n, "w")
        await replicated(sentinels, broker, last.offset)
        assert broker.master == ("127.0.0.1", sentinels.master.port)
        assert await asyncio.to_thread(sentinels.failover) == "OK"
        await wait_for(lambda: broker.master_switches == 1)
        await wait_for(lambda: broker._links["main"].address == ("127.0.0.1", new.port))
        await wait_for(lambda: not broker._repointing)
        assert sentinels.master.process is not None  # still up, and reachable
        events = [await broker.publish("r", b"%d" % n, "w") for n in range(10, 15)]
        async with aioredis.Redis(port=new.port) as client:
            entries = await client.xrange(broker._keys("r", "log")[0])
        stream = {entry_id.decode(): fields[b"p"] for entry_id, fields in entries}
        for event in events:
            assert stream[f"{event.offset}-0"].endswith(event.data), event
        await wait_for(lambda: [e.data for e in sink.events[-5:]] == [e.data for e in events])
        assert [e.position for e in sink.events[-5:]] == [e.position for e in events]
    finally:
        await broker.stop()


async def test_the_watch_follows_through_the_next_sentinel_when_one_is_down(
    tmp_path: Path,
) -> None:
    """Three sentinels, the first one down from the start: the broker serves (a new
    connection asks the next sentinel), its watch subscribes on another sentinel,
    and a failover (of a master the sentinels cannot demote) is followed."""
    require(redis_available(), "redis-server (apt-get install redis-server)")
    redis = out_of_the_sentinels_reach(RedisSentinels(tmp_path / "redis", sentinels=3))
    with redis:
        redis.sentinels[0].stop()
        broker = sentinel_broker(redis)
        broker.bind(RecordingSink())
        await broker.start()
        try:
            first = await broker.publish("r", b"1", "w")
            await replicated(redis, broker, first.offset)
            await wait_for(lambda: broker.master == ("127.0.0.1", redis.master.port))
            assert await asyncio.to_thread(redis.failover) == "OK"
            await wait_for(lambda: broker.master == ("127.0.0.1", redis.replica.port))
            await wait_for(lambda: broker._links["main"].address == broker.master)
            second = await broker.publish("r", b"2", "w")
            assert second.position.epoch == first.position.epoch
            assert second.offset == first.offset + 1  # replicated, then the new master
        finally:
            await broker.stop()


async def test_a_publish_to_the_new_master_does_not_wait_out_the_old_ones_backoff(
    sentinels: RedisSentinels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish fails on the killed master, and the batcher backs off from
    ``main`` (for 30 s here: the backoff's base and cap raised, its jitter at
    the top). The sentinels promote the replica: once roomcast has followed the
    switch, the next publish goes to the new master at once and succeeds (it
    would wait out the 30 s and answer ``unavailable`` at its deadline), and the
    switch is counted in ``main``'s shard state (/metrics)."""
    monkeypatch.setattr(redis_queues, "BACKOFF_BASE", 3600.0)
    monkeypatch.setattr(redis_queues, "random", types.SimpleNamespace(uniform=lambda a, b: b))
    broker = sentinel_broker(sentinels)
    broker.bind(RecordingSink())
    await broker.start()
    try:
        first = await broker.publish("r", b"0", "w")
        await replicated(sentinels, broker, first.offset)
        assert [s.master_switches for s in broker.shards()] == [0]
        assert broker._batcher is not None
        broker._batcher.backoff_cap = 30.0  # (stop() waits out a backoff under way)
        sentinels.master.stop()
        assert await publish(broker, 1) is None  # refused: main backs off
        main = broker._batcher._shards["main"]
        loop = asyncio.get_running_loop()
        assert main.retry_at - loop.time() > 20  # the precondition: a long wait
        await wait_for(lambda: broker.master_switches == 1 and not broker._repointing, 30)
        assert broker.master == ("127.0.0.1", sentinels.replica.port)
        second = await publish(broker, 2)
        assert second is not None
        assert (second.position.epoch, second.offset) == (first.position.epoch, first.offset + 1)
        assert [(s.node, s.master_switches) for s in broker.shards()] == [("main", 1)]
    finally:
        await broker.stop()
