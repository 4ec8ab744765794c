"""roomcast's uvicorn protocol, run for real: the direct writer, the lighter inbox
and writable flag, what it lets go of once the handshake is done, and what it
leaves alone when uvicorn or websockets no longer have the names it uses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.asyncio.client import connect

from roomcast.protocol.wsframe import text_frame
from roomcast.transports.direct import DIRECT
from roomcast.transports.uvicorn_ws import RoomcastWebSocketProtocol, missing_names

pytestmark = pytest.mark.timeout(20)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo text frames; ``direct`` answers with a pre-built frame written directly."""
    assert scope["type"] == "websocket"
    ws = WebSocket(scope, receive, send)
    await ws.accept()
    direct = scope["extensions"].get(DIRECT)
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text") or ""
        if text == "direct?":
            usable = direct is not None and direct.usable and direct.ready()
            await ws.send_text("yes" if usable else "no")
        elif text.startswith("direct:"):
            direct.transport.write(text_frame(text[7:].encode()) + text_frame(b"second"))
        elif text == "take over shutdown":
            direct.on_shutdown = lambda: asyncio.ensure_future(ws.close(3000, "server shutdown"))
            await ws.send_text("taken")
        else:
            await ws.send_text(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[tuple[uvicorn.Server, str]]:
    port = free_port()
    config = uvicorn.Config(
        echo_app, host="127.0.0.1", port=port, ws=RoomcastWebSocketProtocol,
        lifespan="off", log_level="warning", **options,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield server, f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        await task


def the_protocol(server: uvicorn.Server) -> RoomcastWebSocketProtocol:
    (protocol,) = [c for c in server.server_state.connections
                   if isinstance(c, RoomcastWebSocketProtocol)]  # fmt: skip
    return protocol


async def test_after_the_handshake_the_request_and_response_are_let_go() -> None:
    async with serving() as (server, url), connect(url, compression=None) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        protocol = the_protocol(server)
        assert protocol.request is None
        assert protocol.response is None
        frame = protocol.conn.parser.gi_frame
        assert frame is not None
        assert "request" not in frame.f_locals  # the parser that kept it is gone
        for n in range(50):  # the fresh parser reads frames of every size
            await ws.send("x" * (n * 997))
            assert await ws.recv() == "x" * (n * 997)


async def test_the_direct_writer_writes_pre_built_frames_in_order() -> None:
    async with serving() as (_, url), connect(url, compression=None) as ws:
        await ws.send("direct?")
        assert await ws.recv() == "yes"
        await ws.send("direct:first")
        assert [await ws.recv(), await ws.recv()] == ["first", "second"]


async def test_with_compression_negotiated_the_direct_writer_is_not_usable() -> None:
    async with serving(ws_per_message_deflate=True) as (_, url), connect(url) as ws:
        await ws.send("direct?")
        assert await ws.recv() == "no"
        await ws.send("still echoed")
        assert await ws.recv() == "still echoed"


async def test_paused_writing_makes_the_direct_writer_not_ready() -> None:
    async with serving() as (server, url), connect(url, compression=None) as ws:
        await ws.send("ping")
        assert await ws.recv() == "ping"
        protocol = the_protocol(server)
        direct = protocol.scope["extensions"][DIRECT]
        assert direct.ready()
        protocol.pause_writing()
        assert not direct.ready()
        protocol.resume_writing()
        assert direct.ready()
        await ws.send("after")
        assert await ws.recv() == "after"


async def test_the_watcher_is_told_of_pause_resume_the_peers_close_and_the_loss() -> None:
    async with serving() as (server, url):
        async with connect(url, compression=None) as ws:
            await ws.send("ping")
            assert await ws.recv() == "ping"
            protocol = the_protocol(server)
            direct = protocol.scope["extensions"][DIRECT]
            seen: list[bool] = []
            direct.watch(lambda: seen.append(direct.ready()))
            protocol.pause_writing()
            protocol.resume_writing()
            assert seen == [False, True]
        async with asyncio.timeout(5):  # the client's close frame, then the connection lost
            while not protocol.disconnected:
                await asyncio.sleep(0.01)
        assert len(seen) >= 3
        assert not any(seen[2:])  # told at the close frame, before anything could follow it


async def test_the_servers_shutdown_is_the_applications_once_it_asks() -> None:
    async with serving(timeout_graceful_shutdown=5) as (server, url):
        async with connect(url, compression=None) as plain, connect(url, compression=None) as taken:
            await taken.send("take over shutdown")
            assert await taken.recv() == "taken"
            server.should_exit = True  # uvicorn's shutdown, as on SIGTERM
            await plain.wait_closed()
            await taken.wait_closed()
        assert plain.close_code == 1012  # uvicorn's own close
        assert taken.close_code == 3000  # the application's


@pytest.fixture
def first_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a process whose first connection is still to come (the check runs once)."""
    monkeypatch.setattr(RoomcastWebSocketProtocol, "direct_ok", None)
    monkeypatch.setattr(RoomcastWebSocketProtocol, "forget_ok", None)
    monkeypatch.setattr(RoomcastWebSocketProtocol, "frames_ok", None)


def uvicorn_changed(monkeypatch: pytest.MonkeyPatch, change: Callable[[Any], None]) -> None:
    """Every protocol uvicorn makes from now on is changed by ``change`` after its
    ``__init__``: a uvicorn or websockets release that keeps them otherwise."""
    original = WebSocketsSansIOProtocol.__init__

    def init(self: WebSocketsSansIOProtocol, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        change(self)

    monkeypatch.setattr(WebSocketsSansIOProtocol, "__init__", init)


class OtherFlag:
    """Flow control the way another uvicorn might keep it: works for uvicorn, but
    is not the ``asyncio.Event`` that roomcast's lighter flag replaces."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_missing_names_lists_what_uvicorn_or_websockets_no_longer_has() -> None:
    config = uvicorn.Config(echo_app, ws="websockets-sansio", lifespan="off", log_config=None)
    config.load()
    protocol = WebSocketsSansIOProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    assert missing_names(protocol) == ([], [], [])
    del protocol.close_sent
    protocol.writable = SimpleNamespace()  # type: ignore[assignment]
    protocol.conn.parse = None  # type: ignore[assignment,method-assign]
    assert missing_names(protocol) == (
        ["writable (an asyncio.Event)", "close_sent"],
        ["conn.parse()"],
        ["close_sent"],
    )
    del protocol.conn.current_size
    assert missing_names(protocol)[2] == ["conn.current_size", "close_sent"]


@pytest.mark.usefixtures("first_connection")
async def test_when_uvicorns_flow_control_changed_no_connection_is_written_to_directly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    uvicorn_changed(monkeypatch, lambda protocol: setattr(protocol, "writable", OtherFlag()))
    with caplog.at_level(logging.WARNING, "roomcast"):
        async with serving(timeout_graceful_shutdown=5) as (server, url):
            async with connect(url, compression=None) as one, connect(url, compression=None) as two:
                for ws in (one, two):
                    await ws.send("direct?")
                    assert await ws.recv() == "no"  # frames go through ASGI sends
                    await ws.send("x" * 100_000)
                    assert await ws.recv() == "x" * 100_000
                protocol = server.server_state.connections.copy().pop()
                assert isinstance(protocol.writable, OtherFlag)  # uvicorn's, left alone
                server.should_exit = True
                await one.wait_closed()
            assert one.close_code == 1012  # uvicorn's own shutdown
    assert warnings_of(caplog) == [
        "WebSocket fast path off: uvicorn's WebSocketsSansIOProtocol changed (no writable "
        "(an asyncio.Event)); fan-out through ASGI sends, uvicorn's own close on shutdown "
        "(docs/operations.md)"
    ]


@pytest.mark.usefixtures("first_connection")
async def test_when_websockets_parser_changed_the_handshake_is_kept_and_frames_still_flow(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    uvicorn_changed(monkeypatch, lambda protocol: setattr(protocol.conn, "parse", None))
    with caplog.at_level(logging.WARNING, "roomcast"):
        async with serving() as (server, url):
            async with connect(url, compression=None) as ws:
                await ws.send("direct?")
                assert await ws.recv() == "yes"  # the direct writer does not need it
                frame = the_protocol(server).conn.parser.gi_frame
                assert "request" in frame.f_locals  # websockets' own parser, kept
                for n in (0, 1, 125, 126, 65_535, 65_536):
                    await ws.send("x" * n)
                    assert await ws.recv() == "x" * n
            async with connect(url, compression=None) as again:  # warned once per process
                await again.send("hello")
                assert await again.recv() == "hello"
    assert warnings_of(caplog) == [
        "WebSocket handshake state kept: websockets' parser changed (no conn.parse()); "
        "about 2.5 KB more per connection (docs/operations.md)"
    ]
