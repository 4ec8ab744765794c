"""MemoryBroker: the embedded default, for one process with no services.

Everything happens synchronously inside each call, so a publish assigns its
offset, appends to the room's history ring and reaches the hub before it
returns; order and history agree by construction. Each room gets a random
epoch when it is first used; a room with no subscribers that is idle for
``room_ttl`` seconds is dropped, so a later use starts a new epoch and a
resume from before it answers ``recovered: false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections import deque

from ..protocol.events import Event, Notice, Position
from .broker import Broker, HistoryPage, PresenceEntry, Recovery

__all__ = ["MemoryBroker", "new_epoch"]


def new_epoch() -> str:
    """A fresh random epoch: 8 URL-safe characters."""
    return secrets.token_urlsafe(6)


class _RoomLog:
    __slots__ = ("epoch", "events", "offset", "presence", "used")

    def __init__(self, history_size: int) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.events: deque[Event] = deque(maxlen=history_size)
        self.presence: dict[str, PresenceEntry] = {}
        self.used = time.monotonic()

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)

    def first_offset(self) -> int:
        """Offset of the oldest retained event (offset + 1 when none is)."""
        return self.offset - len(self.events) + 1


class MemoryBroker(Broker):
    """Rooms, history rings and presence in this process's memory."""

    def __init__(self, *, history_size: int = 1000, room_ttl: float = 3600.0) -> None:
        super().__init__()
        self.history_size = history_size
        self.room_ttl = room_ttl
        self._rooms: dict[str, _RoomLog] = {}
        self._subscribed: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def _room(self, room: str) -> _RoomLog:
        log = self._rooms.get(room)
        if log is None:
            log = self._rooms[room] = _RoomLog(self.history_size)
        log.used = time.monotonic()
        return log

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="roomcast-memory-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        interval = max(1.0, min(60.0, self.room_ttl / 4))
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Drop idle rooms nobody here subscribes to; returns how many."""
        deadline = (time.monotonic() if now is None else now) - self.room_ttl
        idle = [
            name
            for name, log in self._rooms.items()
            if log.used < deadline and name not in self._subscribed and not log.presence
        ]
        for name in idle:
            del self._rooms[name]
        return len(idle)

    def seed(self, room: str, position: Position, events: list[Event]) -> None:
        """Continue ``room`` at ``position`` with ``events`` as its retained
        history (a persisted room after a restart: its positions go on)."""
        log = self._room(room)
        log.epoch, log.offset = position
        log.events.clear()
        kept = [e for e in events if e.epoch == position.epoch][-self.history_size :]
        offsets = [e.offset for e in kept]
        if offsets == list(range(position.offset - len(kept) + 1, position.offset + 1)):
            log.events.extend(kept)  # else keep none rather than a ring with a hole

    async def publish(
        self, room: str, data: bytes, sender: str, *, history_size: int | None = None
    ) -> Event:
        return self._publish_now(room, data, sender, history_size)

    def enqueue_publish(
        self, room: str, data: bytes, sender: str, *, history_size: int | None = None
    ) -> asyncio.Future[Event]:
        """Published (and delivered) before this returns: the future is done."""
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        future.set_result(self._publish_now(room, data, sender, history_size))
        return future

    def _publish_now(self, room: str, data: bytes, sender: str, history_size: int | None) -> Event:
        log = self._room(room)
        size = history_size or self.history_size
        if log.events.maxlen != size:
            log.events = deque(log.events, maxlen=size)
        log.offset += 1
        event = Event(room, log.epoch, log.offset, data, sender, time.time())
        log.events.append(event)
        if room in self._subscribed:
            self.sink.deliver(event)
        return event

    async def publish_notice(self, notice: Notice) -> None:
        if notice.room in self._subscribed:
            self.sink.deliver_notice(notice)

    async def publish_control(self, message: dict[str, object]) -> None:
        """This process is every process: its sink gets ``message`` now."""
        self.sink.deliver_control(message)

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)
        self._room(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    def live_position(self, room: str) -> Position | None:
        if room not in self._subscribed:
            return None
        log = self._rooms.get(room)
        return None if log is None else log.position  # publish delivers synchronously

    async def recover(self, room: str, since: Position | None) -> Recovery:
        log = self._room(room)
        position = log.position
        if since is None:
            return Recovery(position)
        if since.epoch != log.epoch or since.offset > log.offset:
            return Recovery(position)
        if since.offset + 1 < log.first_offset():
            return Recovery(position)  # the gap is older than the retained history
        start = since.offset + 1 - log.first_offset()
        return Recovery(position, list(itertools.islice(log.events, start, None)), True)

    async def history(self, room: str, *, limit: int, before: int | None) -> HistoryPage:
        log = self._room(room)
        first = log.first_offset()
        end = log.offset + 1 if before is None else min(before, log.offset + 1)
        begin = max(first, end - limit)
        if end <= begin:
            return HistoryPage(log.position, [], False)
        events = list(itertools.islice(log.events, begin - first, end - first))
        return HistoryPage(log.position, events, begin > first)

    async def presence_add(self, room: str, entry: PresenceEntry) -> None:
        self._room(room).presence[entry.conn] = entry

    async def presence_remove(self, room: str, conn: str) -> None:
        log = self._rooms.get(room)
        if log is not None:
            log.presence.pop(conn, None)

    async def presence_list(self, room: str) -> list[PresenceEntry]:
        log = self._rooms.get(room)
        return [] if log is None else list(log.presence.values())
