"""Channels: one client connection, as frames in and text out, whatever the transport.

A :class:`Channel` yields each received frame as bytes from :meth:`~Channel.recv` and
sends text with :meth:`~Channel.send`. :class:`WsChannel` is a WebSocket (the
``websockets`` asyncio client); the SSE stream, the HTTP publisher and the Socket.IO
client live in :mod:`.sse` and :mod:`.sio`.

Exceptions::

    ChannelClosed    the connection ended; ``code`` says how ("3001", "1006", "eof", ...)
    ChannelError     it could not be opened, or a request on it failed
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

__all__ = ["Channel", "ChannelClosed", "ChannelError", "WsChannel", "close_code"]

CLOSE_TIMEOUT = 2.0


class ChannelError(Exception):
    """A connection could not be opened, or the server refused a request on it.

    ``kind`` is a short key for counting errors alike (e.g. ``connect:TimeoutError``).
    """

    def __init__(self, message: str, kind: str = "connect") -> None:
        super().__init__(message)
        self.kind = kind


class ChannelClosed(ChannelError):
    """The connection ended. ``code`` is the close code the server sent as text, or
    ``"1006"`` (no close frame), ``"eof"`` (an HTTP stream ended), ``"disconnect"``."""

    def __init__(self, code: str, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason}".strip(), kind=f"closed:{code}")
        self.code = code
        self.reason = reason


class Channel(Protocol):
    """One connection to the server under test."""

    async def recv(self) -> bytes:
        """The next frame (or SSE event data); raises :class:`ChannelClosed` at the end."""
        ...

    async def send(self, text: str) -> None:
        """Send one frame (or publish it); raises :class:`ChannelClosed` if closed."""
        ...

    async def close(self) -> None:
        """Close politely, within a bounded time; never raises."""
        ...

    def abort(self) -> None:
        """Drop the connection at once."""
        ...


def close_code(exc: ConnectionClosed) -> ChannelClosed:
    """The :class:`ChannelClosed` for a ``websockets`` close."""
    if exc.rcvd is None:
        return ChannelClosed("1006", "no close frame")
    return ChannelClosed(str(exc.rcvd.code), exc.rcvd.reason)


class WsChannel:
    """A WebSocket connection: text frames in and out, read as bytes."""

    __slots__ = ("ws",)

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, timeout: float) -> WsChannel:
        """Open ``url``: no compression, no client pings (the server's are answered),
        no receive-queue limit, so the client reads as fast as it can."""
        try:
            ws = await connect(
                url,
                compression=None,
                max_queue=None,
                max_size=None,
                ping_interval=None,
                proxy=None,
                open_timeout=timeout,
                close_timeout=CLOSE_TIMEOUT,
                user_agent_header="roomcast-bench",
            )
        except (OSError, TimeoutError) as exc:
            raise ChannelError(f"connect {url}: {exc!r}", f"connect:{type(exc).__name__}") from exc
        except Exception as exc:  # websockets' InvalidHandshake & co.
            kind = f"handshake:{type(exc).__name__}"
            raise ChannelError(f"handshake {url}: {exc}", kind) from exc
        return cls(ws)

    async def recv(self) -> bytes:
        try:
            frame = await self.ws.recv(decode=False)
        except ConnectionClosed as exc:
            raise close_code(exc) from None
        return frame if isinstance(frame, bytes) else frame.encode()

    async def send(self, text: str) -> None:
        try:
            await self.ws.send(text)
        except ConnectionClosed as exc:
            raise close_code(exc) from None

    async def close(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT + 1):
                await self.ws.close()
        except Exception:
            self.abort()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.transport.abort()
