"""roomcast's uvicorn protocol, run for real: the direct writer, the lighter inbox
and writable flag, and what it lets go of once the handshake is done."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from roomcast.protocol.wsframe import text_frame
from roomcast.transports.uvicorn_ws import DIRECT, RoomcastWebSocketProtocol

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
            direct.write(text_frame(text[7:].encode()) + text_frame(b"second"))
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
