"""uvicorn's websockets-sansio protocol, with a direct writer for the hub and a
smaller footprint per connection.

Through ASGI every frame is a ``send`` call: a task switch into the
connection's writer, Starlette's state checks, uvicorn's protocol, then one
``transport.write``. For fan-out that per-connection, per-message path costs
more than the write itself. This subclass adds a :class:`DirectWriter` in the
connection's scope (``extensions`` key ``roomcast.direct``) that writes a
complete, pre-built frame to the transport at once, and tells whether that is
allowed now:

* the handshake is done, no close frame was sent or received, the peer is
  still connected, and
* the transport is writable (uvicorn clears ``writable`` when asyncio pauses
  writing at the high-water mark, so backpressure still reaches the outbox:
  while paused, frames queue and a peer that stops reading is evicted), and
* no extension (per-message compression) was negotiated: only then are the
  server's frames identical for every connection (:attr:`DirectWriter.usable`).

It also lets the application take over the server's shutdown of a connection:
uvicorn's own shutdown (SIGTERM without roomcast's signal handlers, as in an
application that mounts roomcast) closes every WebSocket with 1012 at once.
When the application has set :attr:`DirectWriter.on_shutdown`, that is called
instead, and the application closes the connection itself (roomcast's drain:
queued frames, then 3000); uvicorn then waits for it as for any connection.

Everything else (accept, replies, pings, close) goes through uvicorn as usual.
uvicorn writes the output of every protocol action at once, so nothing of its
own is waiting to be written when a direct write goes out: the frame order on
the wire is the order of the writes.

Memory: an idle connection is mostly the objects it keeps. uvicorn gives each
one an ``asyncio.Queue`` for incoming events (four deques, ~3 KB) and an
``asyncio.Event`` for ``writable`` (~0.75 KB); :class:`_Inbox` and
:class:`_Flag` do the same jobs with plain lists. The handshake's request and
response (their headers, ~2.5 KB) are dropped once the response is sent: the
ASGI scope keeps the headers the application reads. (Together with the
standalone app answering /ws before FastAPI's stack, api/realtime.py, and
lazily made deques in Subscriber and InFlight, about 10 KB less per idle
connection: docs/performance.md.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

__all__ = ["DIRECT", "DirectWriter", "RoomcastWebSocketProtocol"]

DIRECT = "roomcast.direct"


class DirectWriter:
    """Handed to the application with the scope; used only once it has accepted."""

    __slots__ = ("_flag", "_protocol", "on_shutdown", "usable")

    def __init__(self, protocol: RoomcastWebSocketProtocol) -> None:
        self._protocol = protocol
        self._flag = protocol.writable
        self.usable = not protocol.conn.extensions
        """No extension negotiated: shared pre-built frames may be written."""
        self.on_shutdown: Callable[[], object] | None = None
        """Set by the application to close the connection itself on server shutdown."""

    def ready(self) -> bool:
        # Called once per connection per flush: plain attributes only, cheapest first.
        p = self._protocol
        return (
            self._flag._set
            and not p.close_sent
            and not p.disconnected
            and p.conn.state is State.OPEN
        )

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)


class _Inbox:
    """What uvicorn uses of ``asyncio.Queue``: one reader (the ASGI ``receive``)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class _Flag:
    """What uvicorn uses of ``asyncio.Event``: set, clear, is_set, wait."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True  # uvicorn starts writable
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter


class RoomcastWebSocketProtocol(WebSocketsSansIOProtocol):
    """Pass as uvicorn's ``ws`` (cli.py does)."""

    writable: _Flag  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][DIRECT] = DirectWriter(self)

    def shutdown(self) -> None:
        """uvicorn's shutdown: the application's, if it asked (see the module docstring)."""
        scope = getattr(self, "scope", None)
        writer = None if scope is None else scope["extensions"].get(DIRECT)
        handler = None if writer is None else writer.on_shutdown
        if (
            handler is not None
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
        ):
            handler()
            return
        super().shutdown()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and getattr(self, "response", None) is not None:
            self._forget_handshake()

    def _forget_handshake(self) -> None:
        """Drop what only the handshake needed, once the 101 response is sent."""
        self.request = self.response = None  # type: ignore[assignment]
        conn = self.conn
        # websockets' parser is a generator whose frame keeps the parsed request (and
        # its headers) as a local for the connection's life; a fresh one starts at
        # the frame parser. Only while nothing of a frame is buffered: a client must
        # wait for the 101 before it sends frames (RFC 6455, 4.1), so there is none.
        if conn.state is State.OPEN and not conn.reader.buffer:
            conn.parser = conn.parse()
            next(conn.parser)
