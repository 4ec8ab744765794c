"""Positions that went backwards (a failover to a replica that had not received the
latest publishes, or a restore from an older snapshot) give the room a new epoch, so
every subscriber gets a ``reset`` instead of a silent gap: real redis-servers, the
older copy made by Redis itself (``SAVE`` on the master, or on a replica cut off
from it), and loaded on the master's port as a promoted replica would answer there.
And the first publish after such a restart is answered: the writer's pooled
connection that Redis closed is made again, not written to."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from roomcast.hub.redis import RedisBroker
from roomcast.protocol.events import Position

from ..redis_server import RedisServer
from .broker_contract import RecordingSink, sink_has


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def brokers(own_redis: RedisServer) -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    """A reader subscribed to nothing yet and a writer, on ``own_redis``."""
    p = f"t{uuid.uuid4().hex[:8]}"
    reader = RedisBroker(own_redis.url, prefix=p, ping_interval=0.5, timeout=1.0, backoff_cap=0.2)
    writer = RedisBroker(own_redis.url, prefix=p)
    reader.bind(RecordingSink())
    writer.bind(RecordingSink())
    await reader.start()
    await writer.start()
    yield reader, writer
    await reader.stop()
    await writer.stop()


def meta(server: RedisServer, broker: RedisBroker, field: str) -> str:
    return server.cli("HGET", f"{broker.prefix}:{{r}}:meta", field)


async def restart_with(server: RedisServer, dump: Path) -> None:
    """SIGKILL ``server`` and start it again on its port from ``dump``."""
    server.stop()
    if dump != server.folder / "dump.rdb":
        shutil.copy(dump, server.folder / "dump.rdb")
    await asyncio.to_thread(server.start)


async def test_a_copy_behind_the_delivered_position_gets_a_new_epoch_and_a_reset(
    own_redis: RedisServer, brokers: tuple[RedisBroker, RedisBroker]
) -> None:
    """Delivered up to offset 5, the room comes back at offset 3 (a snapshot taken
    then): the reader's resync gives the room a new epoch, its subscribers a
    ``reset`` there, and later publishes flow in the new epoch. A client resuming
    from the old epoch is told it did not recover."""
    reader, writer = brokers
    sink = reader.sink
    assert isinstance(sink, RecordingSink)
    await reader.subscribe("r")
    for n in range(3):
        await writer.publish("r", b"%d" % n, "w")
    assert await asyncio.to_thread(own_redis.cli, "SAVE") == "OK"
    for n in range(3, 5):
        await writer.publish("r", b"%d" % n, "w")
    await sink_has(sink, 5)
    old = sink.events[-1].epoch

    await restart_with(own_redis, own_redis.folder / "dump.rdb")
    assert meta(own_redis, reader, "o") == "3"  # the copy is behind what was delivered
    await wait_for(lambda: any(n.kind == "reset" for n in sink.notices))

    (reset,) = [n for n in sink.notices if n.kind == "reset"]
    new = meta(own_redis, reader, "e")
    assert new != old
    assert reset.fields == {"epoch": new, "offset": 3}
    await writer.publish("r", b"5", "w")  # on a pooled connection Redis closed
    await sink_has(sink, 6)
    assert sink.events[-1].position == Position(new, 4)
    gone = await writer.recover("r", Position(old, 5))
    assert not gone.recovered
    assert gone.position == Position(new, 4)


async def test_offsets_reused_by_a_promoted_replica_give_a_new_epoch_and_a_reset(
    own_redis: RedisServer, brokers: tuple[RedisBroker, RedisBroker], tmp_path: Path
) -> None:
    """A replica cut off after offset 3 is promoted and takes two publishes of its
    own (offsets 4 and 5 again) while the old master acknowledged and delivered
    its own 4 and 5. When the reader comes back to the promoted copy, its position
    (5) exists there, but holds another event: a new epoch and a ``reset``, and the
    other 4 and 5 never pass for the ones already delivered."""
    reader, writer = brokers
    sink = reader.sink
    assert isinstance(sink, RecordingSink)
    master = ("127.0.0.1", str(own_redis.port))
    replica = RedisServer(tmp_path / "replica", None, "--replicaof", *master)
    await asyncio.to_thread(replica.start)
    try:
        await reader.subscribe("r")
        for n in range(3):
            await writer.publish("r", b"%d" % n, "w")
        await wait_for(lambda: meta(replica, reader, "o") == "3")
        assert await asyncio.to_thread(replica.cli, "REPLICAOF", "NO", "ONE") == "OK"
        promoted = RedisBroker(replica.url, prefix=reader.prefix)
        promoted.bind(RecordingSink())
        await promoted.start()
        try:
            reused = [await promoted.publish("r", b'"other"', "x") for _ in range(2)]
        finally:
            await promoted.stop()
        assert [e.offset for e in reused] == [4, 5]
        assert await asyncio.to_thread(replica.cli, "SAVE") == "OK"
        for n in range(3, 5):
            await writer.publish("r", b"%d" % n, "w")
        await sink_has(sink, 5)
        old = sink.events[-1].epoch
    finally:
        replica.stop()

    await restart_with(own_redis, replica.folder / "dump.rdb")
    assert meta(own_redis, reader, "o") == "5"  # the same position, another event
    await wait_for(lambda: any(n.kind == "reset" for n in sink.notices))

    (reset,) = [n for n in sink.notices if n.kind == "reset"]
    new = meta(own_redis, reader, "e")
    assert new != old
    assert reset.fields == {"epoch": new, "offset": 5}
    assert [e.data for e in sink.events] == [b"0", b"1", b"2", b"3", b"4"]
    await writer.publish("r", b"5", "w")  # on a pooled connection Redis closed
    await sink_has(sink, 6)
    assert sink.events[-1].position == Position(new, 6)


async def test_a_clients_resume_past_the_end_does_not_change_the_epoch(
    own_redis: RedisServer, brokers: tuple[RedisBroker, RedisBroker]
) -> None:
    """A client's ``since`` is not the process's own: past the room's end it is
    answered not recovered, and the room keeps its epoch (a made-up position must
    not reset a room for everyone)."""
    _, writer = brokers
    first = await writer.publish("r", b"0", "w")
    answer = await writer.recover("r", Position(first.epoch, 99))
    assert not answer.recovered
    assert answer.position == first.position
    assert meta(own_redis, writer, "e") == first.epoch


async def test_a_plain_reconnect_passes_the_check_and_resumes_without_a_reset(
    own_redis: RedisServer, brokers: tuple[RedisBroker, RedisBroker]
) -> None:
    """The pub/sub connection killed between publishes: the resync finds the
    delivered event where it was, fills the gap, and sends no reset."""
    reader, writer = brokers
    sink = reader.sink
    assert isinstance(sink, RecordingSink)
    await reader.subscribe("r")
    await writer.publish("r", b"0", "w")
    await sink_has(sink, 1)
    await asyncio.to_thread(own_redis.cli, "CLIENT", "KILL", "TYPE", "pubsub")
    for n in range(1, 4):
        await writer.publish("r", b"%d" % n, "w")
    await sink_has(sink, 4)
    assert [e.offset for e in sink.events] == [1, 2, 3, 4]
    assert not [n for n in sink.notices if n.kind == "reset"]
    assert meta(own_redis, reader, "e") == sink.events[0].epoch


async def test_the_first_publish_after_a_restart_is_answered(
    own_redis: RedisServer, brokers: tuple[RedisBroker, RedisBroker]
) -> None:
    """Redis killed and started again: the publish batcher's pooled connection is
    closed by then; the next publish goes on a new one and is answered ``ok``
    (redis-py 8 skips that check on RESP3 connections unless maintenance
    notifications are off, which roomcast sets)."""
    _, writer = brokers
    await writer.publish("r", b"0", "w")
    await restart_with(own_redis, own_redis.folder / "dump.rdb")
    event = await writer.publish("r", b"1", "w")
    assert event.offset == 1  # restarted empty (nothing saved): a new epoch, offset 1
