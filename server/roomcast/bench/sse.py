"""Server-Sent Events subscribers over raw asyncio streams, and an HTTP POST publisher.

:class:`SseChannel` speaks just enough HTTP/1.1 to hold one ``text/event-stream``
response: a GET, the status line and headers, then the body (chunked or not), split into
events. That costs the client far less per event than a general HTTP client, which
matters when one process reads hundreds of streams. :meth:`SseChannel.recv` returns
each event's ``data`` as bytes; ``event: close`` (roomcast ends a stream with it, with
a close code) raises :class:`~.channel.ChannelClosed` with that code, as does the end
of the body (``"eof"``).

:class:`HttpPublishChannel` publishes to SSE peers with ``POST {url}/publish`` over one
keep-alive connection (httpx). A 200 is the acknowledgement: it hands the frame back
through :meth:`~HttpPublishChannel.recv` as if the server had echoed it, so a
publisher treats it like a relaying WebSocket server's echo. One request at a time: two
in flight on separate connections could be relayed in either order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import ssl
from urllib.parse import urlsplit

import httpx

from .channel import ChannelClosed, ChannelError

__all__ = ["HttpPublishChannel", "SseChannel", "split_events"]

MAX_LINE = 1 << 20
CLOSE_TIMEOUT = 2.0


def split_events(buffer: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The complete events at the start of ``buffer`` as ``(event, data)``, and the rest.

    Lines may end in LF or CRLF. Events without data (comments, ``retry:``) are skipped;
    several ``data:`` lines are joined with LF; the default event name is ``message``.
    """
    if b"\r" in buffer:
        buffer = buffer.replace(b"\r\n", b"\n")
    events: list[tuple[bytes, bytes]] = []
    start = 0
    while (end := buffer.find(b"\n\n", start)) >= 0:
        block = buffer[start:end]
        start = end + 2
        event = b"message"
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if not line or line[0] == 0x3A:  # ":" comment
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value
        if data:
            events.append((event, b"\n".join(data)))
    return events, buffer[start:]


class SseChannel:
    """One ``text/event-stream`` response, read event by event."""

    __slots__ = ("buffer", "chunked", "events", "reader", "writer")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunked: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.chunked = chunked
        self.buffer = b""
        self.events: collections.deque[tuple[bytes, bytes]] = collections.deque()

    @classmethod
    async def open(cls, url: str, headers: dict[str, str], timeout: float) -> SseChannel:
        """GET ``url`` and read the response head; :class:`ChannelError` unless 200."""
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
            "User-Agent: roomcast-bench",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        try:
            async with asyncio.timeout(timeout):
                context = ssl.create_default_context() if secure else None
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, limit=MAX_LINE
                )
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
                status_line = await reader.readline()
                head: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    head[name.strip().lower()] = value.strip()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            raise ChannelError(f"GET {url}: {exc!r}", f"connect:{type(exc).__name__}") from exc
        status = status_line.split(b" ", 2)
        code = int(status[1]) if len(status) > 1 and status[1].isdigit() else 0
        chunked = "chunked" in head.get("transfer-encoding", "").lower()
        channel = cls(reader, writer, chunked)
        if code != 200:
            channel.abort()
            raise ChannelError(f"GET {url}: HTTP {code or status_line[:40]!r}", f"http:{code}")
        return channel

    async def _read(self) -> bytes:
        """The next piece of body; b"" at its end."""
        try:
            if not self.chunked:
                return await self.reader.read(65536)
            line = await self.reader.readline()
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                return b""
            data = await self.reader.readexactly(size + 2)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return b""
        return data[:-2]

    async def next_event(self) -> tuple[bytes, bytes]:
        """The next ``(event name, data)``; :class:`ChannelClosed` at the end."""
        while not self.events:
            chunk = await self._read()
            if not chunk:
                raise ChannelClosed("eof", "the stream ended")
            events, self.buffer = split_events(self.buffer + chunk)
            self.events.extend(events)
        return self.events.popleft()

    async def recv(self) -> bytes:
        event, data = await self.next_event()
        if event == b"close":
            try:
                info = json.loads(data)
                raise ChannelClosed(str(info.get("code")), str(info.get("reason", "")))
            except (ValueError, AttributeError):
                raise ChannelClosed("close", data[:80].decode(errors="replace")) from None
        if event == b"error":
            raise ChannelClosed("error", data[:120].decode(errors="replace"))
        return data

    async def send(self, text: str) -> None:
        raise ChannelError("an SSE stream cannot send", "bug")

    async def close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.writer.wait_closed()
        except Exception:
            self.abort()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


class HttpPublishChannel:
    """Publishes by ``POST {base}/publish``; a 200 comes back through :meth:`recv` as
    the frame itself, any other status as an error reply ``{"ok":false,...}``."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url
        self.acks: asyncio.Queue[bytes | None] = asyncio.Queue()

    @classmethod
    async def open(cls, base_url: str, timeout: float) -> HttpPublishChannel:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            trust_env=False,
        )
        return cls(client, base_url.rstrip("/") + "/publish")

    async def send(self, text: str) -> None:
        try:
            response = await self.client.post(
                self.url, content=text.encode(), headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise ChannelClosed("http", repr(exc)) from None
        if response.status_code == 200:
            self.acks.put_nowait(text.encode())
        else:
            error = {"id": None, "ok": False, "error": {"code": f"http_{response.status_code}"}}
            self.acks.put_nowait(json.dumps(error, separators=(",", ":")).encode())

    async def recv(self) -> bytes:
        ack = await self.acks.get()
        if ack is None:
            raise ChannelClosed("closed")
        return ack

    async def close(self) -> None:
        self.acks.put_nowait(None)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.client.aclose()

    def abort(self) -> None:
        self.acks.put_nowait(None)
