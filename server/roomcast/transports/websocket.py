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
frames, feeds them to the session and dispatch, and queues replies in the
subscriber's outbox. A writer task drains that outbox to the socket, so the
hub's fan-out never waits on this socket.

Closing, by who starts it:

* the peer: the reader sees the disconnect, marks the subscriber gone, and the
  writer stops without sending anything more;
* the protocol (1003, 1009, 3502): the reader marks the subscriber closing with
  the code; the writer sends what is queued (the error replies) and closes;
* the hub (3000 shutdown): the writer sends what is queued and stops, which
  stops the reader; the connection's task then sends the close;
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
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..auth import Authority, Principal
from ..hub.hub import Hub
from ..hub.subscriber import Subscriber
from ..peerlog import PEER_LOG
from ..protocol.codes import CloseCode, close_reason, http_status_of
from ..protocol.errors import ConnectionClosing, RequestError
from ..protocol.session import Session, SessionLimits
from ..protocol.wsframe import text_frame
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
    """Drain ``sub``'s outbox to the socket until it is closing and empty.

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
                await sub.wait()
                continue
            if direct is not None and direct.ready():
                chunks = [text_frame(frame.encode())]
                while len(chunks) < batch and (more := sub.pop()) is not None:
                    chunks.append(text_frame(more.encode()))
                direct.write(b"".join(chunks))
                continue
            await ws.send_text(frame)
    except (WebSocketDisconnect, RuntimeError, OSError):  # the peer is gone: nothing to say
        sub.close(CloseCode.GOING_AWAY, peer_gone=True)
    except Exception:  # a bug: loud, once; the connection ends with 1011 (_serve)
        log.exception("writer of connection %s failed", sub.conn_id, extra={"conn": sub.conn_id})
        sub.close(CloseCode.INTERNAL_ERROR, discard=True)


async def _receive(ws: WebSocket, client: Client, deadline: float) -> Message:
    if not client.needs_credentials:
        return await ws.receive()
    async with asyncio.timeout_at(deadline):  # from the accept: frames do not extend it
        return await ws.receive()


async def _read(
    ws: WebSocket,
    hub: Hub,
    session: Session,
    client: Client,
    auth_timeout: float,
    settle_timeout: float,
) -> None:
    """Receive frames until the peer leaves or the connection must close."""
    sub = client.sub
    deadline = asyncio.get_running_loop().time() + auth_timeout
    while not sub.closing:
        try:
            message = await _receive(ws, client, deadline)
        except TimeoutError:
            sub.close(CloseCode.UNAUTHORIZED)
            return
        if message["type"] == "websocket.disconnect":
            sub.close(CloseCode.GOING_AWAY, peer_gone=True)
            return
        text = message.get("text")
        try:
            if not isinstance(text, str):
                session.receive_binary()
            else:
                await handle_text(text, hub, session, client)
        except ConnectionClosing as exc:
            # Publishes already taken are answered before the close frame.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settle_timeout):
                    await client.inflight.settle()
            sub.close(exc.close_code)
            return


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


async def serve_websocket(
    ws: WebSocket, services: Services, principal: Principal | None = None
) -> None:
    """Run one WebSocket connection from the handshake to cleanup. ``principal``:
    what the application's ``authenticate`` made of the handshake, if it has one."""
    client = await _open(ws, services, principal)
    if client is not None:
        await _serve(ws, services, client)


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


async def _serve(ws: WebSocket, services: Services, client: Client) -> None:
    """Read and write an admitted connection until it closes, then clean up."""
    hub, settings, sub = services.hub, services.settings, client.sub
    session = Session(session_limits(settings), sub.rooms)
    writer_ext: DirectWriter | None = (ws.scope.get("extensions") or {}).get(DIRECT)
    if writer_ext is not None:  # under roomcast's protocol
        writer_ext.on_shutdown = services.server_shutdown
        if writer_ext.usable:
            sub.direct = writer_ext
    services.note_websocket_path(writer_ext)
    hub.register(sub)
    opened = time.monotonic()
    peer = f"{ws.client.host}:{ws.client.port}" if ws.client else None
    log.info("connection %s opened from %s", sub.conn_id, peer, extra={"conn": sub.conn_id})
    reader = asyncio.current_task()
    assert reader is not None
    writing = _write(ws, sub, settings.ws_write_batch)
    writer = asyncio.create_task(writing, name=f"roomcast-writer-{sub.conn_id}")
    sub.on_evict = writer.cancel
    reading = True

    def writer_done(_: asyncio.Task[None]) -> None:
        # The writer ends on its own only when the hub closed this subscriber
        # (eviction or shutdown): stop waiting for frames from the peer.
        if reading and not sub.peer_gone:
            reader.cancel()

    writer.add_done_callback(writer_done)
    try:
        await _read(ws, hub, session, client, settings.auth_timeout, settings.slow_close_timeout)
    except asyncio.CancelledError:
        if not (sub.closing and writer.done()):
            raise
        reader.uncancel()
    except (WebSocketDisconnect, OSError):
        sub.close(CloseCode.GOING_AWAY, peer_gone=True)
    except Exception:  # a bug (dispatch answers request errors itself): loud, then 1011
        log.exception("connection %s failed", sub.conn_id, extra={"conn": sub.conn_id})
        sub.close(CloseCode.INTERNAL_ERROR)
    finally:
        reading = False
        if not sub.closing:
            sub.close(CloseCode.INTERNAL_ERROR)
        if sub.peer_gone:
            writer.cancel()  # it may be blocked in a send that can never finish
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
        if not sub.peer_gone and sub.close_code is not None:
            await _close(ws, sub.close_code, settings.slow_close_timeout)
        sub.on_evict = None
        client.release()
        await hub.disconnect(sub)
        await client.disconnected()
        code = None if sub.peer_gone or sub.close_code is None else int(sub.close_code)
        log.info(
            "connection %s closed (%s)", sub.conn_id, "by the peer" if code is None else code,
            extra={"conn": sub.conn_id, "user": sub.user, "code": code,
                   "seconds": round(time.monotonic() - opened, 3)},
        )  # fmt: skip
