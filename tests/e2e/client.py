"""A small protocol client for tests: requests with ids, events kept in order."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

RECV_TIMEOUT = 10.0


class Client:
    """One WebSocket connection speaking roomcast protocol v1."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []  # replies :meth:`closed` saw
        self._ids = itertools.count(1)

    @classmethod
    async def open(cls, url: str, name: str | None = None, **kwargs: Any) -> Client:
        client = cls(await connect(url, open_timeout=10, **kwargs))
        if name is not None:
            await client.request("connect", name=name)
        return client

    async def close(self) -> None:
        await self.conn.close()

    async def recv(self, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), timeout)
        frame = json.loads(raw)
        assert isinstance(frame, dict)
        return frame

    async def send(self, frame: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(frame))

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a request; return its reply. Events received meanwhile are kept."""
        rid = next(self._ids)
        await self.send({"op": op, "id": rid, **fields})
        return await self.reply(rid)

    async def reply(self, rid: int | None) -> dict[str, Any]:
        while True:
            frame = await self.recv()
            if "type" in frame:
                self.events.append(frame)
            elif frame.get("id") == rid:
                return frame

    async def event(self, kind: str = "message", timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """The next event of ``kind`` (earlier events of other kinds are dropped)."""
        while True:
            if self.events:
                frame = self.events.pop(0)
            else:
                frame = await self.recv(timeout)
                if "type" not in frame:
                    continue
            if frame["type"] == kind:
                return frame

    async def messages(self, count: int, timeout: float = RECV_TIMEOUT) -> list[dict[str, Any]]:
        return [await self.event("message", timeout) for _ in range(count)]

    async def closed(self, timeout: float = RECV_TIMEOUT) -> int:
        """Wait for the server's close; its code (frames received meanwhile are kept)."""
        closed: ConnectionClosed
        async with asyncio.timeout(timeout):
            try:
                while True:
                    frame = json.loads(await self.conn.recv())
                    (self.events if "type" in frame else self.replies).append(frame)
            except ConnectionClosed as exc:
                closed = exc
        if closed.rcvd is None:
            raise AssertionError("closed without a close frame")
        return closed.rcvd.code


def slow_reader_socket(port: int) -> socket.socket:
    """A connected socket with a tiny receive buffer: a peer that barely reads.

    Loopback buffers otherwise absorb megabytes before the server notices."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock
