"""A REST body over the limit, against a real server: the client that is still
sending reads the 413 (the connection lingers, it is not reset), and the
connection serves its next request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ..conftest import ServerProcess

pytestmark = pytest.mark.e2e

ServerFactory = Callable[..., ServerProcess]

LIMIT = 4096
CHUNK = b"x" * 16 * 1024


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(status line, body) of one response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    return status, await reader.readexactly(length)


async def test_a_chunked_body_past_the_limit_gets_its_413_while_still_sending(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(
        max_body_bytes=LIMIT, api_keys="k" * 32, auth="jwt", jwt_secret="s" * 32
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            b"POST /rooms/chat:big/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nX-API-Key: " + b"k" * 32 + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        # 2 MiB, far past the limit, all sent before the client reads anything: a
        # server that closed on the 413 with this unread would reset the connection.
        for _ in range(128):
            writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            status, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 413 ")
        assert b"limit" in body

        # The same connection takes the next request.
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            status, _ = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()
