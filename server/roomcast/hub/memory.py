"""MemoryBroker: the embedded default, for one process with no services.

Everything happens synchronously inside each call, so a publish assigns its
offset, appends to the room's history ring and reaches the hub before it
returns; order and history agree by construction.

Bounds: a room exists once it is written to (a publish, a subscribe, a presence
entry); reads of a room that does not exist (``recover``, ``history``,
``presence_list``) create nothing and answer as an empty room. At most
``max_rooms`` rooms exist at once: one more is refused with
:class:`BrokerUnavailable`. Each room keeps at most its ``history_size`` events,
and all rooms together at most ``max_history_bytes`` (counted by
:func:`event_cost`): past that, the oldest events of the largest rooms are let
go (:meth:`MemoryBroker.trim`), so a resume from before them answers
``recovered: false``, as when a room's own ring drops them.

Epochs: a new room starts in the broker's current *fresh* epoch, the same one a
read of an unknown room answers with offset 0, so a client that read an unknown
room and subscribes with that position once the room exists is replayed all of
it. A room with no subscribers and no presence that is idle for ``room_ttl``
seconds is dropped; if it had events in the fresh epoch, the fresh epoch is
replaced first, so the room's next life starts in a new epoch and a resume from
before it answers ``recovered: false`` (a position at offset 0 of an old fresh
epoch, which names no event, then answers ``recovered: false`` too: a reload).

Idempotency keys: each room remembers the keys of its publishes for
``idempotency_window`` seconds (0: none) as key -> (position, expiry), oldest
first. Expired keys are pruned on every keyed publish of the room and by the
sweep of idle rooms (every ``room_ttl``/4 seconds, 1 to 60); past
``max_idempotency_keys`` live keys in one room the oldest are dropped, so such
a key may publish again. A room that is dropped takes its keys with it, and
keys do not outlive the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections import OrderedDict, deque

from ..protocol.events import Event, Notice, Position
from .broker import (
    Broker,
    BrokerUnavailable,
    Duplicate,
    HistoryPage,
    IdempotencyKey,
    PresenceEntry,
    Recovery,
)
from .running import loop_of
from .supervise import supervised

__all__ = ["EVENT_OVERHEAD", "MemoryBroker", "event_cost", "new_epoch"]

EVENT_OVERHEAD = 800
"""Bytes a retained event costs beyond four times its payload and sender."""


def event_cost(event: Event) -> int:
    """What one retained event is counted for against ``max_history_bytes``: its
    payload and sender four times (the raw data, and the text, wire and SSE forms a
    fan-out caches on it), plus :data:`EVENT_OVERHEAD` for the objects."""
    return EVENT_OVERHEAD + 4 * (len(event.data) + len(event.sender))


def new_epoch() -> str:
    """A fresh random epoch: 8 URL-safe characters."""
    return secrets.token_urlsafe(6)


_Keys = OrderedDict[tuple[str, str], tuple[Position, float]]
"""A room's idempotency keys: (owner, key) -> (position, expiry), oldest first."""


class _RoomLog:
    __slots__ = ("bytes", "epoch", "events", "keys", "offset", "presence", "used")

    def __init__(self, history_size: int, epoch: str) -> None:
        self.epoch = epoch
        self.offset = 0
        self.events: deque[Event] = deque(maxlen=history_size)
        self.bytes = 0  # event_cost of the retained events
        self.presence: dict[str, PresenceEntry] = {}
        self.used = time.monotonic()
        self.keys: _Keys | None = None  # made by the room's first keyed publish

    def retained(self, position: Position) -> Event | None:
        """The retained event at ``position``, if the ring still holds it."""
        if position.epoch != self.epoch:
            return None
        index = position.offset - self.first_offset()
        if not 0 <= index < len(self.events):
            return None
        event = self.events[index]
        return event if event.offset == position.offset else None

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)

    def first_offset(self) -> int:
        """Offset of the oldest retained event (offset + 1 when none is)."""
        return self.offset - len(self.events) + 1


class MemoryBroker(Broker):
    """Rooms, history rings and presence in this process's memory."""

    def __init__(
        self,
        *,
        history_size: int = 1000,
        room_ttl: float = 3600.0,
        max_rooms: int = 100_000,
        max_history_bytes: int = 256 * 1024 * 1024,
        idempotency_window: float = 300.0,
        max_idempotency_keys: int = 10_000,
    ) -> None:
        super().__init__()
        self.history_size = history_size
        self.room_ttl = room_ttl
        self.max_rooms = max_rooms
        self.max_history_bytes = max_history_bytes
        self.idempotency_window = idempotency_window
        self.max_idempotency_keys = max_idempotency_keys
        self.history_bytes = 0  # event_cost of every retained event, all rooms
        self._fresh = new_epoch()  # new rooms start in it; unknown rooms read as in it
        self._rooms: dict[str, _RoomLog] = {}
        self._subscribed: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # while started: loop_of()

    def _room(self, room: str) -> _RoomLog:
        """``room``'s log for a write, made if it is new; BrokerUnavailable when that
        would be one more room than ``max_rooms``."""
        log = self._rooms.get(room)
        if log is None:
            if len(self._rooms) >= self.max_rooms:
                raise BrokerUnavailable(f"this process has {self.max_rooms} rooms (max_rooms)")
            log = self._rooms[room] = _RoomLog(self.history_size, self._fresh)
        log.used = time.monotonic()
        return log

    def _read(self, room: str) -> _RoomLog | None:
        """``room``'s log for a read; None (and nothing made) when it does not exist."""
        log = self._rooms.get(room)
        if log is not None:
            log.used = time.monotonic()
        return log

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sweeper = supervised("roomcast-memory-sweep", self._sweep_forever)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._loop = None

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
            log = self._rooms.pop(name)
            self.history_bytes -= log.bytes
            if log.offset and log.epoch == self._fresh:  # its next life: another epoch
                self._fresh = new_epoch()
        self._prune_keys(time.monotonic() if now is None else now)
        return len(idle)

    def _prune_keys(self, now: float) -> None:
        """Let expired idempotency keys go in every room (a room that no longer
        publishes would keep them until it is dropped)."""
        for log in self._rooms.values():
            if log.keys is not None:
                _prune(log.keys, now)
                if not log.keys:
                    log.keys = None

    def seed(self, room: str, position: Position, events: list[Event]) -> None:
        """Continue ``room`` at ``position`` with ``events`` as its retained
        history (a persisted room after a restart: its positions go on)."""
        log = self._rooms.get(room)
        if log is None:  # at startup, before any client: not held to max_rooms
            log = self._rooms[room] = _RoomLog(self.history_size, position.epoch)
        log.epoch, log.offset = position
        log.events.clear()
        kept = [e for e in events if e.epoch == position.epoch][-self.history_size :]
        offsets = [e.offset for e in kept]
        if offsets == list(range(position.offset - len(kept) + 1, position.offset + 1)):
            log.events.extend(kept)  # else keep none rather than a ring with a hole
        self._recount(log)

    async def publish(
        self,
        room: str,
        data: bytes,
        sender: str,
        *,
        history_size: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Event:
        return self._publish_now(room, data, sender, history_size, idempotency)

    def enqueue_publish(
        self,
        room: str,
        data: bytes,
        sender: str,
        *,
        history_size: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> asyncio.Future[Event]:
        """Published (and delivered) before this returns: the future is done."""
        future: asyncio.Future[Event] = loop_of(self._loop).create_future()
        try:
            future.set_result(self._publish_now(room, data, sender, history_size, idempotency))
        except BrokerUnavailable as exc:  # max_rooms
            future.set_exception(exc)
        return future

    def _publish_now(
        self,
        room: str,
        data: bytes,
        sender: str,
        history_size: int | None,
        idempotency: IdempotencyKey | None = None,
    ) -> Event:
        remember = idempotency is not None and self.idempotency_window > 0
        if remember:
            assert idempotency is not None
            known = self._read(room)
            seen = None if known is None else self._duplicate(known, idempotency)
            if seen is not None:
                return Duplicate(room, seen[0], seen[1], data, sender, time.time())
        log = self._room(room)
        size = history_size or self.history_size
        if log.events.maxlen != size:
            log.events = deque(log.events, maxlen=size)
            self._recount(log)
        log.offset += 1
        event = Event(room, log.epoch, log.offset, data, sender, time.time())
        self._retain(log, event)
        if remember:
            assert idempotency is not None
            self._remember(log, idempotency, event.position)
        if room in self._subscribed:
            self.sink.deliver(event)
        return event

    async def find_duplicate(self, room: str, idempotency: IdempotencyKey) -> Duplicate | None:
        log = self._rooms.get(room)
        if log is None or self.idempotency_window <= 0:
            return None
        seen = self._duplicate(log, idempotency)
        if seen is None:
            return None
        return Duplicate(room, seen[0], seen[1], b"null", "", 0.0)

    def _duplicate(
        self, log: _RoomLog, idempotency: IdempotencyKey
    ) -> tuple[Position, Event | None] | None:
        """The position (and retained event) a live key of ``log`` names."""
        keys = log.keys
        if not keys:
            return None
        now = time.monotonic()
        _prune(keys, now)
        seen = keys.get((idempotency.owner, idempotency.key))
        if seen is None or seen[1] <= now:
            return None
        return seen[0], log.retained(seen[0])

    def _remember(self, log: _RoomLog, idempotency: IdempotencyKey, position: Position) -> None:
        keys = log.keys
        if keys is None:
            keys = log.keys = OrderedDict()
        now = time.monotonic()
        _prune(keys, now)
        name = (idempotency.owner, idempotency.key)
        keys[name] = (position, now + self.idempotency_window)
        keys.move_to_end(name)
        while len(keys) > self.max_idempotency_keys:
            keys.popitem(last=False)  # the oldest: it may publish again

    def _retain(self, log: _RoomLog, event: Event) -> None:
        """Append ``event`` to ``log``'s ring and keep the byte counts: O(1), and
        :meth:`trim` (amortized O(1)) once past ``max_history_bytes``."""
        events = log.events
        if not events.maxlen:
            return
        change = event_cost(event)
        if len(events) == events.maxlen:
            change -= event_cost(events[0])  # the ring lets its oldest go
        events.append(event)
        log.bytes += change
        self.history_bytes += change
        if self.history_bytes > self.max_history_bytes:
            self.trim()

    def _recount(self, log: _RoomLog) -> None:
        count = sum(map(event_cost, log.events))
        self.history_bytes += count - log.bytes
        log.bytes = count

    def trim(self) -> None:
        """Let the oldest events of the largest rooms go until all rooms together
        keep at most 7/8 of ``max_history_bytes``: the largest rooms are cut down
        to one common size, as little as that takes. One pass over the rooms per
        1/8 of the bound published: amortized O(1) per publish."""
        target = self.max_history_bytes - self.max_history_bytes // 8
        excess = self.history_bytes - target
        if excess <= 0:
            return
        logs = sorted((log for log in self._rooms.values() if log.bytes), key=_size, reverse=True)
        total, level = 0, 0
        for count, log in enumerate(logs, 1):
            total += log.bytes
            below = logs[count].bytes if count < len(logs) else 0
            if total - count * below >= excess:  # cutting these to `below` is enough
                level = (total - excess) // count
                break
        for log in logs:
            if log.bytes <= level:
                break
            events = log.events
            while log.bytes > level and events:
                cost = event_cost(events.popleft())
                log.bytes -= cost
                self.history_bytes -= cost

    async def publish_notice(self, notice: Notice) -> None:
        if notice.room in self._subscribed:
            self.sink.deliver_notice(notice)

    async def publish_control(self, message: dict[str, object]) -> None:
        """This process is every process: its sink gets ``message`` now."""
        self.sink.deliver_control(message)

    async def subscribe(self, room: str) -> None:
        self._room(room)
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    def live_position(self, room: str) -> Position | None:
        if room not in self._subscribed:
            return None
        log = self._rooms.get(room)
        return None if log is None else log.position  # publish delivers synchronously

    async def recover(self, room: str, since: Position | None) -> Recovery:
        log = self._read(room)
        if log is None:  # as the empty room it would be if it were made now
            position = Position(self._fresh, 0)
            return Recovery(position, [], True) if since == position else Recovery(position)
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
        log = self._read(room)
        if log is None:
            return HistoryPage(Position(self._fresh, 0), [], False)
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
        log = self._read(room)
        return [] if log is None else list(log.presence.values())


def _size(log: _RoomLog) -> int:
    return log.bytes


def _prune(keys: _Keys, now: float) -> None:
    """Drop the expired keys: they are the oldest (one window for all)."""
    while keys:
        first = next(iter(keys))
        if keys[first][1] > now:
            return
        del keys[first]
