"""SSE streams written directly (transports/sse.py with uvicorn_http.py's writer),
against a real server on loopback under both HTTP protocols, read by a raw
client that parses the chunked body: a stream of one room gets every event once
and in order, written straight to its transport, through bursts, keep-alive
comments and a pause of a reader that stopped reading, and ends with its close
event and the last chunk, nothing after; a stream of several rooms keeps its own
ids and its generator."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import pytest
from fastapi import FastAPI, Request

from roomcast import Roomcast, Settings
from roomcast.hub.subscriber import Subscriber
from roomcast.testing import LiveServer
from roomcast.transports.handshake import HTTPProtocol
from roomcast.transports.uvicorn_http import H11Protocol

pytestmark = pytest.mark.timeout(60)

PROTOCOLS = pytest.mark.parametrize("http", ["httptools", "h11"])


def h11_protocol(**kwargs: Any) -> H11Protocol:
    return H11Protocol(**kwargs)


@asynccontextmanager
async def running(
    http: str, middleware: bool = False, **settings: Any
) -> AsyncIterator[tuple[Roomcast, LiveServer]]:
    """A host app with roomcast's router under roomcast's HTTP protocol (httptools
    or h11), or ``uvicorn`` (uvicorn's own: no direct writer, sse-starlette's tasks);
    ``middleware``: with a Starlette ``BaseHTTPMiddleware``, which hands every
    response message to a task of its own."""
    rc = Roomcast(Settings(presence=False, **settings))
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router)
    if middleware:

        @app.middleware("http")
        async def passthrough(request: Request, call_next: Any) -> Any:
            return await call_next(request)

    protocols: dict[str, Any] = {"httptools": HTTPProtocol(), "h11": h11_protocol}
    async with LiveServer(app, http=protocols.get(http, "httptools")) as server:
        yield rc, server


class Stream:
    """An event stream read from a raw socket: h11 undoes the chunked framing (and
    fails on any byte that is not a whole chunk), SSE blocks are split here."""

    def __init__(self, sock: socket.socket, reader: asyncio.StreamReader) -> None:
        self.sock, self.reader = sock, reader
        self.conn = h11.Connection(h11.CLIENT)
        self.text = ""
        self.ended = False  # the last chunk came
        self.comments = 0  # keep-alive comments seen

    @classmethod
    async def open(cls, port: int, path: str, rcvbuf: int | None = None) -> Stream:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        stream = cls(sock, reader)
        request = h11.Request(method="GET", target=path, headers=[("Host", "x")])
        writer.write(stream.conn.send(request) + stream.conn.send(h11.EndOfMessage()))
        stream.writer = writer
        return stream

    @classmethod
    async def subscribed(
        cls, port: int, path: str = "/rooms/feed/events", rooms: int = 1, rcvbuf: int | None = None
    ) -> Stream:
        """:meth:`open`, then read its ``subscribed`` event (one per room)."""
        stream = await cls.open(port, path, rcvbuf)
        for _ in range(rooms):
            assert (await stream.event())["event"] == "subscribed"
        return stream

    async def _more(self) -> None:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("closed before the last chunk")
                self.conn.receive_data(data)
            elif isinstance(event, h11.Response):
                assert event.status_code == 200
            elif isinstance(event, h11.Data):
                self.text += event.data.decode().replace("\r\n", "\n")  # (pings: CRLF)
                return
            elif isinstance(event, h11.EndOfMessage):
                self.ended = True
                return
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def event(self, timeout: float = 10) -> dict[str, str]:
        """The next event's fields (keep-alive comments skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                block, sep, rest = self.text.partition("\n\n")
                if sep:
                    self.text = rest
                    lines = [line for line in block.split("\n") if not line.startswith(":")]
                    self.comments += not lines
                    if lines:
                        return dict(line.split(": ", 1) for line in lines)
                    continue
                if self.ended:
                    raise EOFError("the stream ended")
                await self._more()

    async def until_comments(self, count: int, timeout: float = 10) -> None:
        """Read (dropping events) until ``count`` keep-alive comments were seen."""
        async with asyncio.timeout(timeout):
            while self.comments < count:
                block, sep, rest = self.text.partition("\n\n")
                if sep:
                    self.text = rest
                    self.comments += block.startswith(":")
                else:
                    await self._more()

    async def messages(self, count: int, timeout: float = 20) -> list[int]:
        """The offsets of the next ``count`` message events."""
        offsets = []
        while len(offsets) < count:
            fields = await self.event(timeout)
            if fields.get("event") == "message":
                data = json.loads(fields["data"])
                assert fields["id"] == f"{data['epoch']}:{data['offset']}"
                offsets.append(data["offset"])
        return offsets

    async def end(self) -> dict[str, str]:
        """The close event; then the last chunk, and nothing after it."""
        close = await self.event()
        assert close["event"] == "close", close
        while not self.ended:
            await self._more()
        assert self.text == ""
        assert self.conn.next_event() is h11.NEED_DATA  # no byte after the last chunk
        try:
            extra = await asyncio.wait_for(self.reader.read(1), 0.3)
        except TimeoutError:
            extra = b""
        assert extra == b""
        return close

    async def end_code(self) -> int:
        """:meth:`end`: the close event's code."""
        return int(json.loads((await self.end())["data"])["code"])

    def close(self) -> None:
        self.writer.close()


async def bursts_arrive(
    rc: Roomcast, server: LiveServer, stream: Stream, first: int, count: int, together: int
) -> None:
    """Publish ``count`` events to ``feed``, ``together`` per loop iteration, while
    ``stream`` reads them: every one arrives once, in order, from offset ``first``."""
    burst = asyncio.ensure_future(
        server.acall(publish(rc, "feed", count, together=together), timeout=60)
    )
    assert await stream.messages(count, timeout=60) == list(range(first, first + count))
    await burst


async def drained(rc: Roomcast, server: LiveServer, stream: Stream) -> None:
    """Drain ``rc``: ``stream`` ends with a close event of 3000, then its last chunk."""
    await server.acall(rc.drain())
    assert await stream.end_code() == 3000


async def the_stream_sub(rc: Roomcast) -> Subscriber:
    (sub,) = [s for s in rc.services.hub._subscribers if s.sse]
    return sub


async def stream_subs(rc: Roomcast) -> int:
    return sum(s.sse for s in rc.services.hub._subscribers)


async def publish(rc: Roomcast, room: str, count: int, size: int = 10, together: int = 1) -> None:
    """``count`` publishes, ``together`` at a time (one loop iteration: one batch)."""
    for start in range(0, count, together):
        batch = range(start, min(count, start + together))
        await asyncio.gather(*(rc.publish(room, {"n": n, "pad": "x" * size}) for n in batch))


@PROTOCOLS
async def test_a_one_room_stream_gets_every_event_once_in_order_written_directly(
    http: str,
) -> None:
    async with running(http, sse_keepalive=0.01) as (rc, server):
        stream = await Stream.subscribed(server.port)
        sub = await server.acall(the_stream_sub(rc))
        pops = sub.pops
        await server.acall(publish(rc, "feed", 20))  # one at a time
        assert await stream.messages(20) == list(range(1, 21))
        assert sub.direct is not None
        assert sub.pops == pops, "the outbox took events: they were not written directly"
        # Bursts (several events per loop iteration, one write each), with
        # keep-alive comments sent through ASGI in between.
        await bursts_arrive(rc, server, stream, 21, 3000, together=50)
        await drained(rc, server, stream)
        stream.close()


@PROTOCOLS
async def test_a_reader_that_stops_reading_is_paused_then_catches_up_in_order(http: str) -> None:
    async with running(http, send_timeout=30, outbox_max_bytes=64 * 1024 * 1024) as (rc, server):
        stream = await Stream.subscribed(server.port, rcvbuf=4096)
        sub = await server.acall(the_stream_sub(rc))
        sent = 0
        while sub.sink is not None:  # not reading: the transport pauses
            await server.acall(publish(rc, "feed", 10, size=20_000))
            sent += 10
            assert sent < 5000, "writing never paused"
        assert sub.direct is not None
        assert not sub.direct.ready()
        await server.acall(publish(rc, "feed", 50, size=20_000))  # queued meanwhile
        assert await stream.messages(sent + 50, timeout=30) == list(range(1, sent + 51))
        await server.acall(publish(rc, "feed", 5))
        assert await stream.messages(5) == list(range(sent + 51, sent + 56))
        assert sub.sink is not None  # caught up: written directly again
        stream.close()


async def test_a_stream_of_several_rooms_keeps_its_ids_and_is_not_written_directly() -> None:
    async with running("httptools", sse_keepalive=0.05) as (rc, server):
        stream = await Stream.subscribed(server.port, "/events?room=a&room=b", rooms=2)
        sub = await server.acall(the_stream_sub(rc))
        await server.acall(rc.publish("a", 1))
        await server.acall(rc.publish("b", 2))
        await server.acall(rc.publish("a", 3))
        ids = [(await stream.event())["id"] for _ in range(3)]
        assert [i.split(";")[0].split(":")[-1] for i in ids] == ["1", "1", "2"]
        assert ids[-1].startswith("a=")
        assert ";b=" in ids[-1]
        assert ids[-1].endswith(":1")
        assert sub.direct is None
        assert sub.sink is None
        await stream.until_comments(2)  # keep-alive comments, through its generator
        stream.close()


@PROTOCOLS
async def test_a_stream_whose_client_goes_away_ends_and_leaves_the_hub(http: str) -> None:
    async with running(http) as (rc, server):
        stream = await Stream.subscribed(server.port)
        assert await server.acall(stream_subs(rc)) == 1
        stream.close()
        for _ in range(200):
            if await server.acall(stream_subs(rc)) == 0:
                break
            await asyncio.sleep(0.02)
        assert await server.acall(stream_subs(rc)) == 0


@PROTOCOLS
async def test_when_uvicorn_shuts_down_an_open_stream_ends_with_close_3000(http: str) -> None:
    # A host app under uvicorn's own shutdown (no roomcast signal handlers): the
    # protocol tells the stream, which starts roomcast's drain.
    async with running(http) as (_rc, server):
        stream = await Stream.subscribed(server.port)
        stopping = asyncio.ensure_future(asyncio.to_thread(server.stop))
        assert await stream.end_code() == 3000
        await stopping
        stream.close()


async def test_under_uvicorns_own_protocol_streams_go_through_sse_starlette() -> None:
    async with running("uvicorn") as (rc, server):
        stream = await Stream.subscribed(server.port)
        sub = await server.acall(the_stream_sub(rc))
        await server.acall(publish(rc, "feed", 50, together=10))
        assert await stream.messages(50) == list(range(1, 51))
        assert sub.direct is None
        await drained(rc, server, stream)
        stream.close()


@PROTOCOLS
async def test_behind_a_middleware_that_holds_each_body_events_still_arrive_once_in_order(
    http: str,
) -> None:
    async with running(http, middleware=True, sse_keepalive=0.01) as (rc, server):
        stream = await Stream.subscribed(server.port)
        await bursts_arrive(rc, server, stream, 1, 2000, together=20)
        await drained(rc, server, stream)
        stream.close()
