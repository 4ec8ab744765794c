"""The Broker interface: where positions, history and cross-process fan-out live.

A broker serves one process (one hub). It assigns each published event its
room's next offset, keeps a bounded history per room, and hands every event
of a room this process is subscribed to back to the hub through the
:class:`BrokerSink` it was bound to, exactly once and in offset order.

Contract (tests/hub/broker_contract.py runs it against every broker):

* ``publish`` returns the event with offset = previous offset + 1 in its room,
  and the sink sees it only if this process subscribed to the room;
* ``recover(room, since)`` returns the room's current position and, when
  ``since`` is in the current epoch and every later event is still retained,
  exactly those events in order with ``recovered=True``;
* ``history`` pages backwards; ``presence_*`` keep a per-room member list;
* after ``subscribe(room)`` returns, every later publish to ``room`` reaches
  the sink; this is what lets the hub hand over from replay to live with no gap;
* ``publish_control`` hands a control message to this process's sink before it
  returns and to every other process's sink on the same broker once, in no room;
* a publish with an :class:`IdempotencyKey` whose owner and key were already
  used in the room within the broker's ``idempotency_window`` seconds (0: never)
  is not published again: it returns a :class:`Duplicate` at the first one's
  position, nothing is appended, delivered or fanned out. Checking and
  publishing are one atomic step, across every process of the deployment;
  ``find_duplicate`` only looks.

Errors: a broker raises :class:`BrokerUnavailable` when it cannot do what was
asked right now (the client gets ``unavailable``); never a silent drop.

Shards: a broker whose rooms live on several servers (a Redis Cluster's
masters), or on one it can lose (Redis), reports each one's state in
:meth:`Broker.shards`; it is :attr:`Broker.ready` while some shard serves
(/readyz), and /metrics shows every shard. The memory broker has none.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from ..protocol.errors import RoomcastError
from ..protocol.events import Event, Notice, Position

__all__ = [
    "Broker",
    "BrokerSink",
    "BrokerUnavailable",
    "Duplicate",
    "Unavailable",
    "HistoryPage",
    "IdempotencyKey",
    "PresenceEntry",
    "Recovery",
    "ShardState",
]


class Unavailable(RoomcastError):
    """Something the request needs cannot serve it now: the client gets
    ``unavailable`` (HTTP 503) and may retry. Never a silent drop."""


class BrokerUnavailable(Unavailable):
    """The broker cannot serve the request now (e.g. Redis is down)."""


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A publisher's key for one publish, so that a retry is not published twice.

    ``owner`` scopes it: the publishing principal's user id (``""`` for the
    application's own publishes, which no principal has), so one user cannot
    suppress another's publishes by guessing keys. ``key``: 1-128 printable
    ASCII characters without spaces (the caller checks it)."""

    owner: str
    key: str


class Duplicate(Event):
    """The answer to a publish whose :class:`IdempotencyKey` was already used in
    the room within the window: not published again, at the first publish's
    position. It was not delivered, kept or archived.

    ``original`` is the first publish's event when the broker still retains it
    (its data, sender and time are then this one's too); None when it does not,
    and then ``data``, ``sender`` and ``ts`` are those of the retry."""

    __slots__ = ("original",)

    def __init__(
        self,
        room: str,
        position: Position,
        original: Event | None,
        data: bytes,
        sender: str,
        ts: float,
    ) -> None:
        if original is not None:
            data, sender, ts = original.data, original.sender, original.ts
        super().__init__(room, position.epoch, position.offset, data, sender, ts)
        self.original = original

    def __repr__(self) -> str:
        return f"Duplicate({self.room!r}, {self.epoch!r}, {self.offset})"


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    conn: str
    user: str
    joined: float

    def to_dict(self) -> dict[str, str | float]:
        return {"conn": self.conn, "user": self.user, "joined": self.joined}


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a subscribe with ``since`` gets back from the broker."""

    position: Position
    events: list[Event] = field(default_factory=list)
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Events with offsets below ``before``, oldest first, and the room's position."""

    position: Position
    events: list[Event]
    more: bool


@dataclass(frozen=True, slots=True)
class ShardState:
    """One shard of a broker as this process sees it now (/readyz, /metrics).

    ``node`` names it: ``main`` for a single Redis, ``host:port`` for a cluster
    node. ``up``: this process can serve the shard's rooms (Redis: its pub/sub
    link is connected, and no publish to it failed just now). ``reconnects``:
    times its pub/sub link was lost and made again. ``held_rooms`` and
    ``held_messages``: its rooms waiting for a resync, and the live messages held
    for them meanwhile. ``master_switches``: times Redis Sentinel named another
    master for it; None when no sentinel names its master."""

    node: str
    up: bool
    reconnects: int = 0
    held_rooms: int = 0
    held_messages: int = 0
    master_switches: int | None = None


class BrokerSink(Protocol):
    """What a broker calls to hand events to its process (the hub)."""

    def deliver(self, event: Event) -> None: ...

    def deliver_notice(self, notice: Notice) -> None: ...

    def deliver_control(self, message: dict[str, object]) -> None:
        """A control message (:meth:`Broker.publish_control`). Never awaits; must
        not keep or change ``message`` (this process's own is the caller's dict)."""


class Broker(abc.ABC):
    """Positions, history, presence and fan-out for the rooms of one process."""

    idempotency_window: float = 0.0
    """Seconds a publish's idempotency key is kept; 0: keys are ignored."""

    def __init__(self) -> None:
        self._sink: BrokerSink | None = None
        self._last_enqueued: asyncio.Future[Event] | None = None

    def bind(self, sink: BrokerSink) -> None:
        """Set the hub that receives this process's events. Once, before start."""
        self._sink = sink

    @property
    def sink(self) -> BrokerSink:
        if self._sink is None:
            raise RuntimeError("broker is not bound to a hub")
        return self._sink

    async def check(self) -> None:  # noqa: B027 - optional hook
        """Whether the broker's servers can be reached now, for a check at startup:
        one connection, no retry, within the broker's own timeout (a refused
        connection or an unknown host answers at once); nothing is kept open and
        nothing started. Raises :class:`BrokerUnavailable` saying what failed. The
        memory broker has nothing to reach."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect and start background work."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop background work and release connections."""

    @property
    def ready(self) -> bool:
        """Whether the broker can serve requests now (for /readyz): some shard is
        up, or it has no shards. Degraded shards are the ones not up."""
        shards = self.shards()
        return not shards or any(shard.up for shard in shards)

    def shards(self) -> list[ShardState]:
        """The state of each shard, for /readyz and /metrics; cheap (no I/O), so
        a scrape may call it. None by default: one process, nothing to lose."""
        return []

    @property
    def reconnects(self) -> int:
        """Times the broker's connection was lost and made again (for /metrics)."""
        return 0

    @abc.abstractmethod
    async def publish(
        self,
        room: str,
        data: bytes,
        sender: str,
        *,
        history_size: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Event:
        """Assign the next offset, append to history, fan out. Returns the event.

        ``history_size``: the room's own bound on retained events, when it has one.
        ``idempotency``: when its owner and key were used in ``room`` within the
        window, nothing is published and a :class:`Duplicate` is returned; else
        the event is published and the key remembered with its position."""

    @abc.abstractmethod
    async def find_duplicate(self, room: str, idempotency: IdempotencyKey) -> Duplicate | None:
        """What a publish with ``idempotency`` would be answered now if it is a
        duplicate (when the original is gone, its ``data`` is ``null``, ``sender``
        empty and ``ts`` 0); None when it is not (or the window is 0). Only looks:
        a publish after it decides afresh."""

    def enqueue_publish(
        self,
        room: str,
        data: bytes,
        sender: str,
        *,
        history_size: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> asyncio.Future[Event]:
        """Start :meth:`publish` now and return its future: publishes enqueued one
        after another (with no await between the calls) get offsets in that order,
        whatever rooms they are in, while the caller goes on without waiting.

        This default runs them one at a time, each after the previous finished;
        brokers override it to overlap them (the memory broker publishes at once,
        the Redis broker pipelines)."""
        previous = self._last_enqueued

        async def run() -> Event:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            return await self.publish(
                room, data, sender, history_size=history_size, idempotency=idempotency
            )

        task = self._last_enqueued = asyncio.ensure_future(run())
        return task

    @abc.abstractmethod
    async def publish_notice(self, notice: Notice) -> None:
        """Fan out an event without a position (not kept in history)."""

    @abc.abstractmethod
    async def publish_control(self, message: dict[str, object]) -> None:
        """Hand ``message`` (a JSON object) to the sink of every process on this
        broker (Redis: the same server or cluster and prefix), each once.

        This process's sink gets it first, synchronously, before the call first
        awaits: acting on it here never waits for a round trip. The others get
        it as it arrives, outside any room, with no order against events.
        At most once: a process whose link to the others is down while it is
        sent never gets it. Raises :class:`BrokerUnavailable` when it cannot be
        sent to the others; this process's sink has had it all the same.
        """

    @abc.abstractmethod
    async def subscribe(self, room: str) -> None:
        """Start receiving ``room``'s events in this process."""

    @abc.abstractmethod
    async def unsubscribe(self, room: str) -> None:
        """Stop receiving ``room``'s events in this process."""

    @abc.abstractmethod
    def live_position(self, room: str) -> Position | None:
        """How far this process's live delivery of ``room`` has got: every event
        at or before it has been handed to the sink (or never will be), every
        later one will be. None when the room is not subscribed here."""

    @abc.abstractmethod
    async def recover(self, room: str, since: Position | None) -> Recovery:
        """The room's position and the retained events after ``since``."""

    @abc.abstractmethod
    async def history(self, room: str, *, limit: int, before: int | None) -> HistoryPage:
        """Up to ``limit`` retained events with offset < ``before``, oldest first."""

    @abc.abstractmethod
    async def presence_add(self, room: str, entry: PresenceEntry) -> None: ...

    @abc.abstractmethod
    async def presence_remove(self, room: str, conn: str) -> None: ...

    @abc.abstractmethod
    async def presence_list(self, room: str) -> list[PresenceEntry]: ...
