"""The server-side API: what the application's own code does with rooms, from
its request handlers and background tasks, on a running
:class:`~roomcast.runtime.Roomcast`::

    await rc.publish("orders:new", {"id": 7})             # -> Published
    await rc.publish("orders:new", {"id": 7}, idempotency_key="order-7")  # once per window
    await rc.broadcast(["feed:a", "feed:b"], {"tick": 1})  # one publish per room
    page = await rc.history("chat:lobby", limit=20)        # -> History
    members = await rc.presence("chat:lobby")               # -> [PresenceEntry]
    await rc.disconnect("u42")                              # every connection, every worker
    await rc.unsubscribe("u42", "chat:lobby")
    rc.stats()                                              # this process: -> Stats

These act as the server itself: no permission checks and no hooks (the
application is the one deciding). Rooms, data and sizes are checked as for a
client. Errors (all :class:`~roomcast.protocol.errors.RoomcastError`):
``RequestError`` with code ``room_invalid``, ``bad_request`` or ``too_large``
for bad arguments; ``Unavailable`` when the broker (or, for a persisted room,
the database) cannot take it now (nobody got it: retry); ``DurableNotPersisted``
for ``durable`` on a room that is not persisted; ``PublishedNotPersisted`` for a
``durable`` publish that went out but was not committed (do not simply retry);
``NotStarted`` outside the lifespan.

``idempotency_key``: a publish with a key the application already used in the
room within ``idempotency_window`` seconds is not published again; it returns
the first one's position with ``duplicate=True``. The application's keys are
its own (whatever ``sender`` it names): they never meet a user's.

``disconnect`` and ``unsubscribe`` reach the user's connections on every
worker through the broker (with Redis: a control channel, hub/control.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .api.deps import NotStarted
from .hub.broker import Duplicate, IdempotencyKey, PresenceEntry
from .protocol.codec import DataNotEncodable, encode_data
from .protocol.codes import CloseCode, ErrorCode
from .protocol.errors import RequestError
from .protocol.frames import is_valid_idempotency_key, is_valid_room
from .transports.dispatch import NODE_ID

if TYPE_CHECKING:
    from .hub.hub import Hub
    from .settings import Settings

__all__ = ["History", "Message", "Published", "ServerAPI", "Stats", "SERVER_SENDER"]

SERVER_SENDER = "server"
"""The ``sender`` of what the application publishes, unless it names one."""

APPLICATION_KEYS = ""
"""The owner of the application's own idempotency keys: no principal's user id
is empty, so they never meet a user's."""


@dataclass(frozen=True, slots=True)
class Published:
    """Where a publish landed: its room's position. ``duplicate``: it was not
    published again (its idempotency key was used before; the position is the
    first publish's)."""

    room: str
    epoch: str
    offset: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """A message of a room's history (``data`` decoded)."""

    room: str
    epoch: str
    offset: int
    data: Any
    sender: str
    ts: float


@dataclass(frozen=True, slots=True)
class History:
    """A page of a room's history, oldest first; ``more``: older ones are retained."""

    room: str
    epoch: str
    offset: int
    messages: list[Message]
    more: bool


@dataclass(frozen=True, slots=True)
class Stats:
    """This process's numbers (each worker has its own)."""

    node: str
    connections: int
    websockets: int
    sse_streams: int
    subscriptions: int
    rooms: int
    draining: bool


class ServerAPI:
    """Mixed into :class:`~roomcast.runtime.Roomcast`; see the module docstring."""

    settings: Settings
    hub: Hub
    running: bool

    def _check_running(self) -> None:
        if not self.running:
            raise NotStarted("roomcast's lifespan is not running: pass lifespan=rc.lifespan")

    def _check_room(self, room: str) -> None:
        if not isinstance(room, str) or not is_valid_room(room):
            raise RequestError(
                ErrorCode.ROOM_INVALID, "room must be 1-128 letters, digits and _ . : -"
            )
        if len(room) > self.settings.max_room_length:
            limit = self.settings.max_room_length
            raise RequestError(ErrorCode.ROOM_INVALID, f"room names are at most {limit} long")

    def _encode(self, data: Any) -> bytes:
        try:
            encoded = encode_data(data)
        except DataNotEncodable as exc:
            raise RequestError(ErrorCode.BAD_REQUEST, str(exc)) from None
        limit = self.settings.max_payload_bytes
        if len(encoded) > limit:
            message = f"data is {len(encoded)} bytes; the limit is {limit}"
            raise RequestError(ErrorCode.TOO_LARGE, message)
        return encoded

    async def publish(
        self,
        room: str,
        data: Any,
        *,
        sender: str | None = None,
        durable: bool = False,
        idempotency_key: str | None = None,
    ) -> Published:
        """Publish ``data`` (any JSON value) to ``room``; every subscriber on every
        worker gets it as a ``message`` event from ``sender`` ("server" if None).
        ``durable``: return once it is committed to SQL (persisted rooms only).
        ``idempotency_key`` (1-128 printable ASCII characters, no spaces): see the
        module docstring."""
        self._check_running()
        self._check_room(room)
        idempotency = None
        if idempotency_key is not None:
            if not isinstance(idempotency_key, str) or not is_valid_idempotency_key(
                idempotency_key
            ):
                raise RequestError(
                    ErrorCode.BAD_REQUEST,
                    "idempotency_key must be 1-128 printable ASCII characters without spaces",
                )
            idempotency = IdempotencyKey(APPLICATION_KEYS, idempotency_key)
        event = await self.hub.publish(
            room,
            self._encode(data),
            sender or SERVER_SENDER,
            durable=durable,
            idempotency=idempotency,
        )
        return Published(room, event.epoch, event.offset, isinstance(event, Duplicate))

    async def broadcast(
        self, rooms: Iterable[str], data: Any, *, sender: str | None = None
    ) -> list[Published]:
        """Publish ``data`` to each of ``rooms`` (encoded once, the publishes
        pipelined), in that order. If one fails, the error is raised once all are
        done; the other rooms did get it."""
        self._check_running()
        names = list(dict.fromkeys(rooms))
        for room in names:
            self._check_room(room)
        encoded = self._encode(data)
        who = sender or SERVER_SENDER
        pending = [await self.hub.submit_publish(room, encoded, who) for room in names]
        events = await asyncio.gather(*pending, return_exceptions=True)
        for outcome in events:
            if isinstance(outcome, BaseException):
                raise outcome
        return [Published(e.room, e.epoch, e.offset) for e in events]  # type: ignore[union-attr]

    async def history(self, room: str, *, limit: int = 50, before: int | None = None) -> History:
        """Up to ``limit`` retained messages with offsets below ``before`` (default:
        the latest), oldest first."""
        self._check_running()
        self._check_room(room)
        if limit < 1:
            raise RequestError(ErrorCode.BAD_REQUEST, "limit must be at least 1")
        page = await self.hub.history(room, limit=limit, before=before)
        messages = [
            Message(e.room, e.epoch, e.offset, orjson.loads(e.data), e.sender, e.ts)
            for e in page.events
        ]
        position = page.position
        return History(room, position.epoch, position.offset, messages, page.more)

    async def presence(self, room: str) -> list[PresenceEntry]:
        """Who is subscribed to ``room`` now, on every worker."""
        self._check_running()
        self._check_room(room)
        return await self.hub.presence(room)

    async def disconnect(self, user: str, *, code: CloseCode = CloseCode.DISCONNECTED) -> None:
        """Close every connection of ``user`` (a principal's ``user``) on every
        worker: WebSockets with ``code`` (default 3503, "disconnected by the
        application": clients do not reconnect; a 3000-3499 code asks them to
        reconnect), SSE streams with a ``close`` event of that code."""
        self._check_running()
        try:
            code = CloseCode(code)
        except ValueError:
            raise RequestError(ErrorCode.BAD_REQUEST, f"{code} is not a close code") from None
        if not 3000 <= code <= 3999:
            raise RequestError(ErrorCode.BAD_REQUEST, "the close code must be 3000-3999")
        await self.hub.disconnect_user(user, code)

    async def unsubscribe(self, user: str, room: str) -> None:
        """Take every connection of ``user`` out of ``room`` on every worker; each
        gets an ``unsubscribed`` event, the room a ``leave``."""
        self._check_running()
        self._check_room(room)
        await self.hub.unsubscribe_user(user, room)

    def stats(self) -> Stats:
        """This process's connections, subscriptions and rooms."""
        websockets, sse, subscriptions, rooms = self.hub.census()
        return Stats(
            NODE_ID, websockets + sse, websockets, sse, subscriptions, rooms, self.hub.draining
        )
