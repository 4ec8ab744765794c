"""SqlArchive's room options: cached, and read once per room however many ask at once."""

from __future__ import annotations

import asyncio
from typing import Any

from roomcast.db.archive import SqlArchive
from roomcast.db.store import MessageStore
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
