"""uvicorn's websockets-sansio protocol, with a direct writer for the hub and a
smaller footprint per connection.

Through ASGI every frame is a ``send`` call: a task switch into the
connection's writer, Starlette's state checks, uvicorn's protocol, then one
``transport.write``. For fan-out that per-connection, per-message path costs
more than the write itself. This subclass adds a :class:`~.direct.DirectWriter`
in the connection's scope (``extensions`` key ``roomcast.direct``, direct.py)
that writes a complete, pre-built frame to the transport at once, and tells
whether that is allowed now:

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

A chunk of received bytes that is exactly one whole text frame (a client's
request, as it usually arrives) is read without websockets' parser while that
parser is between frames (inbound_frame.py); every other frame goes through it.
Everything else (accept, replies, pings, close) goes through uvicorn as usual.
uvicorn writes the output of every protocol action at once, so nothing of its
own is waiting to be written when a direct write goes out: the frame order on
the wire is the order of the writes.

Memory: an idle connection is mostly the objects it keeps. uvicorn gives each
one an ``asyncio.Queue`` for incoming events (four deques, ~3 KB) and an
``asyncio.Event`` for ``writable`` (~0.75 KB); :class:`_Inbox` and
:class:`_Flag` do the same jobs with plain lists. The handshake's request and
response (their headers, ~2.5 KB) are dropped once the response is sent: the
ASGI scope keeps the headers the application reads; so is the generator frame
of websockets' handshake parser (the fresh parser is the frame parser itself).
uvicorn's per-server attributes live in slots, which keeps the instance
dictionary small enough to share its keys (~1.2 KB), and :meth:`receive` waits
on the inbox itself (one suspended coroutine fewer). See docs/performance.md
for what an idle connection still holds.

This leans on uvicorn's and websockets' private names, so roomcast uses it only
with the releases it was tested with (fastpath.py chooses, and falls back to
uvicorn's own protocol; importing this module fails when the base class is
gone). The first connection also checks the instance attributes the subclass
replaces or reads (:func:`missing_names`): when uvicorn changed them, no
connection gets the direct writer or the lighter inbox (plain ASGI sends,
uvicorn's own shutdown), and when websockets' parser changed, the handshake's
parser is kept; one warning says which.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import Protocol, State

from ..peerlog import PEER_LOG, peer_address
from ..protocol.codes import CloseCode
from ..protocol.wsframe import text_frame
from .direct import DIRECT
from .inbound_frame import whole_text_frame

__all__ = ["DIRECT", "RoomcastWebSocketProtocol", "SansIOWriter", "missing_names"]

log = logging.getLogger("roomcast.websocket")


class SansIOWriter:
    """The :class:`~.direct.DirectWriter` of one connection of this protocol.
    Handed to the application with the scope; used only once it has accepted."""

    __slots__ = ("_changed", "_flag", "_protocol", "on_shutdown", "usable")

    def __init__(self, protocol: RoomcastWebSocketProtocol) -> None:
        self._protocol = protocol
        self._flag = protocol.writable
        self._changed: Callable[[], object] | None = None
        self.usable = not protocol.conn.extensions
        """No extension negotiated: shared pre-built frames may be written."""
        self.on_shutdown: Callable[[], object] | None = None
        """Set by the application to close the connection itself on server shutdown."""

    @property
    def transport(self) -> asyncio.Transport:
        """The connection's own (asked for when readiness changes, not per delivery)."""
        return self._protocol.transport

    def ready(self) -> bool:
        p = self._protocol
        return (
            self._flag._set
            and not p.close_sent
            and not p.disconnected
            and p.conn.state is State.OPEN
        )

    def encode(self, text: str) -> bytes:
        return text_frame(text.encode())

    def watch(self, changed: Callable[[], object] | None) -> None:
        self._changed = changed

    def changed(self) -> None:
        """The protocol's: flow control, closing or the connection changed."""
        changed = self._changed
        if changed is not None:
            changed()

    __call__ = changed  # the flag's ``changed``: no bound method kept per connection


class _Inbox:
    """What uvicorn uses of ``asyncio.Queue``: one reader (the ASGI ``receive``,
    which waits on :meth:`arrival` itself: :meth:`RoomcastWebSocketProtocol.receive`).

    It keeps the connection's loop: ``asyncio.get_running_loop()`` costs a
    ``getpid()`` system call on every call (CPython checks for a fork), and a
    connection that receives a frame waits for the next one each time."""

    __slots__ = ("_items", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._items: list[Any] = []
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def arrival(self) -> asyncio.Future[None]:
        """Done when the next item is put: wait on it while :meth:`empty`."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = self._loop.create_future()
        return waiter

    def get_nowait(self) -> Any:
        return self._items.pop(0)

    async def get(self) -> Any:
        while not self._items:
            await self.arrival()
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class _Flag:
    """What uvicorn uses of ``asyncio.Event``: set, clear, is_set, wait."""

    __slots__ = ("_set", "_waiters", "changed")

    def __init__(self) -> None:
        self._set = True  # uvicorn starts writable
        self._waiters: list[asyncio.Future[None]] = []
        self.changed: Callable[[], object] | None = None  # the direct writer's

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self.changed is not None:
            self.changed()

    def clear(self) -> None:
        self._set = False
        if self.changed is not None:
            self.changed()

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter


def missing_names(
    protocol: WebSocketsSansIOProtocol,
) -> tuple[list[str], list[str], list[str]]:
    """What a freshly made ``protocol`` lacks of the uvicorn and websockets names
    this module relies on: (for the direct writer and the lighter inbox and flag,
    for forgetting the handshake, for reading a whole text frame without
    websockets' parser). Empty lists: all there."""

    def attr(name: str) -> Any:  # in the instance's dictionary, a slot, or a property
        return getattr(protocol, name, None)

    conn = attr("conn")
    reader = getattr(conn, "reader", None)
    direct = [
        name
        for name, present in (
            ("queue (an asyncio.Queue)", isinstance(attr("queue"), asyncio.Queue)),
            ("writable (an asyncio.Event)", isinstance(attr("writable"), asyncio.Event)),
            ("transport", hasattr(protocol, "transport")),
            ("loop (an asyncio loop)", isinstance(attr("loop"), asyncio.AbstractEventLoop)),
            *((flag, isinstance(attr(flag), bool)) for flag in _FLAGS),
            *((f"conn.{name}", hasattr(conn, name)) for name in ("state", "extensions")),
        )
        if not present
    ]
    forget = [
        name
        for name, present in (
            ("conn.parser", hasattr(conn, "parser")),
            ("conn.parse()", callable(getattr(conn, "parse", None))),
            ("conn.reader.buffer", isinstance(getattr(reader, "buffer", None), bytearray)),
        )
        if not present
    ]
    frames = [
        name
        for name, present in (
            ("conn.current_size", hasattr(conn, "current_size")),
            ("conn.max_message_size", hasattr(conn, "max_message_size")),
            ("conn.max_fragment_size", hasattr(conn, "max_fragment_size")),
            ("conn.debug", isinstance(getattr(conn, "debug", None), bool)),
            *((f"conn.{name}", hasattr(conn, name)) for name in ("state", "extensions")),
            ("conn.reader.buffer", isinstance(getattr(reader, "buffer", None), bytearray)),
            ("frames (a list)", isinstance(attr("frames"), list)),
            ("read_paused", isinstance(attr("read_paused"), bool)),
            ("close_sent", isinstance(attr("close_sent"), bool)),
        )
        if not present
    ]
    return direct, forget, frames


_FLAGS = ("close_sent", "disconnected", "handshake_complete")


class RoomcastWebSocketProtocol(WebSocketsSansIOProtocol):
    """Pass as uvicorn's ``ws``; roomcast passes ``roomcast:WebSocketProtocol``,
    which is this class only where it can be used (fastpath.py)."""

    # uvicorn's protocol sets about 38 attributes on each instance: past 30, an
    # instance dictionary cannot share its keys with the class's other instances
    # and costs ~1.6 KB instead of ~0.4 KB. These attributes of uvicorn's (the ones
    # it sets in __init__ and connection_made that are the same kind for every
    # connection) are kept in slots instead: 8 bytes each.
    __slots__ = (
        "app",
        "app_state",
        "asgi_version",
        "client",
        "config",
        "connections",
        "default_headers",
        "logger",
        "loop",
        "queue",
        "root_path",
        "scheme",
        "server",
        "tasks",
        "transport",
        "writable",
    )

    writable: _Flag  # type: ignore[assignment]

    direct_ok: ClassVar[bool | None] = None
    """Connections get the direct writer, inbox and flag: uvicorn's instances have
    what they use (checked on the first connection of the process; None before)."""
    forget_ok: ClassVar[bool | None] = None
    """websockets' parser is the one :meth:`_forget_handshake` knows (same check)."""
    frames_ok: ClassVar[bool | None] = None
    """:meth:`data_received` may read a whole text frame itself: websockets' parser
    and uvicorn's message state have the names it checks (same check)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if RoomcastWebSocketProtocol.direct_ok is None:
            _check(self)
        if RoomcastWebSocketProtocol.direct_ok:
            self.queue = _Inbox(self.loop)  # type: ignore[assignment]
            self.writable = _Flag()

    _writer: SansIOWriter | None = None  # the connection's, once it has one
    _close_sent = False
    _disconnected = False

    # uvicorn sets these two plain attributes wherever the connection stops taking
    # frames; as properties they tell the direct writer (and its subscriber) at once.
    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @close_sent.setter
    def close_sent(self, value: bool) -> None:
        self._close_sent = value
        if value and self._writer is not None:
            self._writer.changed()

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @disconnected.setter
    def disconnected(self, value: bool) -> None:
        self._disconnected = value
        if value and self._writer is not None:
            self._writer.changed()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and RoomcastWebSocketProtocol.direct_ok:
            writer = self._writer = scope["extensions"][DIRECT] = SansIOWriter(self)
            self.writable.changed = writer

    def handle_events(self) -> None:
        super().handle_events()
        # A close frame received: websockets answered it and the state left OPEN.
        if self._writer is not None and self.conn.state is not State.OPEN:
            self._writer.changed()

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
        super().shutdown()  # 1012, or the transport closed: frames no more
        if self._writer is not None:
            self._writer.changed()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, except that a chunk that is exactly one complete text frame (a
        client's request, as it usually arrives) is read without websockets' parser
        when that parser is between frames and would produce the same frame and
        nothing else (inbound_frame.py); anything else goes to websockets as before."""
        conn = self.conn
        if (
            RoomcastWebSocketProtocol.frames_ok
            and conn.state is State.OPEN
            and conn.current_size is None  # no fragmented message under way
            and not conn.reader.buffer  # nothing of a frame buffered
            and not conn.extensions
            and not conn.debug  # websockets logs each frame: leave that to it
            and not self.frames
            and not self.close_sent
        ):
            size, fragment = conn.max_message_size, conn.max_fragment_size
            if fragment is not None and (size is None or fragment < size):
                size = fragment
            payload = whole_text_frame(data, size)
            if payload is not None:
                try:
                    text = payload.decode()
                except UnicodeDecodeError:
                    pass  # websockets' parser and send_receive_event_to_app answer it
                else:
                    self._to_app(text)
                    return
        super().data_received(data)

    def _to_app(self, text: str) -> None:
        """A text message for the application: queued, reading paused until it is
        taken (uvicorn's backpressure)."""
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, except that a text message that is not UTF-8 (the peer's error)
        is one line in the peer log (peerlog.py), not an ERROR with a traceback
        that any client could repeat at socket speed; the peer still gets 1007."""
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        frames, self.frames = self.frames, []
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        try:
            text = data.decode()
        except UnicodeDecodeError:
            peer = peer_address(self.scope.get("client"))  # behind a proxy: the client's
            PEER_LOG.info("WebSocket text frame from %s is not UTF-8: closed 1007", peer, peer=peer)
            self.conn.send_close(CloseCode.INVALID_DATA)
            self.handle_parser_exception()
            return
        self._to_app(text)

    async def receive(self) -> Any:
        """uvicorn's, waiting on the inbox itself: an idle connection's task is
        suspended here, one coroutine frame fewer than uvicorn's ``queue.get()``."""
        queue = self.queue
        if not isinstance(queue, _Inbox):  # uvicorn's own Queue (direct_ok is False)
            return await super().receive()
        while queue.empty():
            await queue.arrival()
        message = queue.get_nowait()
        if self.read_paused and queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

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
        if not RoomcastWebSocketProtocol.forget_ok:
            return
        if conn.state is State.OPEN and not conn.reader.buffer:
            try:
                # the frame parser itself: ServerProtocol.parse would only delegate to
                # it, and keep one more generator frame for the connection's life
                parser = Protocol.parse(conn)
                next(parser)
            except Exception as exc:  # websockets changed how its parser starts
                RoomcastWebSocketProtocol.forget_ok = False
                log.warning("WebSocket handshake state kept: websockets' parser changed (%r)", exc)
                return
            conn.parser = parser


def _check(protocol: RoomcastWebSocketProtocol) -> None:
    """Set the class's ``direct_ok``, ``forget_ok`` and ``frames_ok`` from
    ``protocol`` (the first connection); log once what is missing."""
    direct, forget, frames = missing_names(protocol)
    RoomcastWebSocketProtocol.direct_ok = not direct
    RoomcastWebSocketProtocol.forget_ok = not forget
    RoomcastWebSocketProtocol.frames_ok = not frames
    if direct:
        log.warning(
            "WebSocket fast path off: uvicorn's %s changed (no %s); fan-out through ASGI "
            "sends, uvicorn's own close on shutdown (docs/operations.md)",
            WebSocketsSansIOProtocol.__name__,
            ", ".join(direct),
        )
    if forget:
        log.warning(
            "WebSocket handshake state kept: websockets' parser changed (no %s); about "
            "2.5 KB more per connection (docs/operations.md)",
            ", ".join(forget),
        )
    if frames:
        log.warning(
            "WebSocket frames all read by websockets' parser: websockets or uvicorn "
            "changed (no %s); a little more CPU per received frame (docs/operations.md)",
            ", ".join(frames),
        )
