"""A subscriber that is still being replayed buffers live events within its outbox
bounds: a slow replay read in a hot room costs bounded memory, and the resume then
answers honestly (recovered, or not, at a position live events continue from)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from roomcast.db.archive import SqlArchive
from roomcast.db.engine import create_engine
from roomcast.db.migrate import upgrade_async
from roomcast.db.store import MessageStore
from roomcast.db.writer import BatchedWriter
from roomcast.hub.archive import RoomOptions
from roomcast.hub.broker import Recovery
from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker, new_epoch
from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.codes import CloseCode
from roomcast.protocol.events import Event, Notice, Position


class SlowArchive(SqlArchive):
    """The SQL archive, but a read of old events answers only once released (a
    database under load), after reading its rows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def after(self, room: str, epoch: str, offset: int, limit: int) -> list[Event]:
        rows = await super().after(room, epoch, offset, limit)
        self.reading.set()
        await self.release.wait()
        return rows


class LateMemoryBroker(MemoryBroker):
    """The memory broker, but ``recover`` answers only once released, after reading
    (a replay read whose answer crosses a slow network while the room goes on)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reading = asyncio.Event()
        self.release = asyncio.Event()
        self.late = False

    async def recover(self, room: str, since: Position | None) -> Recovery:
        result = await super().recover(room, since)
        if self.late:
            self.reading.set()
            await self.release.wait()
        return result


class BehindMemoryBroker(MemoryBroker):
    """Live delivery reports itself behind history, as Redis pub/sub can be: a
    resumed subscriber stays pending after its subscribe replied."""

    def live_position(self, room: str) -> Position | None:
        live = super().live_position(room)
        return None if live is None else Position(live.epoch, 0)


@dataclass
class Persisted:
    hub: Hub
    archive: SlowArchive
    epoch: str


@pytest.fixture
async def persisted(tmp_path: Path) -> AsyncIterator[Persisted]:
    """A hub on the memory broker and a real SQL archive (SQLite) whose reads are
    slow, with persisted room ``r`` at offset 100 after a restart: its events are
    in SQL only, so a resume from early on reads them from the archive."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'roomcast.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    store = MessageStore(engine)
    writer = BatchedWriter(store, max_pending=1000, max_batch=100, max_delay=0.001)
    archive = SlowArchive(store, writer)
    archive.remember("r", RoomOptions(persist=True))
    epoch = new_epoch()
    now = time.time()
    await store.insert_many([Event("r", epoch, n, b"%d" % n, "old", now) for n in range(1, 101)])
    broker = MemoryBroker()
    broker.seed("r", Position(epoch, 100), [])
    hub = Hub(broker, presence=False, archive=archive)
    await writer.start()
    await hub.start()
    try:
        yield Persisted(hub, archive, epoch)
    finally:
        archive.release.set()
        await hub.stop()
        await writer.stop()
        await engine.dispose()


def frames_of(s: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in iter(s.pop, None)]


def offsets(frames: list[dict[str, Any]]) -> list[int]:
    return [f["offset"] for f in frames if f.get("type") == "message"]


def buffered(hub: Hub, s: Subscriber) -> tuple[int, int]:
    """(items, characters) ``s`` has buffered while pending in room ``r``."""
    pending = hub._rooms["r"].pending[s]
    return len(pending.buffer), pending.size


async def test_a_slow_archive_resume_in_a_hot_room_buffers_within_the_outbox_bound(
    persisted: Persisted,
) -> None:
    hub, archive = persisted.hub, persisted.archive
    s = Subscriber("c", "ann", max_messages=10, max_bytes=1 << 20)
    replies: list[Recovery] = []
    resume = asyncio.create_task(
        hub.subscribe(s, "r", Position(persisted.epoch, 0), replies.append)
    )
    await archive.reading.wait()  # the archive has read 1..100 and is slow to answer
    peak = 0
    for n in range(50):  # meanwhile the room goes on: 101..150
        await hub.publish("r", b"%d" % n, "live")
        peak = max(peak, buffered(hub, s)[0])
    archive.release.set()
    recovery = await resume
    assert peak <= 10, f"{peak} live events buffered for one pending subscriber"
    # What was let go is all in the replay, which reads the broker after the archive:
    assert (recovery.recovered, recovery.position.offset) == (True, 150)
    assert replies == [recovery]
    assert offsets(frames_of(s)) == list(range(1, 151))
    assert s.close_code is None
    await hub.publish("r", b"1", "live")
    assert offsets(frames_of(s)) == [151]  # and it is live


async def test_a_late_replay_whose_buffer_overflowed_answers_not_recovered_where_live_goes_on() -> (
    None
):
    broker = LateMemoryBroker()
    hub = Hub(broker, presence=False)
    for n in range(5):
        await hub.publish("r", b"%d" % n, "old")
    epoch = (await broker.recover("r", None)).position.epoch
    s = Subscriber("c", "ann", max_messages=1000, max_bytes=3000)  # about 20 frames
    broker.late = True
    resume = asyncio.create_task(hub.subscribe(s, "r", Position(epoch, 2), lambda rec: None))
    await broker.reading.wait()  # read 3..5, answers late
    peak = 0
    for n in range(60):  # 6..65 meanwhile
        await hub.publish("r", b'"live %d"' % n, "live")
        peak = max(peak, buffered(hub, s)[1])
    broker.late = False
    broker.release.set()
    recovery = await resume
    assert peak <= 3000, f"{peak} characters buffered for one pending subscriber"
    # The replay ends at 5, but live events after it were let go: not recovered, at
    # the position live delivery goes on from, and nothing replayed.
    assert not recovery.recovered
    assert recovery.events == []
    assert recovery.position.epoch == epoch
    lost = recovery.position.offset
    assert 5 < lost < 65
    live = offsets(frames_of(s))
    assert live == list(range(lost + 1, 66))
    assert s.close_code is None
    # The reload the protocol asks for meets the live events with no gap.
    page = await hub.history("r", limit=1000, before=lost + 1)
    assert [e.offset for e in page.events] + live == list(range(1, 66))


async def test_a_buffer_that_overflows_after_the_reply_evicts_as_a_slow_consumer() -> None:
    hub = Hub(BehindMemoryBroker(), presence=False)
    first = await hub.publish("r", b"1", "old")
    s = Subscriber("c", "ann", max_messages=10, max_bytes=1 << 20)
    evicted: list[str] = []
    s.on_evict = lambda: evicted.append("c")
    recovery = await hub.subscribe(s, "r", Position(first.epoch, 0), lambda rec: None)
    assert recovery.recovered
    assert hub.local_subscribers("r") == 0  # replied, but still waiting for live delivery
    for n in range(11):  # notices it must get after the reply: more than its outbox takes
        hub.deliver_notice(Notice("join", "r", {"user": f"u{n}", "conn": f"c{n}"}))
        assert buffered(hub, s)[0] <= 10
    assert s.close_code is CloseCode.SLOW_CONSUMER
    assert evicted == ["c"]
