"""Background tasks are supervised: one that fails is logged with its traceback and
comes back (hub/supervise.py). Each task is killed once for real, by breaking
something it uses for one call, and must then do its job again."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from roomcast.hub.broker import BrokerUnavailable
from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.redis import RedisBroker
from roomcast.hub.subscriber import Subscriber
from roomcast.hub.supervise import stop_tasks, supervised
from roomcast.protocol.codes import CloseCode

from ..redis_server import RedisServer
from .broker_contract import RecordingSink, sink_has

T = TypeVar("T")


def failing_once(real: Callable[..., T]) -> Callable[..., T]:
    """``real``, except that its first call raises RuntimeError("injected")."""
    calls = 0

    def call(*args: Any, **kwargs: Any) -> T:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected")
        return real(*args, **kwargs)

    return call


def supervisor_errors(caplog: pytest.LogCaptureFixture, task: str) -> list[logging.LogRecord]:
    """What the supervisor logged about ``task``: each with its traceback."""
    return [
        r for r in caplog.records if r.name == "roomcast.supervise" and r.args and r.args[0] == task
    ]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# -- the supervisor ---------------------------------------------------------------


async def test_a_task_that_raises_is_logged_once_per_failure_and_runs_again_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[float] = []

    async def work() -> None:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) < 4:
            raise RuntimeError(f"failure {len(runs)}")

    await asyncio.wait_for(supervised("t", work, delay=0.02, cap=0.05), 5)
    assert len(runs) == 4
    records = supervisor_errors(caplog, "t")
    assert [r.levelno for r in records] == [logging.ERROR] * 3
    assert [str(r.exc_info[1]) for r in records if r.exc_info] == [
        "failure 1",
        "failure 2",
        "failure 3",
    ]
    assert [r.args[1] for r in records if r.args] == [0.02, 0.04, 0.05]  # doubling, capped
    pauses = [b - a for a, b in itertools.pairwise(runs)]
    assert pauses[0] >= 0.02
    assert pauses[2] >= 0.05


async def test_a_task_that_returns_has_done_its_job_and_is_not_run_again() -> None:
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1

    await asyncio.wait_for(supervised("t", work), 1)
    await asyncio.sleep(0.05)
    assert runs == 1


async def test_cancelling_a_supervised_task_stops_it() -> None:
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = supervised("t", work)
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_task_that_fails_while_its_owner_stops_it_is_not_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("while stopping")

    await asyncio.wait_for(supervised("t", work, stopping=lambda: True), 1)
    assert runs == 1
    assert len(supervisor_errors(caplog, "t")) == 1


# -- the hub and the memory broker ------------------------------------------------------


async def test_the_send_watchdog_comes_back_after_a_failure_and_evicts_a_stuck_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(MemoryBroker(), presence=False, send_timeout=0.1)
    await hub.start()
    try:
        hub.check_sends = failing_once(hub.check_sends)  # type: ignore[method-assign]
        sub = Subscriber("c", "u", max_messages=10, max_bytes=1 << 20)
        hub.register(sub)
        sub.sending = True  # its writer is stuck in one send: no pops
        await eventually(lambda: sub.close_code is CloseCode.SLOW_CONSUMER)
        assert len(supervisor_errors(caplog, "roomcast-send-watchdog")) == 1
    finally:
        await hub.stop()


async def test_the_memory_sweeper_comes_back_after_a_failure_and_drops_idle_rooms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker(room_ttl=0.01)  # swept every second
    broker.bind(RecordingSink())
    await broker.start()
    try:
        broker.sweep = failing_once(broker.sweep)  # type: ignore[method-assign]
        await broker.publish("r", b"1", "p")
        await eventually(lambda: "r" not in broker._rooms, timeout=5)
        assert len(supervisor_errors(caplog, "roomcast-memory-sweep")) == 1
    finally:
        await broker.stop()


# -- the Redis broker ------------------------------------------------------------------------


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


class RaisesOnce:
    """A container whose first membership test raises (the pub/sub reader asks one
    per frame), then answers like ``values``."""

    def __init__(self, values: tuple[bytes, ...]) -> None:
        self.values = values
        self.raised = False

    def __contains__(self, item: object) -> bool:
        if not self.raised:
            self.raised = True
            raise RuntimeError("injected")
        return item in self.values


async def two_brokers(
    redis_server: RedisServer, ping_interval: float = 0.5, **options: Any
) -> tuple[RedisBroker, RecordingSink, RedisBroker]:
    """A reader (its sink records what it delivers) and a writer, on one prefix."""
    p = prefix()
    sink = RecordingSink()
    reader = RedisBroker(redis_server.url, prefix=p, ping_interval=ping_interval, **options)
    writer = RedisBroker(redis_server.url, prefix=p)
    reader.bind(sink)
    writer.bind(RecordingSink())
    await reader.start()
    await writer.start()
    return reader, sink, writer


async def test_the_pubsub_reader_comes_back_after_a_failure_and_misses_nothing(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, sink, writer = await two_brokers(redis_server)
    try:
        await reader.subscribe("r")
        await writer.publish("r", b"1", "w")
        await sink_has(sink, 1)
        (link,) = reader._links.values()
        link._message_kinds = RaisesOnce(link._message_kinds)  # type: ignore[assignment]
        await writer.publish("r", b"2", "w")  # the reader fails on this one's frame
        await writer.publish("r", b"3", "w")
        await sink_has(sink, 3)  # back: reconnected, and the gap filled from the stream
        assert [e.offset for e in sink.events] == [1, 2, 3]
        assert len(supervisor_errors(caplog, "roomcast-redis-pubsub")) == 1
        assert link.reconnects == 1
    finally:
        await reader.stop()
        await writer.stop()


async def test_a_resync_that_fails_is_run_again_and_releases_the_held_room(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, sink, writer = await two_brokers(redis_server)
    try:
        await reader.subscribe("r")
        await writer.publish("r", b"1", "w")
        await sink_has(sink, 1)
        (link,) = reader._links.values()
        real = link._on_reconnect

        async def failing_once() -> None:
            link._on_reconnect = real
            raise RuntimeError("injected")

        link._on_reconnect = failing_once
        await asyncio.to_thread(redis_server.cli, "CLIENT", "KILL", "TYPE", "pubsub")
        await eventually(lambda: link.reconnects == 1 and link.connected)
        await writer.publish("r", b"2", "w")
        await sink_has(sink, 2)  # held until the second resync released it
        assert [e.offset for e in sink.events] == [1, 2]
        assert reader._held == {}
        assert len(supervisor_errors(caplog, "roomcast-redis-resync")) == 1
    finally:
        await reader.stop()
        await writer.stop()


async def test_a_subscription_flush_that_fails_drops_the_connection_and_later_ones_work(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, sink, writer = await two_brokers(redis_server, ping_interval=30, timeout=30.0)
    try:
        (link,) = reader._links.values()
        conn = link._conn
        assert conn is not None
        conn.send_command = failing_once(conn.send_command)  # type: ignore[method-assign]
        # Told when the flush fails, not after the 30 s confirm timeout.
        with pytest.raises(BrokerUnavailable):
            async with asyncio.timeout(10):
                await reader.subscribe("r")
        assert len(supervisor_errors(caplog, "roomcast-redis-flush")) == 1
        await eventually(lambda: link.connected and link._conn is not conn)
        await reader.subscribe("r")
        await writer.publish("r", b"1", "w")
        await sink_has(sink, 1)
    finally:
        await reader.stop()
        await writer.stop()


async def test_presence_upkeep_logs_a_bug_loudly_and_comes_back_but_an_outage_quietly(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    broker = RedisBroker(redis_server.url, prefix=prefix(), presence_refresh=0.05)
    broker.bind(RecordingSink())
    await broker.start()
    try:
        runs = 0
        real = broker.upkeep

        async def upkeep() -> None:
            nonlocal runs
            runs += 1
            if runs == 1:
                raise RuntimeError("injected")
            if runs == 2:
                raise BrokerUnavailable("redis: down for a moment")
            await real()

        broker.upkeep = upkeep  # type: ignore[method-assign]
        await eventually(lambda: runs >= 4)
        assert len(supervisor_errors(caplog, "roomcast-redis-upkeep")) == 1
        outage = [r for r in caplog.records if "down for a moment" in r.getMessage()]
        assert [(r.levelno, r.exc_info) for r in outage] == [(logging.WARNING, None)]
    finally:
        await broker.stop()


async def test_the_publish_batcher_answers_a_failed_batch_and_comes_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    broker = RedisBroker(redis_server.url, prefix=prefix())
    broker.bind(RecordingSink())
    await broker.start()
    try:
        batcher = broker._batcher
        assert batcher is not None
        batcher._run = failing_once(batcher._run)  # type: ignore[method-assign]
        with pytest.raises(BrokerUnavailable, match="injected"):
            await asyncio.wait_for(broker.publish("r", b"1", "p"), 5)  # answered, not lost
        assert len(supervisor_errors(caplog, "roomcast-redis-publish-main")) == 1
        events = await asyncio.wait_for(
            asyncio.gather(*(broker.enqueue_publish("r", b"2", "p") for _ in range(3))), 5
        )
        assert [e.offset for e in events] == [1, 2, 3]
    finally:
        await broker.stop()


async def test_stop_tasks_cancels_again_a_task_that_swallowed_its_cancellation() -> None:
    """Python 3.11's wait_for/timeout can swallow a cancellation that meets their
    timeout; the task goes on. stop_tasks cancels it again until it ends."""
    swallowed = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.append(True)  # as if a timeout had taken it for its own
        await asyncio.sleep(30)

    async def failing() -> None:
        raise RuntimeError("already failed")

    task = asyncio.create_task(stubborn())
    failed = asyncio.create_task(failing())
    await asyncio.sleep(0)
    await stop_tasks(task, failed, None, every=0.05)
    assert swallowed == [True]
    assert task.cancelled()
    assert failed.done()
