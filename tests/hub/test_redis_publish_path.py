"""The publish path (hub/redis_batch.py) against real Redis: every publish is
answered, within its deadline; a batch that breaks mid-way keeps the replies it
read; on a cluster a dead master costs only its own rooms, and a slot that moves
keeps its room's publishes in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from roomcast.hub.broker import BrokerUnavailable
from roomcast.hub.redis import RedisBroker
from roomcast.hub.redis_batch import MAIN, PublishBatcher
from roomcast.protocol.events import Event
from roomcast.testing import RedisCluster

from ..cluster.topology import PREFIX, migrate_slot, rooms_per_shard, start_cluster
from ..conftest import require
from ..redis_server import RedisServer, redis_available
from .broker_contract import RecordingSink

SLACK = 0.5
"""Seconds past ``redis_timeout`` a deadline may take to fire on a busy machine."""


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def started(url: str, **options: Any) -> AsyncIterator[RedisBroker]:
    broker = RedisBroker(url, **options)
    broker.bind(RecordingSink())
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


def batcher_of(broker: RedisBroker) -> PublishBatcher:
    assert broker._batcher is not None
    return broker._batcher


# -- one Redis -------------------------------------------------------------------------


async def test_an_exception_mid_batch_keeps_the_replies_read_and_fails_only_the_rest(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """What redis-py's cluster client did under a concurrent close: an
    AttributeError while reading the third reply of a batch. The first two keep
    their events, the other three are answered ``unavailable``, the error is
    logged once (not again for the next one, within LOG_EVERY), nothing reaches
    the supervisor, and the batcher goes on publishing."""
    async with started(redis_server.url, prefix=prefix()) as broker:
        batcher = batcher_of(broker)
        real = batcher._read
        reads = 0
        breaking = True

        async def read(conn: Any) -> Any:
            nonlocal reads
            reads += 1
            if breaking and reads == 3:
                raise AttributeError("'NoneType' object has no attribute 'writelines'")
            return await real(conn)

        batcher._read = read  # type: ignore[method-assign]
        for round_ in range(2):
            reads = 0
            futures = [broker.enqueue_publish("r", b"%d" % n, "p") for n in range(5)]
            results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 10)
            kept = [r for r in results[:2] if isinstance(r, Event)]
            assert [e.offset for e in kept] == [1 + 5 * round_, 2 + 5 * round_]
            assert all(isinstance(r, BrokerUnavailable) for r in results[2:]), results
        breaking = False
        event = await asyncio.wait_for(broker.publish("r", b"after", "p"), 10)
        # the three unanswered ones had been written, so Redis ran them: offsets 3-5
        assert event.offset == 11
        errors = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
        assert len(errors) == 1
        assert errors[0].exc_info is not None
        assert not [r for r in caplog.records if r.name == "roomcast.supervise"]


async def test_a_publish_past_its_deadline_is_answered_and_its_late_reply_ignored(
    own_redis: RedisServer,
) -> None:
    """Redis paused for writes longer than the deadline: the publish is answered
    ``unavailable`` at its deadline, the script runs when the pause ends, its
    late reply changes nothing, and the next publish goes on from there."""
    broker = RedisBroker(own_redis.url, prefix=prefix())
    broker.bind(RecordingSink())
    await broker.start()
    script = broker._scripts["PUBLISH"]

    def pool_for(node: str, on_connect: Any) -> aioredis.ConnectionPool:
        assert node == MAIN
        return aioredis.ConnectionPool.from_url(
            own_redis.url, socket_timeout=10, redis_connect_func=on_connect
        )

    batcher = PublishBatcher(script, pool_for, timeout=0.3)
    try:
        keys = broker._keys("r", "meta", "log")

        def args() -> list[Any]:
            return ["epoch", b"1 1 pdata", 100, 60, broker.channel("r"), "PUBLISH"]

        first = await asyncio.wait_for(batcher.enqueue(keys, args(), tuple), 5)
        assert first[1] == 1
        await asyncio.to_thread(own_redis.cli, "CLIENT", "PAUSE", "1500", "WRITE")
        late = batcher.enqueue(keys, args(), tuple)
        with pytest.raises(BrokerUnavailable, match=r"did not answer within 0\.3 s"):
            await asyncio.wait_for(late, 5)
        async with asyncio.timeout(10):  # the pause ends; the script runs after all
            while await asyncio.to_thread(own_redis.cli, "HGET", keys[0], "o") != "2":
                await asyncio.sleep(0.05)
        after = await asyncio.wait_for(batcher.enqueue(keys, args(), tuple), 5)
        assert after[1] == 3
        assert isinstance(late.exception(), BrokerUnavailable)  # the late reply changed nothing
    finally:
        await batcher.stop()
        await broker.stop()


# -- a cluster ---------------------------------------------------------------------------


ClusterFactory = Callable[..., RedisCluster]


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Three masters of this test's own, which it may kill or reshard."""
    require(redis_available(), "redis-server (apt-get install redis-server)")
    started_: list[RedisCluster] = []

    def factory(*, full_coverage: bool) -> RedisCluster:
        folder = tmp_path / f"cluster{len(started_)}"
        cluster = start_cluster(folder, node_timeout_ms=2000, full_coverage=full_coverage)
        started_.append(cluster)
        return cluster

    yield factory
    for cluster in started_:
        cluster.stop()


async def publish_for(
    broker: RedisBroker, room: str, seconds: float, results: list[tuple[float, Any]]
) -> None:
    """Publish to ``room`` one after another for ``seconds``; record for each
    how long its answer took and what it was (an Event, an exception, or None:
    no answer within 10 s)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    n = 0
    while loop.time() < end:
        sent = loop.time()
        answer: Any
        try:
            answer = await asyncio.wait_for(broker.publish(room, b"%d" % n, "p"), 10)
        except TimeoutError:
            answer = None
        except Exception as exc:
            answer = exc
        results.append((loop.time() - sent, answer))
        n += 1
        await asyncio.sleep(0.01)


@pytest.mark.timeout(120)
async def test_a_dead_master_costs_only_its_rooms_and_every_publish_is_answered(
    private_cluster: ClusterFactory,
) -> None:
    """One master killed (``cluster-require-full-coverage no``): publishes to rooms
    of the two live masters all succeed, those to the dead one's rooms are all
    answered ``unavailable`` within ``redis_timeout`` (plus slack), none goes
    unanswered; once the master is back its rooms publish again."""
    cluster = private_cluster(full_coverage=False)
    rooms = await rooms_per_shard(cluster, 2)
    dead = cluster.nodes[1]
    timeout = 1.0
    async with started(cluster.url, prefix=PREFIX, cluster=True, timeout=timeout) as broker:
        for room in [r for rs in rooms.values() for r in rs]:  # everything flows first
            await asyncio.wait_for(broker.publish(room, b"warm", "p"), 10)
        dead.stop()
        results: dict[str, list[tuple[float, Any]]] = {}
        await asyncio.gather(
            *(
                publish_for(broker, room, 4.0, results.setdefault(room, []))
                for rs in rooms.values()
                for room in rs
            )
        )
        for port, rs in rooms.items():
            for room in rs:
                answers = results[room]
                assert answers, room
                assert not [a for _, a in answers if a is None], f"{room}: unanswered"
                if port == dead.port:
                    assert all(isinstance(a, BrokerUnavailable) for _, a in answers), room
                    slowest = max(took for took, _ in answers)
                    assert slowest <= timeout + SLACK, f"{room}: answered after {slowest:.2f}s"
                else:
                    failed = [a for _, a in answers if not isinstance(a, Event)]
                    assert not failed, f"{room} (live shard): {failed[:3]}"
        assert batcher_of(broker).nodes()[f"127.0.0.1:{dead.port}"] is False

        await asyncio.to_thread(dead.start)
        for room in rooms[dead.port]:
            async with asyncio.timeout(30):
                while True:
                    with contextlib.suppress(BrokerUnavailable):
                        await asyncio.wait_for(broker.publish(room, b"back", "p"), 10)
                        break
                    await asyncio.sleep(0.2)
        assert batcher_of(broker).nodes()[f"127.0.0.1:{dead.port}"] is True


@pytest.mark.timeout(120)
async def test_publishes_follow_a_migrated_slot_in_order(
    private_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A live room's slot moved to another master while several publishes to it
    are in flight at a time: each is answered, the acknowledged ones have
    increasing offsets in the order they were made (none lost to the move, none
    run twice), and publishing goes on on the new owner."""
    cluster = private_cluster(full_coverage=True)
    room = (await rooms_per_shard(cluster, 1))[cluster.nodes[0].port][0]
    async with started(cluster.url, prefix=PREFIX, cluster=True, timeout=2.0) as broker:
        outcomes: list[Any] = []
        stop = asyncio.Event()

        async def publisher() -> None:
            n = 0
            while not stop.is_set():
                batch = [broker.enqueue_publish(room, b"%d" % (n + k), "p") for k in range(4)]
                n += 4
                outcomes.extend(
                    await asyncio.wait_for(asyncio.gather(*batch, return_exceptions=True), 10)
                )

        task = asyncio.create_task(publisher())
        await asyncio.sleep(0.5)
        async with aioredis.Redis(port=cluster.nodes[0].port) as admin:
            slot = int(await admin.execute_command("CLUSTER", "KEYSLOT", f"{PREFIX}:{{{room}}}"))
        await migrate_slot(cluster, slot, 0, 1)
        migrated = len(outcomes)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(task, 15)

        events = [o for o in outcomes if isinstance(o, Event)]
        others = [o for o in outcomes if not isinstance(o, Event)]
        assert not others, others[:3]  # MOVED and ASK are followed, not answered
        offsets = [e.offset for e in events]
        assert offsets == sorted(set(offsets)), "acknowledged out of order or twice"
        assert len({e.epoch for e in events}) == 1
        assert [o for o in outcomes[migrated:] if isinstance(o, Event)], "nothing after the move"
        owner = f"127.0.0.1:{cluster.nodes[1].port}"
        assert owner in batcher_of(broker).nodes()
        async with aioredis.Redis(port=cluster.nodes[1].port) as target:
            last = int(await target.hget(f"{PREFIX}:{{{room}}}:meta", "o") or 0)
        assert last == offsets[-1]  # every acknowledged offset is in the new owner's count
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
