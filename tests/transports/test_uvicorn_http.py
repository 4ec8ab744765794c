"""The direct writer roomcast's uvicorn HTTP protocols put in each HTTP/1.1
request's scope (transports/uvicorn_http.py), run for real under both protocols
(httptools and h11) with a raw client that parses the chunked body: chunks
written directly and through ASGI arrive whole and in order, the body ends
cleanly, and the writer is ready only while a chunked body is open, writable and
has nothing of the application's still on its way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import h11
import pytest
import uvicorn

from roomcast.transports import uvicorn_http
from roomcast.transports.direct import DIRECT
from roomcast.transports.uvicorn_http import H11Protocol, HttpToolsProtocol, ResponseWriter

from .test_uvicorn_ws import free_port

pytestmark = pytest.mark.timeout(20)

PROTOCOLS = pytest.mark.parametrize(
    "protocol", [HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"]
)

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/x")]}


def body(data: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


class App:
    """ASGI app: each path is one scenario; what the writer said goes to ``seen``."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, Any]] = {}
        self.writers: dict[str, ResponseWriter] = {}
        self.go = asyncio.Event()  # the test lets a waiting scenario go on
        self.calls: list[bool] = []  # ready() at each watch callback

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        direct = (scope.get("extensions") or {}).get(DIRECT)
        seen = self.seen[path] = {"writer": direct is not None}
        if direct is not None:
            self.writers[path] = direct
            seen["before start"] = direct.ready()
        scenario = getattr(self, path.strip("/").replace("-", "_"))
        await scenario(direct, seen, receive, send)

    async def plain(self, direct: Any, seen: dict[str, Any], receive: Any, send: Any) -> None:
        await send({**START, "headers": [(b"content-length", b"2")]})
        seen["started"] = direct is not None and direct.ready()
        await send(body(b"ok", more=False))

    async def stream(self, direct: Any, seen: dict[str, Any], receive: Any, send: Any) -> None:
        await send(START)
        seen["started"] = direct.ready()
        direct.transport.write(direct.encode("one\n"))
        two = b"two\n"
        direct.sending(two)
        seen["sending"] = direct.ready()
        await send(body(two))
        seen["sent"] = direct.ready()
        direct.transport.write(direct.encode("three\n") + direct.encode("four\n"))
        await send(body(b"", more=False))
        seen["ended"] = direct.ready()

    async def watch(self, direct: Any, seen: dict[str, Any], receive: Any, send: Any) -> None:
        direct.watch(lambda: self.calls.append(direct.ready()))
        await send(START)
        await self.go.wait()
        await send(body(b"end", more=False))

    async def watch_lost(self, direct: Any, seen: dict[str, Any], receive: Any, send: Any) -> None:
        await send(START)
        direct.watch(lambda: self.calls.append(direct.ready()))
        self.go.set()
        while (await receive())["type"] != "http.disconnect":
            pass

    async def held(self, direct: Any, seen: dict[str, Any], receive: Any, send: Any) -> None:
        """Bodies go through a middleware-like task that sends them later (as
        Starlette's BaseHTTPMiddleware does); ``copied``: and copies them."""
        copy = seen["copy"] = self.go.is_set()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def pump() -> None:
            while True:
                message = await queue.get()
                await asyncio.sleep(0.05)
                data = message.get("body")
                if copy and data:
                    message = {**message, "body": bytes(bytearray(data))}
                await send(message)

        task = asyncio.ensure_future(pump())
        await send(START)
        direct.watch(lambda: self.calls.append(direct.ready()))
        chunk = b"held\n"
        direct.sending(chunk)
        await queue.put(body(chunk))
        seen["handed over"] = direct.ready()
        await asyncio.sleep(0.3)
        seen["written"] = direct.ready()
        await queue.put(body(b"", more=False))
        await asyncio.sleep(0.2)
        task.cancel()


@contextlib.asynccontextmanager
async def serving(protocol: type, app: App) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield server, port
    finally:
        server.should_exit = True
        await task


class RawClient:
    """One keep-alive connection, its responses parsed by h11 from the raw bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, path: str, method: str = "GET") -> tuple[h11.Response, bytes]:
        """Send a request; its response and whole body (up to the last chunk)."""
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        request = h11.Request(method=method, target=path, headers=[("Host", "x")])
        self.writer.write(self.conn.send(request) + self.conn.send(h11.EndOfMessage()))
        response, data = None, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return response, data
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def nothing_more(self) -> bool:
        """No byte follows the last response for a while (the connection kept alive)."""
        try:
            extra = await asyncio.wait_for(self.reader.read(1), 0.2)
        except TimeoutError:
            return True
        return extra == b""

    def close(self) -> None:
        self.writer.close()


async def start_watch(
    app: App, port: int
) -> tuple[RawClient, asyncio.Future[tuple[h11.Response, bytes]]]:
    """A new client with a ``/watch`` request under way: the app has started its
    response (its watcher was called once)."""
    client = await RawClient.open(port)
    request = asyncio.ensure_future(client.get("/watch"))
    while not app.calls:
        await asyncio.sleep(0.01)
    return client, request


@PROTOCOLS
async def test_direct_chunks_and_asgi_sends_arrive_whole_in_order_and_the_body_ends_cleanly(
    protocol: type,
) -> None:
    app = App()
    async with serving(protocol, app) as (_, port):
        client = await RawClient.open(port)
        response, data = await client.get("/stream")
        assert (b"transfer-encoding", b"chunked") in response.headers
        assert data == b"one\ntwo\nthree\nfour\n"
        assert await client.nothing_more()
        # The connection is still good for the next request: nothing was written
        # after the last chunk.
        response, data = await client.get("/plain")
        assert (response.status_code, data) == (200, b"ok")
        client.close()
    assert app.seen["/stream"] == {
        "writer": True,
        "before start": False,
        "started": True,
        "sending": False,  # a body passed to send is not written yet
        "sent": True,
        "ended": False,
    }
    assert app.seen["/plain"] == {"writer": True, "before start": False, "started": False}


@PROTOCOLS
async def test_the_watcher_hears_of_the_start_pause_resume_completion_and_loss(
    protocol: type,
) -> None:
    app = App()
    async with serving(protocol, app) as (server, port):
        client, request = await start_watch(app, port)
        assert app.calls == [True]  # the response started
        (connection,) = server.server_state.connections
        connection.pause_writing()  # as asyncio does past the high-water mark
        assert app.calls[-1] is False
        connection.resume_writing()
        assert app.calls[-1] is True
        app.go.set()
        assert (await request)[1] == b"end"
        assert app.calls == [True, False, True, False]  # ... and the response completed
        app.calls.clear()
        app.go.clear()
        lost = asyncio.ensure_future(client.get("/watch-lost"))
        await app.go.wait()
        client.close()
        with contextlib.suppress(Exception):
            await lost
        for _ in range(100):
            if app.calls:
                break
            await asyncio.sleep(0.01)
        assert app.calls == [False]  # the connection was lost
        assert not app.writers["/watch-lost"].ready()


@PROTOCOLS
async def test_no_writer_is_ready_for_http_1_0_a_content_length_or_a_head(protocol: type) -> None:
    app = App()
    async with serving(protocol, app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /plain HTTP/1.0\r\n\r\n")
        assert (await reader.read()).endswith(b"ok")
        writer.close()
        assert app.seen.pop("/plain")["writer"] is False  # HTTP/1.0: none at all
        client = await RawClient.open(port)
        assert (await client.get("/plain"))[1] == b"ok"
        assert app.seen["/plain"]["started"] is False  # a Content-Length body
        _response, data = await client.get("/plain", method="HEAD")
        assert data == b""
        assert app.seen["/plain"]["started"] is False
        client.close()


@PROTOCOLS
@pytest.mark.parametrize("copied", [False, True], ids=["passed-on", "copied"])
async def test_a_body_a_middleware_holds_back_or_copies_keeps_direct_writes_off(
    protocol: type, copied: bool
) -> None:
    app = App()
    if copied:
        app.go.set()
    async with serving(protocol, app) as (_, port):
        client = await RawClient.open(port)
        assert (await client.get("/held"))[1] == b"held\n"
        client.close()
    seen = app.seen["/held"]
    assert seen["handed over"] is False
    # Written as it was handed over: ready again (and the watcher was told); changed
    # on the way: direct writes would bypass the change, so they stay off.
    assert seen["written"] is (not copied)
    assert (True in app.calls) is (not copied)


async def test_when_uvicorn_changed_no_request_gets_a_writer_and_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing: Callable[..., list[str]] = lambda protocol, cycle: ["cycle.chunked_encoding"]  # noqa: E731
    monkeypatch.setattr(uvicorn_http, "missing_names", missing)
    monkeypatch.setattr(uvicorn_http._Responses, "direct_ok", None)
    caplog.set_level(logging.WARNING, "roomcast.sse")
    app = App()
    async with serving(HttpToolsProtocol, app) as (_, port):
        client = await RawClient.open(port)
        for _ in range(2):
            assert (await client.get("/plain"))[1] == b"ok"
            assert app.seen["/plain"]["writer"] is False
        client.close()
    (warning,) = [r for r in caplog.records if r.name == "roomcast.sse"]
    assert "SSE fast path off" in warning.getMessage()
    assert "no cycle.chunked_encoding" in warning.getMessage()


@PROTOCOLS
async def test_the_installed_uvicorn_and_h11_have_every_name_the_writer_reads(
    protocol: type,
) -> None:
    app = App()
    async with serving(protocol, app) as (server, port):
        client, request = await start_watch(app, port)
        (connection,) = server.server_state.connections
        assert uvicorn_http.missing_names(connection, connection.cycle) == []
        app.go.set()
        await request
        client.close()
