"""The SSE transport: rooms as a ``text/event-stream``, resumable by Last-Event-ID.

The only module that touches sse-starlette. A stream is one
:class:`Subscriber` (with ``sse=True``, so the hub hands it each event's
pre-encoded ``sse`` form) drained by an async generator that
:class:`EventSourceResponse` sends: every wake-up sends everything queued as
one chunk, so a busy stream costs one ASGI send per batch, not per event.

Under roomcast's uvicorn HTTP protocol the request's scope holds a
:class:`~.direct.DirectResponse` (uvicorn_http.py, uvicorn_response.py), and
two things change:

* Direct writes. A stream of one room sends every event exactly as the hub
  built it, so once its first chunk (which carries ``retry:``) is out, the
  stream hands that writer to its subscriber: while the connection is writable
  and nothing is queued, the hub writes each event's shared chunk
  (``Event.sse_wire``) straight to the transport, with no task switch and no
  ASGI send, as for a WebSocket. Whatever cannot go out at once (paused by flow
  control, a replay, a chunk still on its way through ASGI) goes through the
  outbox and this generator, in order, with the outbox's bounds. A stream of
  several rooms rewrites every ``id`` (:func:`_retag`), so its frames are its
  own and always go through the generator. The subscriber lets go of the writer
  before the stream's last chunk (and the writer is not ready once the
  response is complete).
* No sse-starlette tasks (:meth:`_EventStream._serve`): the response's own
  coroutine sends the stream; the writer tells it when the connection is lost
  (the stream ends) and when the server shuts down (the drain starts), and the
  hub's :class:`~.sse_keepalive.Pinger` offers the keep-alive comments. An idle
  stream keeps ~20 KB less.

Under any other server sse-starlette's response runs as it is (its tasks for
the disconnect, the server's exit and the keep-alive comments).

What a client sees (docs/protocol.md, "Server-Sent Events"):

* one ``subscribed`` event per room whose ``id`` is the position the stream
  continues from and whose data says whether the resume was complete (the
  first event of the stream also carries ``retry: <ms>``, a field of that
  event, not a block of its own, which some clients would report as an empty
  message); then replayed and live ``message`` events with
  ``id: <epoch>:<offset>``; ``join``/``leave`` (no id) and ``reset`` (the
  room's new position as id); keep-alive comments every ``sse_keepalive``.
* A stream of several rooms (``/events?room=a&room=b``) carries ids of the
  form ``a=<epoch>:<offset>;b=<epoch>:<offset>``, so one Last-Event-ID
  resumes every room.
* The stream ends with a ``close`` event carrying a close code from the table
  (3000 shutdown, 3001 slow consumer, 3003 token expired) when the server ends it; a stream the
  server cannot start for a broker outage gets an ``error`` event and ends, and
  EventSource reconnects after ``retry``.

Same bounds as WebSocket: the bounded outbox and eviction, the send watchdog,
and a per-send timeout (``send_timeout``) on what goes through ASGI.

Shutdown: roomcast's drain ends every stream with ``close`` 3000. When the
server shuts down on its own (an application that mounts roomcast keeps the
signals), roomcast's HTTP protocol tells the stream (or, under another server,
sse-starlette notices uvicorn's exit); the stream then starts the drain
(:attr:`Services.server_shutdown`) and gets ``drain_timeout`` seconds to send
its ``close`` (uvicorn's ``timeout_graceful_shutdown``, or sse-starlette's
grace period) before it is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any, NoReturn, cast

import anyio
import orjson
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from ..auth import ConnectionLease, Principal
from ..hub.broker import Recovery, Unavailable
from ..hub.hub import Hub
from ..hub.subscriber import Subscriber
from ..peerlog import PEER_LOG, PeerStalled, only, peer_address
from ..protocol.codes import CloseCode, close_reason
from ..protocol.errors import RoomcastError
from ..protocol.events import Position
from ..settings import Settings
from .client import Client
from .direct import DIRECT, DirectResponse
from .services import Services
from .sse_keepalive import pinger
from .websocket import new_connection_id

__all__ = ["LastEventIdError", "parse_last_event_id", "sse_response"]

_ROOM = re.compile(r'"room":"([^"]*)"')

log = logging.getLogger("roomcast.sse")


class LastEventIdError(RoomcastError, ValueError):
    """A Last-Event-ID this server did not issue."""


def _position(text: str) -> Position:
    epoch, sep, offset = text.rpartition(":")
    if not sep or not epoch or not offset.isdigit():
        raise LastEventIdError(f"not a position: {text[:80]!r}")
    return Position(epoch, int(offset))


def parse_last_event_id(value: str, rooms: list[str]) -> dict[str, Position]:
    """Positions per room from a Last-Event-ID: ``<epoch>:<offset>`` for one
    room, ``<room>=<epoch>:<offset>;...`` for several. Rooms not asked for are
    ignored. Raises :class:`LastEventIdError`."""
    if "=" not in value:
        if len(rooms) != 1:
            raise LastEventIdError("a stream of several rooms resumes from room=epoch:offset;...")
        return {rooms[0]: _position(value)}
    positions: dict[str, Position] = {}
    for part in value.split(";"):
        room, sep, position = part.partition("=")
        if not sep:
            raise LastEventIdError(f"not room=epoch:offset: {part[:80]!r}")
        if room in rooms:
            positions[room] = _position(position)
    return positions


def _retag(frame: str, positions: dict[str, str]) -> str:
    """Give a frame with an ``id`` the stream's id of every room's position."""
    head, found, rest = frame.partition("\nid: ")
    if not found:
        return frame
    position, _, tail = rest.partition("\n")
    match = _ROOM.search(tail)
    if match is None:
        return frame
    positions[match.group(1)] = position
    vector = ";".join(f"{room}={pos}" for room, pos in positions.items())
    return f"{head}\nid: {vector}\n{tail}"


def _subscribed(room: str, recovery: Recovery, since: Position | None) -> str:
    """The first event of a room: its id is where the stream continues from."""
    start = since if since is not None and recovery.recovered else recovery.position
    data = orjson.dumps(
        {
            "room": room,
            "epoch": recovery.position.epoch,
            "offset": recovery.position.offset,
            "recovered": recovery.recovered,
            "replayed": len(recovery.events),
        }
    ).decode()
    return f"event: subscribed\nid: {start.epoch}:{start.offset}\ndata: {data}\n\n"


def _offer_subscribed(
    sub: Subscriber, room: str, since: Position | None, recovery: Recovery
) -> None:
    sub.offer(_subscribed(room, recovery, since))


def _control(kind: str, fields: dict[str, object]) -> bytes:
    return f"event: {kind}\ndata: {orjson.dumps(fields).decode()}\n\n".encode()


class _Link:
    """What a stream's generator learns when its response is called (the
    generator is made before): the direct writer of the response, if any."""

    __slots__ = ("sub", "writer")

    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        self.writer: DirectResponse | None = None

    def lost(self) -> None:
        """The connection is gone: the stream ends (nothing more is sent)."""
        self.sub.close(CloseCode.GOING_AWAY, peer_gone=True)


async def _stream(
    hub: Hub,
    client: Client,
    principal: Principal,
    since: dict[str, Position | None],
    settings: Settings,
    link: _Link,
) -> AsyncIterator[bytes]:
    sub = client.sub
    client.adopt(principal)  # starts the expiry timer: a ``close`` 3003 at exp
    client.connected = principal  # on_connect passed (api/realtime.py): on_disconnect at the end
    writer = link.writer  # None: sse-starlette's response (its tasks, its pings)
    # A stream of one room sends the hub's frames as they are: they may be written
    # directly, once the first chunk (with ``retry:``) is out.
    direct = writer if len(since) == 1 else None
    positions: dict[str, str] | None = None  # a stream of several rooms: its ids' parts
    if len(since) > 1:
        positions = {r: f"{p.epoch}:{p.offset}" for r, p in since.items() if p is not None}
    # ``retry:`` goes out as a field of the stream's first event (whichever it is).
    retry = f"retry: {settings.sse_retry_ms}\n".encode()
    keepalive = None
    hub.register(sub)
    try:
        for room, position in since.items():
            try:
                await hub.subscribe(
                    sub, room, position, functools.partial(_offer_subscribed, sub, room, position)
                )
            except Unavailable as exc:
                yield retry + _control("error", {"code": "unavailable", "message": str(exc)})
                return
        since = {}  # (not kept for the stream's life)
        while True:
            frame = sub.pop()
            if frame is None:
                if sub.closing:
                    break
                await sub.wait()
                continue
            batch = [frame]
            while (frame := sub.pop()) is not None:
                batch.append(frame)
            if positions is not None:
                batch = [_retag(f, positions) for f in batch]
            chunk, retry = retry + "".join(batch).encode(), b""
            if writer is not None:
                writer.sending(chunk)  # no direct write before this chunk is out
            yield chunk
            del chunk, batch  # (not kept while the stream waits)
            if writer is not None and keepalive is None:  # the first chunk is out
                keepalive = pinger(hub, settings.sse_keepalive)
                keepalive.add(sub)
                sub.attach(direct)
        code = sub.close_code
        if code is not None and not sub.peer_gone:
            yield retry + _control("close", {"code": int(code), "reason": close_reason(code)})
    except Exception:  # a bug (a peer's trouble is in sending: _EventStream): loud, then 1011
        log.exception("event stream %s failed", sub.conn_id, extra={"conn": sub.conn_id})
        internal = CloseCode.INTERNAL_ERROR
        yield retry + _control("close", {"code": int(internal), "reason": close_reason(internal)})
    finally:
        sub.attach(None)  # nothing direct from here on: the response ends the body
        if keepalive is not None:
            keepalive.remove(sub)
        sub.close(CloseCode.GOING_AWAY, peer_gone=True)  # keeps an earlier code
        client.release()
        with anyio.CancelScope(shield=True):
            await hub.disconnect(sub)
            await client.disconnected()


class _EventStream(EventSourceResponse):
    """sse-starlette's response, where a peer that stops reading is the peer's
    problem: when a send makes no progress for ``send_timeout`` (a peer that keeps
    its socket open but reads nothing, for instance after its eviction), one line
    goes to the peer log (peerlog.py) and :class:`PeerStalled` tells the server to
    drop the connection, instead of sse-starlette's ``SendTimeoutError`` in an
    ExceptionGroup, which uvicorn would log with a 150-line traceback.

    Under a server that puts a :class:`~.direct.DirectResponse` in the scope
    (roomcast's HTTP protocol), :meth:`_serve` sends the stream instead of
    sse-starlette's tasks."""

    conn_id = ""
    link: _Link | None = None
    on_shutdown: Callable[[], object] | None = None  # the server shuts down: drain

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        writer: DirectResponse | None = None
        if scope["type"] == "http" and scope["method"] != "HEAD":
            writer = (scope.get("extensions") or {}).get(DIRECT)
        if writer is None or self.link is None:
            return self._starlette(scope, receive, send)
        self.link.writer = writer
        return self._serve(writer, scope, send)  # (this frame is not kept meanwhile)

    async def _starlette(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (SendTimeoutError, BaseExceptionGroup) as exc:
            if not only(exc, SendTimeoutError):
                raise
            self._stalled(scope)

    def _stalled(self, scope: Scope) -> NoReturn:
        peer = peer_address(scope.get("client"))
        PEER_LOG.info(
            "event stream %s to %s dropped: the peer read nothing for %g s",
            self.conn_id, peer, self.send_timeout, conn=self.conn_id, peer=peer,
        )  # fmt: skip
        raise PeerStalled(f"event stream {self.conn_id}: the peer stopped reading") from None

    async def _serve(self, writer: DirectResponse, scope: Scope, send: Send) -> None:
        """What sse-starlette's four tasks do, in this one coroutine, under a server
        that tells the response when its connection is lost and when the server
        shuts down (``writer``): no task waits for ``http.disconnect`` (the writer
        ends the stream), none for the server's exit (the writer starts the drain),
        none sends keep-alive comments (the hub's :class:`Pinger` does). About
        20 KB less per idle stream (docs/performance.md)."""
        assert self.link is not None
        body = cast(AsyncGenerator[bytes, None], self.body_iterator)
        del self._send_lock  # sse-starlette's, for its tasks (~1 KB)
        writer.notify(lost=self.link.lost, shutdown=self.on_shutdown)
        try:
            headers, self.raw_headers = self.raw_headers, []  # (not kept meanwhile)
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": headers}
            )
            del headers
            async for chunk in body:
                try:
                    async with asyncio.timeout(self.send_timeout):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except TimeoutError:
                    self._stalled(scope)
                del chunk  # (not kept while the stream waits)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            writer.notify(lost=None, shutdown=None)
            await body.aclose()  # its cleanup, when the stream ends another way


class _DrainOnExit:
    """The ``shutdown_event`` sse-starlette sets when the server exits: starts the drain."""

    __slots__ = ("_start",)

    def __init__(self, start: Callable[[], None]) -> None:
        self._start = start

    def set(self) -> None:
        self._start()


def sse_response(
    services: Services,
    since: dict[str, Position | None],
    principal: Principal,
    lease: ConnectionLease,
) -> EventSourceResponse:
    """The event stream of ``since``'s rooms, each resumed from its position, for
    an admitted ``principal`` (authenticated, allowed every room, ``on_connect``
    passed) holding ``lease`` (released when the stream ends, or when it is
    dropped before it started)."""
    hub, settings = services.hub, services.settings
    sub = Subscriber(
        new_connection_id(),
        principal.name,
        max_messages=settings.outbox_max_messages,
        max_bytes=settings.outbox_max_bytes,
        sse=True,
    )
    client = Client(services.authority, sub, lease, hooks=services.hooks)
    weakref.finalize(client, lease.release)
    link = _Link(sub)
    response = _EventStream(
        _stream(hub, client, principal, since, settings, link),
        ping=settings.sse_keepalive,
        send_timeout=settings.send_timeout,
        shutdown_event=cast(anyio.Event, _DrainOnExit(services.server_shutdown)),
        shutdown_grace_period=settings.drain_timeout,
    )
    response.conn_id = sub.conn_id
    response.link = link
    response.on_shutdown = services.server_shutdown
    return response
