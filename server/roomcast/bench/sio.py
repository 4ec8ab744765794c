"""A Socket.IO client as a channel, for python-socketio peer servers.

The peer's contract: a client emits ``join`` (no data) and the server puts it in room
``bench``; a client emits ``publish`` with a frame (a string) and the server emits
``message`` with that string to room ``bench``, the sender included. So a Socket.IO
channel's :meth:`~SioChannel.send` emits ``publish`` and :meth:`~SioChannel.recv` yields
the ``message`` strings as bytes.

python-socketio is an optional extra (``pip install 'roomcast[bench]'``), imported only
when a Socket.IO channel is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import Any

from .channel import ChannelClosed, ChannelError

__all__ = ["SioChannel", "load_socketio"]

CLOSE_TIMEOUT = 2.0
MISSING = (
    "--protocol socketio needs python-socketio's asyncio client: "
    "pip install 'roomcast[bench]' (or 'python-socketio[asyncio_client]')"
)


def load_socketio() -> Any:
    """The ``socketio`` module; :class:`ChannelError` with install advice if missing."""
    try:
        module = importlib.import_module("socketio")
        importlib.import_module("aiohttp")  # the asyncio client's transport
    except ImportError:
        raise ChannelError(MISSING, "missing:python-socketio") from None
    return module


class SioChannel:
    """A Socket.IO connection that has joined the peer's ``bench`` room."""

    __slots__ = ("client", "queue")

    def __init__(self, client: Any, queue: asyncio.Queue[bytes | None]) -> None:
        self.client = client
        self.queue = queue

    @classmethod
    async def open(cls, url: str, timeout: float, join: bool = True) -> SioChannel:
        socketio = load_socketio()
        client = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def on_message(data: Any) -> None:
            queue.put_nowait(data.encode() if isinstance(data, str) else str(data).encode())

        def on_disconnect(*args: Any) -> None:
            queue.put_nowait(None)

        client.on("message", on_message)
        client.on("disconnect", on_disconnect)
        try:
            async with asyncio.timeout(timeout):
                await client.connect(url, transports=["websocket"], wait_timeout=timeout)
                if join:
                    await client.emit("join")
        except Exception as exc:
            with contextlib.suppress(Exception):
                await client.disconnect()
            kind = f"connect:{type(exc).__name__}"
            raise ChannelError(f"socket.io connect {url}: {exc!r}", kind) from exc
        return cls(client, queue)

    async def recv(self) -> bytes:
        frame = await self.queue.get()
        if frame is None:
            self.queue.put_nowait(None)  # every later recv sees the end too
            raise ChannelClosed("disconnect", "socket.io disconnected")
        return frame

    async def send(self, text: str) -> None:
        try:
            await self.client.emit("publish", text)
        except Exception as exc:
            raise ChannelClosed("disconnect", repr(exc)) from None

    async def close(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.client.disconnect()
        except Exception:
            self.abort()

    def abort(self) -> None:
        """Stop reading; the client's socket closes with the event loop."""
        self.queue.put_nowait(None)
