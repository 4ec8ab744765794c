"""A cluster failover, followed by the pub/sub side as soon as this process reads
the slot map for any reason (issue 16): not only at the down link's own periodic
check (redis_slots.SLOTS_CHECK_EVERY), but when the publish batcher reads the map
after a failed batch, or the command client before its next command. So a
promoted replica gets this process's subscriptions as soon as its publishes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from roomcast.hub import redis_slots
from roomcast.hub.broker import BrokerUnavailable
from roomcast.hub.redis import RedisBroker

from ..cluster.topology import admin, serves_slots, start_cluster
from ..conftest import require
from ..redis_server import RedisCluster, redis_available
from .broker_contract import RecordingSink, sink_has

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def failover_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """Three masters with a replica each, of this test's own (it kills a master);
    a 1 s node timeout, so a replica is promoted within a few seconds."""
    require(redis_available(), "redis-server (apt-get install redis-server)")
    cluster = start_cluster(tmp_path, node_timeout_ms=1000, full_coverage=False, replicas=1)
    yield cluster
    cluster.stop()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def until_ok(call: Callable[[], object], timeout: float = 20.0) -> object:
    """``await call()`` until it does not raise BrokerUnavailable."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await call()  # type: ignore[misc]
            except BrokerUnavailable:
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def started(broker: RedisBroker, sink: RecordingSink) -> AsyncIterator[RedisBroker]:
    broker.bind(sink)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.mark.parametrize("reads_the_map", ["the publish batcher", "the command client"])
async def test_rooms_on_a_dead_master_follow_its_promoted_replica_when_the_slot_map_is_read(
    failover_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch, reads_the_map: str
) -> None:
    """The room's master is killed; the link's first failed connect checks the
    slot map (still the dead master's) and, with the periodic check switched off
    here, never again. Its replica is promoted. The first publish (or read) of
    this process fails on the dead master and has the map read again: from that
    read the room follows its slot to the promoted replica, is resynced from its
    stream, and every event arrives once, in order, with no reset."""
    monkeypatch.setattr(redis_slots, "SLOTS_CHECK_EVERY", 3600.0)
    cluster = failover_cluster
    p = f"t{uuid.uuid4().hex[:8]}"
    room = next(f"r{n}" for n in itertools.count() if cluster.node_of(f"{p}:{{r{n}}}:ch") == 1)
    dead, replica = cluster.nodes[1], cluster.replica_nodes[1]
    old_name, new_name = f"127.0.0.1:{dead.port}", f"127.0.0.1:{replica.port}"
    sink = RecordingSink()
    options = {"prefix": p, "cluster": True, "ping_interval": 0.5, "timeout": 1.0}
    reader_ = RedisBroker(cluster.url, presence_refresh=3600, backoff_cap=0.2, **options)
    writer_ = RedisBroker(cluster.url, **options)
    async with started(reader_, sink) as reader, started(writer_, RecordingSink()) as writer:
        channel = reader.channel(room)
        await reader.subscribe(room)
        await writer.publish(room, b"0", "w")
        await sink_has(sink, 1)
        async with admin(dead) as master:  # the replica has it: no loss window
            assert await master.execute_command("WAIT", 1, 5000) == 1

        dead.stop()
        old = reader._links[old_name]
        await until(lambda: room in reader._held and old_name in reader._slots_checked)
        await until(lambda: not reader._followers)  # its one check is done
        async with asyncio.timeout(30):
            while not await serves_slots(replica):
                await asyncio.sleep(0.1)
        assert reader._owner(channel).name == old_name  # nobody read the map since
        assert room in reader._held
        assert channel in old.wanted

        if reads_the_map == "the publish batcher":
            await until_ok(lambda: reader.publish(room, b"1", "r"))
        else:
            await until_ok(lambda: reader.history(room, limit=1, before=None))

        def followed() -> bool:
            new = reader._links.get(new_name)
            return new is not None and channel in new.subscribed and room not in reader._held

        await until(followed)
        assert channel not in old.wanted
        assert not old.connected  # the dead master: the room did not wait for it
        await until_ok(lambda: writer.publish(room, b"2", "w"))
        sent = [b"0", b"1", b"2"] if reads_the_map == "the publish batcher" else [b"0", b"2"]
        await sink_has(sink, len(sent))
        assert [e.data for e in sink.events] == sent
        assert [e.offset for e in sink.events] == list(range(1, len(sent) + 1))
        assert sink.notices == []
