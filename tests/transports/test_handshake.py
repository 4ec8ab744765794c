"""A request's line and headers (a WebSocket handshake's too) must be complete within
``handshake_timeout`` (transports/handshake.py, transports/uvicorn_http.py), against
real servers: a client that trickles them in, or connects and sends nothing, is
closed without an answer while the bytes are still coming in; clients whose
headers are in are served for as long as they stay."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from roomcast import Roomcast, Settings
from roomcast.testing import LiveServer, connect, free_port

from ..conftest import ServerProcess, launch, server_env
from ..redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ServerFactory = Callable[..., ServerProcess]

HANDSHAKE_TIMEOUT = 1.0
GAP = 0.1
"""Seconds between two bytes of a trickled request: far under the deadline, so only
a deadline for the whole request line and headers closes it (an idle timer would
not), and the padded headers below take about 20 s to send."""


def partial_upgrade(port: int) -> bytes:
    """A WebSocket upgrade's request line and headers, padded, without the blank line
    that would end them."""
    pad = "".join(f"X-Pad-{n}: {'x' * 20}\r\n" for n in range(3))
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{pad}"
    ).encode()


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (b"" if nothing)."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def trickle(port: int, data: bytes, *, first: bytes = b"") -> tuple[int, bytes]:
    """Open a connection, send ``first`` at once, then ``data`` one byte every ``GAP``
    seconds until the server closes the connection. (How many bytes of ``data`` went
    out, what the server answered after ``first``'s answer.) A server that never
    closes it fails the test (a hard timeout once ``data`` is all out)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if first:  # a whole request, answered: the connection is kept alive
            writer.write(first)
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            assert head.startswith("http/1.1 200"), head
            length = next(
                int(line.split(":")[1]) for line in head.split("\r\n")
                if line.startswith("content-length:")
            )  # fmt: skip
            await reader.readexactly(length)
        closed = asyncio.ensure_future(until_closed(reader))
        sent = 0
        for byte in data:
            if closed.done():
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                break
            sent += 1
            await asyncio.sleep(GAP)
        async with asyncio.timeout(10):  # the data is out: the server had 20 s already
            answer = await closed
        return sent, answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def silent(port: int) -> bytes:
    """Connect, send nothing; what the server sends before it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(10):  # ten deadlines
            return await until_closed(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def assert_slow_handshakes_are_dropped(port: int, http_url: str, ws_url: str) -> None:
    """Eight trickled upgrades and two silent sockets are closed without an answer
    before their headers are in, while a WebSocket client whose handshake was
    complete is served before, during and after the deadline, and so is REST."""
    data = partial_upgrade(port)
    slow = [asyncio.ensure_future(trickle(port, data)) for _ in range(8)]
    quiet = [asyncio.ensure_future(silent(port)) for _ in range(2)]
    async with connect(ws_url) as client:
        await client.subscribe("chat:handshake")
        results = await asyncio.gather(*slow)
        answers = await asyncio.gather(*quiet)
        # Still served, after every slow socket was dropped:
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{http_url}/healthz")).status_code == 200
            reply = await http.post(
                f"{http_url}/rooms/chat:handshake/messages", json={"data": {"n": 1}}
            )
            assert reply.status_code == 201
        assert (await client.next_event("message", timeout=10))["data"] == {"n": 1}
        assert (await client.request("ping"))["ok"]
    for sent, answer in results:
        assert answer == b""  # closed without an answer, as nginx's client_header_timeout
        assert sent < len(data)  # while the headers were still coming in
    assert answers == [b"", b""]


async def test_trickled_and_silent_handshakes_are_closed_while_others_are_served(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(handshake_timeout=HANDSHAKE_TIMEOUT)
    await assert_slow_handshakes_are_dropped(server.port, server.http, server.ws)


async def test_every_worker_has_the_deadline(redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    env = server_env(
        handshake_timeout=HANDSHAKE_TIMEOUT, workers=2, redis_url=redis_server.url,
        redis_prefix="handshake-workers",
    )  # fmt: skip
    command = [sys.executable, "-m", "roomcast", "serve", "--port", str(port)]
    # Two workers start slowly on a loaded machine: more time than start_server's.
    server = launch(command, port=port, env=env, cwd=tmp_path, log_path=tmp_path / "server.log",
                    timeout=50)  # fmt: skip
    try:
        await assert_slow_handshakes_are_dropped(server.port, server.http, server.ws)
    finally:
        server.stop(signal.SIGKILL)


async def test_a_later_request_on_a_kept_alive_connection_has_the_deadline_too(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(handshake_timeout=HANDSHAKE_TIMEOUT)
    first = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    data = partial_upgrade(server.port)
    sent, answer = await trickle(server.port, data, first=first)
    assert answer == b""  # the first request was answered; the second never is
    assert sent < len(data)


def _app(settings: Settings) -> FastAPI:
    rc = Roomcast(settings)
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router)
    return app


async def test_a_live_server_with_the_setting_has_the_deadline() -> None:
    settings = Settings(handshake_timeout=HANDSHAKE_TIMEOUT)
    async with LiveServer(_app(settings), settings=settings) as server:
        await assert_slow_handshakes_are_dropped(server.port, server.url, server.ws_url())


async def test_the_h11_protocol_has_the_same_deadline() -> None:
    from roomcast.transports.uvicorn_http import H11Protocol

    def quick(**kwargs: Any) -> H11Protocol:
        protocol = H11Protocol(**kwargs)
        protocol.handshake_timeout = HANDSHAKE_TIMEOUT
        return protocol

    async with LiveServer(_app(Settings()), http=quick) as server:
        await assert_slow_handshakes_are_dropped(server.port, server.url, server.ws_url())
