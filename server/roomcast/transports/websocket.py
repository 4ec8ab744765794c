"""The WebSocket transport: one reader and one writer per connection.

Before the handshake is accepted, the ``Origin`` is checked against the
allowed origins (cross-site WebSocket hijacking): a page of another site gets
HTTP 403. When the application authenticates, its principal (from
``authenticate``, run as a dependency of the route) and its ``on_connect``
hook decide before the upgrade too: refused, the handshake is answered with
the HTTP status of the refusal (401 without a principal). After the upgrade, a
connection over the per-address limit is closed 3004, and a token from the
handshake (the auth cookie, or a ``token`` query parameter) is verified; the
recommended way is a ``connect`` frame with the token, which keeps it out of
URLs and logs. When credentials are required (``auth=jwt`` with no public
namespace), a connection that has not sent ``connect`` within
``auth_timeout`` is closed 3500.

When uvicorn runs roomcast's protocol (uvicorn_ws.py), the connection takes
direct frame writes, and the server's own shutdown starts roomcast's drain
(3000) instead of closing it with 1012.

The connection's own task (the ASGI endpoint) is the reader: it receives
frames, feeds them to the session and dispatch, and offers replies to the
subscriber. What cannot be written at once is queued in the subscriber's
outbox, and a writer task drains it to the socket, so the hub's fan-out never
waits on this socket. Under direct writes the writer runs only while something
is queued (:class:`_Writer`); through ASGI sends it runs from the first queued
frame to the close.

Closing, by who starts it:

* the peer: the reader sees the disconnect, marks the subscriber gone, and the
  writer stops without sending anything more;
* the protocol (1003, 1009, 3502): the reader marks the subscriber closing with
  the code; the writer sends what is queued (the error replies) and closes;
* the hub (3000 shutdown): the writer sends what is queued and stops, which
  stops the reader (with nothing queued, the close stops it at once); the
  connection's task then sends the close;
* eviction (3001 slow consumer: the outbox overflowed, or the hub's watchdog
  saw one send make no progress for ``send_timeout``): the outbox is dropped
  and the writer task is cancelled even if it is blocked in a send;
  the close is then tried for at most ``slow_close_timeout`` seconds (it can
  only go out once the peer reads again), so the connection is released
  either way;
* a bug (an unexpected error in the reader or the writer; a peer that is gone
  is not one): logged once with its traceback, then the close is 1011.

After both stop, the hub removes the subscriber from its rooms (presence
leave) and unregisters it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..auth import Authority, Principal
from ..hub.subscriber import Subscriber
from ..peerlog import PEER_LOG
from ..protocol.codes import CloseCode, close_reason, http_status_of
from ..protocol.errors import ConnectionClosing, RequestError
from ..protocol.session import Session, SessionLimits
from ..settings import Settings
from .client import Client
from .direct import DIRECT, DirectWriter
from .dispatch import handle_text
from .services import Services

__all__ = ["serve_websocket"]

log = logging.getLogger("roomcast.websocket")


def new_connection_id() -> str:
    return secrets.token_hex(6)


def anonymous_name() -> str:
    return f"anon-{secrets.token_hex(3)}"


def session_limits(settings: Settings) -> SessionLimits:
    return SessionLimits(
        max_frame_bytes=settings.ws_max_size,
        max_payload_bytes=settings.max_payload_bytes,
        max_subscriptions=settings.max_subscriptions,
        max_bad_frames=settings.max_bad_frames,
        max_room_length=settings.max_room_length,
        publish_rate=settings.publish_rate,
        publish_burst=settings.publish_burst,
        max_rate_breaches=settings.max_rate_breaches,
    )


async def _write(ws: WebSocket, sub: Subscriber, batch: int) -> None:
    """Send ``sub``'s outbox to the socket. Under direct writes, until the outbox
    is empty (the next frame queued starts another writer: :class:`_Writer`);
    otherwise, until the subscriber is closing and its outbox empty.

    Under roomcast's uvicorn protocol (``sub.direct``), what is queued goes out
    as one write of up to ``batch`` frames (``ws_write_batch``) while the transport is
    writable; otherwise, and for anything while paused, frame by frame through
    ASGI, which waits for the transport to drain."""
    direct = sub.direct
    try:
        while True:
            frame = sub.pop()
            if frame is None:
                if sub.close_code is not None:
                    return
                if direct is None:
                    await sub.wait()
                elif sub.caught_up():
                    return  # frames go out directly again
                continue
            if direct is not None and direct.ready():
                chunks = [direct.encode(frame)]
                while len(chunks) < batch and (more := sub.pop()) is not None:
                    chunks.append(direct.encode(more))
                direct.transport.write(b"".join(chunks))
                continue
            await ws.send_text(frame)
    except (WebSocketDisconnect, RuntimeError, OSError):  # the peer is gone: nothing to say
        sub.close(CloseCode.GOING_AWAY, peer_gone=True)
    except Exception:  # a bug: loud, once; the connection ends with 1011 (serve_websocket)
        log.exception("writer of connection %s failed", sub.conn_id, extra={"conn": sub.conn_id})
        sub.close(CloseCode.INTERNAL_ERROR, discard=True)


class _Writer:
    """A connection's writer task, run only while there is something to write,
    and the stop of its reader when the connection closes by anyone else's doing.

    The subscriber calls this object (its ``on_wake``) when a frame is queued, or
    it closes, while no writer waits for frames. Under direct writes almost
    nothing is queued (only while the transport is paused, a replay, or a reply
    behind them), so the writer ends as soon as the outbox is empty and an idle
    connection keeps no task, coroutine or future (about 1.4 KB,
    docs/performance.md). Through ASGI sends every frame is queued: the writer,
    once started, waits for the next one as it always did.

    When the hub closes the connection (the drain's 3000, an eviction, a user
    disconnected), or the writer fails, the reader is cancelled: it would
    otherwise wait for the peer's next frame. Not when the reader closed it itself
    (it returns), nor when the peer is gone (it sees the disconnect).
    """

    __slots__ = ("_batch", "_reader", "_task", "_ws", "opened", "reading", "stopped", "sub")

    def __init__(
        self, ws: WebSocket, sub: Subscriber, reader: asyncio.Task[None], batch: int
    ) -> None:
        self._ws = ws
        self.sub = sub
        self._reader = reader
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self.reading = True  # the reader waits for frames: a close by the hub must stop it
        self.stopped = False  # stop_reader cancelled the reader
        self.opened = time.monotonic()

    def __call__(self) -> None:
        task = self._task
        if task is not None and not task.done():
            return  # it will find the frame, or the close
        sub = self.sub
        if sub.queued:
            coro = _write(self._ws, sub, self._batch)
            task = self._task = asyncio.create_task(coro, name=f"roomcast-writer-{sub.conn_id}")
            task.add_done_callback(self._ended)
            sub.on_evict = task.cancel  # even while it is blocked in a send
        elif sub.closing:
            self.stop_reader()

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task is self._task:
            self._task = None
            self.sub.on_evict = None
        if self.sub.closing:
            self.stop_reader()

    def stop_reader(self) -> None:
        reader = self._reader
        if (
            self.reading
            and not self.stopped
            and not self.sub.peer_gone
            and asyncio.current_task() is not reader
        ):
            self.stopped = True
            reader.cancel()

    async def finish(self) -> None:
        """Once the reader is done (and the subscriber closing): wait until the
        writer has sent what is queued; cancel it if the peer is gone (it may be
        blocked in a send that can never finish)."""
        self.reading = False
        task = self._task
        if task is None:
            return
        if self.sub.peer_gone:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _settle(client: Client, timeout: float) -> None:
    """Publishes already taken are answered before the close frame."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await client.inflight.settle()


async def _close(ws: WebSocket, code: CloseCode, timeout: float) -> None:
    """Send the close frame; give up after ``timeout`` (a peer that stopped reading)."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError, TimeoutError):
        async with asyncio.timeout(timeout):
            await ws.close(code, close_reason(code))


def handshake_token(ws: WebSocket, authority: Authority) -> str | None:
    """A token from the auth cookie or the ``token`` query parameter."""
    return ws.query_params.get("token") or ws.cookies.get(authority.cookie) or None


async def refuse_handshake(ws: WebSocket, status: int, detail: str) -> None:
    """Answer the upgrade with HTTP ``status`` and a JSON ``detail``, where the
    server can send one (uvicorn's ``websocket.http.response``); elsewhere the
    handshake is refused with 403."""
    if "websocket.http.response" in (ws.scope.get("extensions") or {}):
        await ws.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
    else:
        await ws.close(CloseCode.POLICY)


async def _admit_before_upgrade(
    ws: WebSocket, services: Services, principal: Principal | None
) -> bool:
    """When the application authenticates: a principal, and ``on_connect``'s yes."""
    if principal is None:
        await refuse_handshake(ws, 401, "not authenticated")
        return False
    try:
        await services.hooks.connect(principal)
    except RequestError as exc:
        await refuse_handshake(ws, http_status_of(exc.code), exc.message)
        return False
    return True


async def _open(ws: WebSocket, services: Services, principal: Principal | None) -> Client | None:
    """Admit the connection: the origin, the application's principal and
    ``on_connect`` (before the upgrade), then the drain, the limits and a token
    from the handshake. None when it was refused or closed."""
    hub, settings, authority = services.hub, services.settings, services.authority
    origin, host_header = ws.headers.get("origin"), ws.headers.get("host")
    if not authority.origins.allows(origin, host_header, scheme=ws.url.scheme):
        PEER_LOG.info("refused a WebSocket from origin %.100r", origin)  # rate-limited
        await ws.close(CloseCode.POLICY)  # before accept: the upgrade is refused with 403
        return None
    host = authority.host_authenticates
    if host and not await _admit_before_upgrade(ws, services, principal):
        return None
    await ws.accept()
    refused: CloseCode | None = CloseCode.SHUTDOWN if hub.draining else None  # go elsewhere
    if refused is None:
        try:
            lease = authority.limiter.lease(ws.client.host if ws.client else None)
        except ConnectionClosing as exc:
            refused = exc.close_code
    if refused is not None:
        await _close(ws, refused, settings.slow_close_timeout)
        if host and principal is not None:
            await services.hooks.disconnect(principal)  # its on_connect passed
        return None
    sub = Subscriber(
        new_connection_id(),
        anonymous_name(),
        max_messages=settings.outbox_max_messages,
        max_bytes=settings.outbox_max_bytes,
    )
    token = handshake_token(ws, authority)
    max_inflight = settings.max_inflight_publishes
    client = Client(authority, sub, lease, token, max_inflight, hooks=services.hooks)
    try:
        if host and principal is not None:
            client.connected = principal  # on_connect passed before the upgrade
            client.adopt(principal)
        elif token is not None:
            await client.login(token, None)
    except ConnectionClosing as exc:
        client.release()
        await _close(ws, exc.close_code, settings.slow_close_timeout)
        await client.disconnected()
        return None
    return client


async def serve_websocket(
    ws: WebSocket,
    services: Services,
    principal: Principal | None = None,
    *,
    forget_headers: bool = False,
) -> None:
    """Run one WebSocket connection from the handshake to cleanup. ``principal``:
    what the application's ``authenticate`` made of the handshake, if it has one.
    ``forget_headers``: nothing but roomcast sees this connection's scope (the
    standalone app), so its request headers are dropped once it is admitted.

    This coroutine is the connection's reader: it receives frames, feeds them to
    the session and dispatch, until the peer leaves or the connection must
    close. Every coroutine suspended while a connection is idle costs its frame
    for the connection's life, so the reading loop is here, not in a function of
    its own; what runs only at the start and the end is."""
    client = await _open(ws, services, principal)
    if client is None:
        return
    _let_go(ws, headers=forget_headers)
    hub, settings, sub = services.hub, services.settings, client.sub
    session = Session(_session_limits(settings), sub.rooms)
    writer = _begin(ws, services, client)
    receive = ws._receive  # accepted: the server's own receive, past Starlette's checks
    deadline = asyncio.get_running_loop().time() + settings.auth_timeout
    try:
        while not sub.closing:
            if client.needs_credentials:
                try:
                    async with asyncio.timeout_at(deadline):  # from the accept
                        message = await receive()
                except TimeoutError:
                    sub.close(CloseCode.UNAUTHORIZED)
                    break
            else:
                message = await receive()
            if message["type"] == "websocket.disconnect":
                sub.close(CloseCode.GOING_AWAY, peer_gone=True)
                break
            text = message.get("text")
            del message  # an idle connection keeps neither the last frame nor its text
            try:
                if not isinstance(text, str):
                    session.receive_binary()
                else:
                    await handle_text(text, hub, session, client)
            except ConnectionClosing as exc:
                await _settle(client, settings.slow_close_timeout)
                sub.close(exc.close_code)
                break
            del text
    except asyncio.CancelledError:
        if not writer.stopped:  # not the writer's stop: someone else's cancel
            raise
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()
    except (WebSocketDisconnect, OSError):
        sub.close(CloseCode.GOING_AWAY, peer_gone=True)
    except Exception:  # a bug (dispatch answers request errors itself): loud, then 1011
        log.exception("connection %s failed", sub.conn_id, extra={"conn": sub.conn_id})
        sub.close(CloseCode.INTERNAL_ERROR)
    finally:
        await _end(ws, services, client, writer)


_CACHED = ("_headers", "_url", "_base_url", "_query_params", "_cookies")
"""What Starlette's ``WebSocket`` keeps once asked for its headers, URL, query or
cookies (made again if asked again)."""


def _let_go(ws: WebSocket, *, headers: bool) -> None:
    """Drop what only the handshake needed: what Starlette made of it, and with
    ``headers`` the request headers themselves (several hundred bytes to a few KB
    per connection, held for its life)."""
    kept = vars(ws)
    for name in _CACHED:
        kept.pop(name, None)
    if headers:
        ws.scope["headers"] = ()  # an iterable of pairs, as ASGI has it


_limits: tuple[Settings, SessionLimits] | None = None


def _session_limits(settings: Settings) -> SessionLimits:
    """:func:`session_limits`, made once per settings and shared by the connections."""
    global _limits
    cached = _limits
    if cached is None or cached[0] is not settings:
        cached = _limits = (settings, session_limits(settings))
    return cached[1]


def _peer(ws: WebSocket) -> str | None:
    return f"{ws.client.host}:{ws.client.port}" if ws.client else None


def _begin(ws: WebSocket, services: Services, client: Client) -> _Writer:
    """Set an admitted connection up: direct writes, the hub, its writer."""
    sub = client.sub
    writer_ext: DirectWriter | None = (ws.scope.get("extensions") or {}).get(DIRECT)
    if writer_ext is not None:  # under roomcast's protocol
        writer_ext.on_shutdown = services.server_shutdown
        if writer_ext.usable:
            sub.attach(writer_ext)
    services.note_websocket_path(writer_ext)
    services.hub.register(sub)
    log.info("connection %s opened from %s", sub.conn_id, _peer(ws), extra={"conn": sub.conn_id})
    reader = asyncio.current_task()
    assert reader is not None
    writer = sub.on_wake = _Writer(ws, sub, reader, services.settings.ws_write_batch)
    writer()  # anything queued while it was admitted
    return writer


async def _end(ws: WebSocket, services: Services, client: Client, writer: _Writer) -> None:
    """After the reader: what is queued, the close frame, then the cleanup."""
    sub, settings = client.sub, services.settings
    writer.reading = False
    if not sub.closing:
        sub.close(CloseCode.INTERNAL_ERROR)
    await writer.finish()
    if not sub.peer_gone and sub.close_code is not None:
        await _close(ws, sub.close_code, settings.slow_close_timeout)
    sub.on_wake = sub.on_evict = None
    client.release()
    await services.hub.disconnect(sub)
    await client.disconnected()
    code = None if sub.peer_gone or sub.close_code is None else int(sub.close_code)
    log.info(
        "connection %s closed (%s)", sub.conn_id, "by the peer" if code is None else code,
        extra={"conn": sub.conn_id, "user": sub.user, "code": code,
               "seconds": round(time.monotonic() - writer.opened, 3)},
    )  # fmt: skip
