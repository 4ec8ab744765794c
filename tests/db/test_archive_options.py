"""SqlArchive's room options: cached, and read once per room however many ask at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

import roomcast.db.archive as archive_module
from roomcast.db.archive import SqlArchive
from roomcast.db.store import DatabaseUnavailable, MessageStore
from roomcast.db.writer import BatchedWriter


class CountingStore:
    """The real store, counting (and slowing) its room reads."""

    def __init__(self, store: MessageStore) -> None:
        self.store = store
        self.reads = 0
        self.answered = asyncio.Event()  # a read has its answer (not yet returned)

    async def get_room(self, name: str) -> Any:
        self.reads += 1
        record = await self.store.get_room(name)
        self.answered.set()
        await asyncio.sleep(0.05)  # a database under load: the answer takes a while
        return record


def archive_on(store: MessageStore, ttl: float = 60.0) -> tuple[SqlArchive, CountingStore]:
    writer = BatchedWriter(store, max_pending=10, max_batch=10, max_delay=0.01)
    archive = SqlArchive(store, writer, options_ttl=ttl)
    counting = CountingStore(store)
    archive.store = counting  # type: ignore[assignment]
    return archive, counting


async def test_many_publishes_at_once_on_an_uncached_room_read_its_options_once(
    store: MessageStore,
) -> None:
    await store.create_room("busy", persist=True, history_size=7)
    archive, counting = archive_on(store)
    results = await asyncio.gather(*(archive.options("busy") for _ in range(50)))
    assert counting.reads == 1
    assert all(r.persist and r.history_size == 7 for r in results)
    await archive.options("busy")
    assert counting.reads == 1  # cached


async def test_forgetting_a_room_mid_read_makes_the_next_caller_read_again(
    store: MessageStore,
) -> None:
    archive, counting = archive_on(store)
    first = asyncio.ensure_future(archive.options("late"))
    await counting.answered.wait()  # its read has its (old) answer, not yet returned
    await store.create_room("late", persist=True)
    archive.forget("late")  # created here: the read in flight is stale
    assert not (await first).persist
    assert (await archive.options("late")).persist
    assert counting.reads == 2


class Down:
    """A store whose database is down."""

    async def get_room(self, name: str) -> Any:
        raise DatabaseUnavailable("down")


async def test_the_cache_holds_the_rooms_of_the_last_ttl_not_every_room_ever_asked_about(
    store: MessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that sees new rooms all day keeps the options of the rooms asked
    about within ``options_ttl``; only options of a room's own (it was created with
    them) are remembered longer, for an outage."""
    now = [1000.0]
    monkeypatch.setattr(archive_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    await store.create_room("own", presence=False)
    writer = BatchedWriter(store, max_pending=10, max_batch=10, max_delay=0.01)
    archive = SqlArchive(store, writer, options_ttl=5.0)
    assert not (await archive.options("own")).presence
    for n in range(100):
        assert (await archive.options(f"churn:{n}")).presence
        now[0] += 1.0
    assert len(archive._options) <= 6  # the rooms of the last 5 s
    assert set(archive._known) == {"own"}

    archive.store = Down()  # type: ignore[assignment]
    assert not (await archive.options("own")).presence  # expired long ago: still known
    assert (await archive.options("churn:3")).presence  # the defaults, as before
