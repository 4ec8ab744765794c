"""BatchedWriter on SQLite and PostgreSQL: group commit, durable futures, bounds, shutdown."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import orjson
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine

from roomcast.db.engine import create_engine
from roomcast.db.store import DatabaseUnavailable, MessageStore
from roomcast.db.writer import BatchedWriter, WriterClosed, WriterOverloaded
from roomcast.protocol.events import Event

MakeWriter = Callable[..., Awaitable[BatchedWriter]]


def event(offset: int, room: str = "r", epoch: str = "e1") -> Event:
    return Event(room, epoch, offset, orjson.dumps({"n": offset}), "u", 1000.0 + offset)


def count_commits(engine: AsyncEngine) -> list[int]:
    """A one-item list counting COMMITs on ``engine``."""
    commits = [0]

    def on_commit(_conn: object) -> None:
        commits[0] += 1

    sa_event.listen(engine.sync_engine, "commit", on_commit)
    return commits


@pytest.fixture
async def make_writer(store: MessageStore) -> AsyncIterator[MakeWriter]:
    """Started writers on ``store`` (or another store); all stopped at teardown."""
    writers: list[BatchedWriter] = []

    async def make(
        on: MessageStore | None = None,
        *,
        max_pending: int = 10_000,
        max_batch: int = 100,
        max_delay: float = 0.0,
        **options: float,
    ) -> BatchedWriter:
        writer = BatchedWriter(
            on or store,
            max_pending=max_pending,
            max_batch=max_batch,
            max_delay=max_delay,
            **options,
        )
        await writer.start()
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        await writer.stop(timeout=10)


class GatedStore(MessageStore):
    """A real store whose inserts wait for ``gate``; records each batch's size."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.gate = asyncio.Event()
        self.sizes: list[int] = []

    async def insert_many(self, events: Sequence[Event]) -> int:
        self.sizes.append(len(events))
        await self.gate.wait()
        return await super().insert_many(events)


async def test_many_submits_are_written_in_few_transactions(
    store: MessageStore, engine: AsyncEngine, make_writer: MakeWriter
) -> None:
    commits = count_commits(engine)
    writer = await make_writer(max_batch=100)
    futures = [writer.submit(event(i)) for i in range(1, 501)]
    await asyncio.wait_for(asyncio.gather(*futures), 30)

    assert writer.batches == 5  # 500 queued at once, 100 per batch
    assert commits[0] == 5  # one transaction each
    assert writer.committed == 500
    assert await store.count("r") == 500


async def test_concurrent_publishers_share_commits(
    store: MessageStore, engine: AsyncEngine, make_writer: MakeWriter
) -> None:
    commits = count_commits(engine)
    writer = await make_writer(max_batch=1000)

    async def publisher(first: int) -> None:
        for offset in range(first, first + 20):
            await writer.submit(event(offset))  # a durable publisher: one at a time

    await asyncio.wait_for(asyncio.gather(*(publisher(p * 20 + 1) for p in range(20))), 30)
    # 400 durable acks; while one commit runs the next batch fills up.
    assert writer.batches == commits[0]
    assert writer.batches <= 40
    assert await store.count("r") == 400


async def test_max_delay_gathers_a_batch(store: MessageStore, make_writer: MakeWriter) -> None:
    writer = await make_writer(max_batch=100, max_delay=0.3)
    first = writer.submit(event(1))
    await asyncio.sleep(0.05)
    second = writer.submit(event(2))
    await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert writer.batches == 1


async def test_a_full_batch_does_not_wait_for_max_delay(make_writer: MakeWriter) -> None:
    writer = await make_writer(max_batch=10, max_delay=30)
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(writer.submit(event(i)) for i in range(1, 11))), 10)
    assert time.monotonic() - started < 5
    assert writer.batches == 1


async def test_a_resolved_future_means_the_event_is_committed(
    migrated_url: str, make_writer: MakeWriter
) -> None:
    writer = await make_writer()
    await asyncio.wait_for(writer.submit(event(1, room="durable")), 10)

    # Read through a separate engine: visible to anyone, not just this session.
    other = create_engine(migrated_url)
    try:
        stored = await MessageStore(other).after("durable", "e1", 0, 10)
    finally:
        await other.dispose()
    assert [(e.offset, e.data) for e in stored] == [(1, b'{"n":1}')]


async def test_a_future_does_not_resolve_before_its_commit(
    engine: AsyncEngine, make_writer: MakeWriter
) -> None:
    store = GatedStore(engine)
    writer = await make_writer(store)
    future = writer.submit(event(1))
    await asyncio.sleep(0.1)
    assert not future.done()
    assert await store.count("r") == 0
    store.gate.set()
    await asyncio.wait_for(future, 10)
    assert await store.count("r") == 1


async def test_events_queued_during_a_commit_form_the_next_batch(
    engine: AsyncEngine, make_writer: MakeWriter
) -> None:
    store = GatedStore(engine)
    writer = await make_writer(store, max_batch=50)
    first = writer.submit(event(1))
    await asyncio.sleep(0.05)  # the writer has taken [1] and waits on the gate
    rest = [writer.submit(event(i)) for i in range(2, 121)]
    assert writer.pending == 119
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 20)
    assert store.sizes == [1, 50, 50, 19]
    assert await store.count("r") == 120


class PoisonStore(MessageStore):
    """A real store that cannot write the event at offset 13 (as a bug would)."""

    async def insert_many(self, events: Sequence[Event]) -> int:
        if any(e.offset == 13 for e in events):
            raise ValueError("cannot store offset 13")
        return await super().insert_many(events)


async def test_one_bad_event_fails_alone_and_the_rest_of_its_batch_is_written(
    engine: AsyncEngine, make_writer: MakeWriter
) -> None:
    store = PoisonStore(engine)
    writer = await make_writer(store, max_batch=100)
    futures = [writer.submit(event(i)) for i in range(1, 31)]
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 20)
    assert [i + 1 for i, r in enumerate(results) if r is not None] == [13]
    assert isinstance(results[12], ValueError)
    assert writer.healthy  # a bug is not an outage
    assert await store.count("r") == 29
    await asyncio.wait_for(writer.submit(event(31)), 10)


async def test_a_full_queue_refuses_at_once(engine: AsyncEngine, make_writer: MakeWriter) -> None:
    store = GatedStore(engine)
    writer = await make_writer(store, max_pending=3, max_batch=1)
    taken = writer.submit(event(1))
    await asyncio.sleep(0.05)  # taken into a batch: no longer pending
    queued = [writer.submit(event(i)) for i in (2, 3, 4)]
    with pytest.raises(WriterOverloaded):
        writer.submit(event(5))
    assert isinstance(WriterOverloaded("x"), DatabaseUnavailable)
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(taken, *queued), 10)
    await asyncio.wait_for(writer.submit(event(5)), 10)  # room again
    assert await store.count("r") == 5


async def test_submit_never_waits(engine: AsyncEngine, make_writer: MakeWriter) -> None:
    store = GatedStore(engine)  # the database "hangs"
    writer = await make_writer(store, max_pending=20_000)
    started = time.perf_counter()
    futures = [writer.submit(event(i)) for i in range(1, 20_001)]
    assert time.perf_counter() - started < 2
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(*futures), 50)


async def test_the_loop_stays_responsive_while_large_batches_are_written(
    make_writer: MakeWriter,
) -> None:
    writer = await make_writer(max_batch=1000)
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    # As DESIGN.md advises for the server: freeze what exists, so that a full
    # collection of the test process's heap is not what gets measured.
    gc.collect()
    gc.freeze()
    try:
        futures = [writer.submit(event(i)) for i in range(1, 5001)]
        tick = asyncio.create_task(ticker())  # measures the writer's work, not the submits
        await asyncio.wait_for(asyncio.gather(*futures), 50)
        done.set()
        await tick
    finally:
        gc.unfreeze()
    assert writer.batches == 5
    assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.3f}s"


async def test_stop_writes_everything_queued_then_refuses(
    store: MessageStore, make_writer: MakeWriter
) -> None:
    writer = await make_writer(max_batch=30)
    futures = [writer.submit(event(i)) for i in range(1, 101)]
    await asyncio.wait_for(writer.stop(), 20)
    assert all(f.done() and f.exception() is None for f in futures)
    assert await store.count("r") == 100
    assert not writer.running
    with pytest.raises(WriterClosed):
        writer.submit(event(101))
    await writer.stop()  # twice is fine


async def test_stop_with_a_timeout_fails_what_it_could_not_write(
    engine: AsyncEngine, make_writer: MakeWriter
) -> None:
    store = GatedStore(engine)  # never opens
    writer = await make_writer(store, max_batch=2)
    futures = [writer.submit(event(i)) for i in range(1, 6)]
    started = time.monotonic()
    await writer.stop(timeout=0.3)
    assert time.monotonic() - started < 5
    for future in futures:
        assert isinstance(future.exception(), WriterClosed)


async def test_submit_before_start_is_refused(store: MessageStore) -> None:
    writer = BatchedWriter(store, max_pending=10, max_batch=10, max_delay=0)
    with pytest.raises(WriterClosed):
        writer.submit(event(1))


async def test_resubmitting_an_event_is_harmless(
    store: MessageStore, make_writer: MakeWriter
) -> None:
    writer = await make_writer()
    await asyncio.wait_for(asyncio.gather(*(writer.submit(event(i)) for i in (1, 2, 3))), 10)
    await asyncio.wait_for(asyncio.gather(*(writer.submit(event(i)) for i in (2, 3, 4))), 10)
    assert [e.offset for e in await store.before("r", None, 10)] == [1, 2, 3, 4]


async def test_a_cancelled_future_does_not_stop_its_batch(
    store: MessageStore, make_writer: MakeWriter
) -> None:
    writer = await make_writer()
    cancelled = writer.submit(event(1))
    kept = writer.submit(event(2))
    cancelled.cancel()
    await asyncio.wait_for(kept, 10)
    assert await store.count("r") == 2  # cancelling the wait does not unpublish


async def test_persisted_messages_survive_a_restart(migrated_url: str) -> None:
    engine = create_engine(migrated_url)
    store = MessageStore(engine)
    await store.create_room("kept", persist=True, history_size=10)
    writer = BatchedWriter(store, max_pending=100, max_batch=10, max_delay=0)
    await writer.start()
    futures = [writer.submit(event(i, room="kept", epoch="ep")) for i in range(1, 26)]
    await asyncio.wait_for(asyncio.gather(*futures), 20)
    await writer.stop()
    await engine.dispose()

    engine = create_engine(migrated_url)
    try:
        store = MessageStore(engine)
        room = await store.get_room("kept")
        assert room is not None
        assert (room.persist, room.history_size) == (True, 10)
        assert await store.latest_position("kept") == ("ep", 25)
        assert [e.offset for e in await store.before("kept", None, 5)] == [21, 22, 23, 24, 25]
        replay = await store.after("kept", "ep", 20, 100)
        assert [(e.offset, orjson.loads(e.data)) for e in replay] == [
            (i, {"n": i}) for i in range(21, 26)
        ]
    finally:
        await engine.dispose()


async def test_the_writer_task_comes_back_after_a_failure_and_writes_what_was_queued(
    store: MessageStore, make_writer: MakeWriter, caplog: pytest.LogCaptureFixture
) -> None:
    writer = await make_writer()
    real = writer._linger
    calls = 0

    async def linger_failing_once() -> None:  # breaks the task's loop once, a bug
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected")
        await real()

    writer._linger = linger_failing_once  # type: ignore[method-assign]
    first = writer.submit(event(1))
    await asyncio.wait_for(first, 10)  # written by the restarted task
    await asyncio.wait_for(writer.submit(event(2)), 10)
    assert await store.count("r") == 2
    assert writer.running
    assert writer.healthy
    (failure,) = [r for r in caplog.records if r.name == "roomcast.supervise"]
    assert failure.exc_info is not None
    assert "roomcast-db-writer" in failure.getMessage()


async def test_a_writer_failing_while_it_stops_is_not_restarted(make_writer: MakeWriter) -> None:
    writer = await make_writer()

    async def linger_failing() -> None:
        raise RuntimeError("injected")

    writer._linger = linger_failing  # type: ignore[method-assign]
    queued = writer.submit(event(1))
    writer._accepting = False  # stop() has begun: the failure ends the task
    with pytest.raises(WriterClosed):
        await asyncio.wait_for(queued, 10)
    assert not writer.running
