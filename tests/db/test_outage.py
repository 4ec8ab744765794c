"""Database outages on SQLite and PostgreSQL: fail fast with DatabaseUnavailable, never hang,
recover by themselves, lose nothing that was acknowledged.

Down means: for PostgreSQL, the server crashed (``pg_ctl -m immediate``); for
SQLite, the file's folder is gone (renamed away, pool dropped). Locked means
another session holds a lock the write needs, for longer than the engine waits.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from roomcast.db.archive import SqlArchive
from roomcast.db.engine import create_engine
from roomcast.db.migrate import upgrade_async
from roomcast.db.store import DatabaseUnavailable, MessageStore
from roomcast.db.writer import BatchedWriter
from roomcast.hub.archive import RoomOptions
from roomcast.hub.broker import Unavailable
from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.publishing import PublishedNotPersisted
from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.events import Event

from ..postgres_server import PostgresServer


def event(offset: int) -> Event:
    return Event("r", "e1", offset, orjson.dumps({"n": offset}), "u", 1000.0 + offset)


async def eventually(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Outage:
    """A database that a test can take down and bring back."""

    def __init__(self, url: str, down: Callable[[], None], up: Callable[[], None]) -> None:
        self.url = url
        self.down = down
        self.up = up


@pytest.fixture
def outage(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Outage:
    if backend == "sqlite":
        folder = tmp_path / "data"
        away = tmp_path / "away"
        folder.mkdir()
        return Outage(
            f"sqlite+aiosqlite:///{folder / 'roomcast.db'}",
            down=lambda: folder.rename(away),
            up=lambda: away.rename(folder),
        )
    server: PostgresServer = request.getfixturevalue("own_postgres")
    return Outage(
        server.url(server.create_database()),
        down=lambda: server.stop("immediate"),
        up=server.start,
    )


@asynccontextmanager
async def running_writer(
    url: str, **options: float
) -> AsyncIterator[tuple[AsyncEngine, MessageStore, BatchedWriter]]:
    engine = create_engine(url, **options)  # type: ignore[arg-type]
    store = MessageStore(engine)
    writer = BatchedWriter(
        store, max_pending=1000, max_batch=10, max_delay=0, retry_initial=0.05, retry_max=0.3
    )
    await writer.start()
    try:
        yield engine, store, writer
    finally:
        await asyncio.wait_for(writer.stop(timeout=5), 10)
        await engine.dispose()


async def test_a_database_outage_fails_writes_fast_and_recovers(
    outage: Outage, backend: str
) -> None:
    await upgrade_async(outage.url)
    async with running_writer(outage.url) as (engine, store, writer):
        await asyncio.wait_for(writer.submit(event(1)), 10)

        outage.down()
        if backend == "sqlite":
            await engine.dispose()  # open SQLite handles outlive a rename; a restart would not

        # Everything queued when the database goes away fails: the batch being
        # written and all behind it. Nothing waits for the database to return.
        futures = [writer.submit(event(i)) for i in range(2, 52)]
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 20)
        assert all(isinstance(r, DatabaseUnavailable) for r in results), results
        assert isinstance(results[0], Unavailable)  # what the hub and routers answer
        assert writer.healthy is False
        assert writer.failed == 50

        # While it is down, a publish is refused at once and readiness says so.
        with pytest.raises(DatabaseUnavailable):
            writer.submit(event(60))
        assert await asyncio.wait_for(store.ping(), 10) is False
        with pytest.raises(DatabaseUnavailable):
            await asyncio.wait_for(store.before("r"), 10)

        outage.up()
        await eventually(lambda: writer.healthy)
        await asyncio.wait_for(writer.submit(event(2)), 10)
        # The acknowledged write survived the outage (for PostgreSQL, a crash).
        assert [e.offset for e in await store.before("r", None, 10)] == [1, 2]


async def test_stopping_a_writer_while_the_database_is_down_does_not_hang(
    outage: Outage, backend: str
) -> None:
    await upgrade_async(outage.url)
    async with running_writer(outage.url) as (engine, _store, writer):
        outage.down()
        if backend == "sqlite":
            await engine.dispose()
        with pytest.raises(DatabaseUnavailable):
            await asyncio.wait_for(writer.submit(event(1)), 20)
        assert not writer.healthy  # now retrying with backoff
        started = time.monotonic()
        await asyncio.wait_for(writer.stop(), 10)
        assert time.monotonic() - started < 5
        assert not writer.running
    outage.up()


@contextmanager
def sqlite_lock(url: str) -> Iterator[None]:
    """Another connection holds SQLite's write lock."""
    conn = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@asynccontextmanager
async def postgres_lock(url: str) -> AsyncIterator[None]:
    """Another session holds an exclusive lock on the messages table."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE"))
            yield
            await conn.rollback()
    finally:
        await engine.dispose()


async def test_a_write_that_waits_too_long_for_a_lock_fails_and_later_ones_succeed(
    migrated_url: str, backend: str
) -> None:
    # The engine waits 0.5 s for a lock (SQLite busy timeout, PostgreSQL command timeout).
    waits = {"busy_timeout": 0.5, "command_timeout": 0.5}
    async with running_writer(migrated_url, **waits) as (_engine, store, writer):
        if backend == "sqlite":
            with sqlite_lock(migrated_url), pytest.raises(DatabaseUnavailable):
                await asyncio.wait_for(writer.submit(event(1)), 10)
        else:
            async with postgres_lock(migrated_url):
                with pytest.raises(DatabaseUnavailable):
                    await asyncio.wait_for(writer.submit(event(1)), 10)
        await eventually(lambda: writer.healthy)  # reads still worked: the ping succeeds
        await asyncio.wait_for(writer.submit(event(1)), 10)
        assert await store.count("r") == 1


async def test_a_durable_publish_delivered_but_not_committed_is_not_persisted_not_unavailable(
    outage: Outage, backend: str
) -> None:
    """The database fails the commit after the event went out: the publisher hears
    ``not_persisted`` (PublishedNotPersisted, with the event's position), never the
    ``unavailable`` of a publish refused before anyone received it."""
    await upgrade_async(outage.url)
    async with running_writer(outage.url) as (engine, store, writer):
        archive = SqlArchive(store, writer)
        archive.remember("log", RoomOptions(persist=True))
        hub = Hub(MemoryBroker(), archive=archive, presence=False)
        watcher = Subscriber("w", "w", max_messages=100, max_bytes=1 << 20)
        await hub.subscribe(watcher, "log", None, lambda recovery: None)
        await asyncio.wait_for(hub.publish("log", b"0", "p", durable=True), 10)

        outage.down()  # the writer does not know yet: it is still healthy
        if backend == "sqlite":
            await engine.dispose()
        with pytest.raises(PublishedNotPersisted) as failed:
            await asyncio.wait_for(hub.publish("log", b"1", "p", durable=True), 20)
        assert not isinstance(failed.value, Unavailable)
        assert failed.value.event.offset == 2
        assert [orjson.loads(f)["offset"] for f in iter(watcher.pop, None)] == [1, 2]

        # From now on the writer knows: refused before anyone receives it.
        for durable in (True, False):
            with pytest.raises(Unavailable):
                await hub.publish("log", b"2", "p", durable=durable)
        assert watcher.pop() is None
        outage.up()
