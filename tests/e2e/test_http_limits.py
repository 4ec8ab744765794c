"""REST bodies against a real `roomcast serve` on raw sockets (api/bodylimit.py, with
uvicorn and roomcast's HTTP protocol, transports/uvicorn_http.py): a body too large
or without credentials that hold is answered before it is sent, a chunked one is
cut at the limit, a stalled one times out, and none of these keeps its connection
once ``handshake_timeout`` has passed. In process, counting what the app reads:
tests/api/test_bodylimit.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from ..auth.keys import SECRET
from ..conftest import ServerProcess, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

PUBLISH = "/rooms/chat:limits/messages"
API_KEY = "limits-key-0123456789"
KEY = f"X-API-Key: {API_KEY}"
DEADLINE = 1.0
"""The server's ``handshake_timeout`` and ``body_timeout``."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("limits"), handshake_timeout=DEADLINE, body_timeout=DEADLINE,
        max_body_bytes=100_000, auth="jwt", jwt_secret=SECRET, api_keys=API_KEY,
    )  # fmt: skip
    yield process
    process.stop()


@contextlib.asynccontextmanager
async def raw(
    server: ServerProcess,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def request_head(server: ServerProcess, *headers: str) -> bytes:
    lines = [f"POST {PUBLISH} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             "Content-Type: application/json", *headers]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def answer_then_close(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """The response's status line and what follows it until the server closes the
    connection (a server that keeps it fails the test: ten deadlines)."""
    async with asyncio.timeout(10 * DEADLINE):
        head = await reader.readuntil(b"\r\n\r\n")
        try:
            rest = await reader.read()
        except ConnectionResetError:
            rest = b""
    return head.decode().split("\r\n")[0], head + rest


async def test_a_huge_declared_body_is_refused_413_before_it_is_sent_and_the_socket_let_go(
    server: ServerProcess,
) -> None:
    async with raw(server) as (reader, writer):
        writer.write(request_head(server, f"Content-Length: {2**30}", KEY) + b"x" * 1024)
        status, whole = await answer_then_close(reader)  # 1 KB of 1 GiB sent, no more
    assert " 413 " in status, whole


async def test_a_body_without_credentials_that_hold_is_refused_before_it_is_sent(
    server: ServerProcess,
) -> None:
    basic = "Authorization: Basic bGltaXRzLWtleS0wMTIzNDU2Nzg5"  # the key, but not as Bearer
    for credentials in ([], ["X-API-Key: wrong"], [KEY, basic], [KEY, "X-API-Key: "]):
        async with raw(server) as (reader, writer):
            writer.write(request_head(server, "Content-Length: 50000", *credentials))
            status, whole = await answer_then_close(reader)  # no byte of the body sent
        assert " 401 " in status, whole
        assert b"www-authenticate: bearer" in whole.lower()


async def test_a_body_within_the_limits_is_published(server: ServerProcess) -> None:
    body = b'{"data": {"n": 1}}'
    async with raw(server) as (reader, writer):
        writer.write(request_head(server, f"Content-Length: {len(body)}", KEY, "Connection: close"))
        writer.write(body)
        status, whole = await answer_then_close(reader)
    assert " 201 " in status, whole


async def test_a_chunked_body_is_cut_at_the_limit(server: ServerProcess) -> None:
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"  # 16 KiB
    cap = 64 * 1024 * 1024
    sent = 0
    async with raw(server) as (reader, writer):
        writer.write(request_head(server, "Transfer-Encoding: chunked", KEY))
        head = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            while not head.done() and sent < cap:  # until the server answers
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                # drain() does not yield while the server keeps up (it drops the unread
                # body as it arrives): let the reader see the answer that may be there
                await asyncio.sleep(0)
        async with asyncio.timeout(10 * DEADLINE):
            status = (await head).decode().split("\r\n")[0]
            with contextlib.suppress(ConnectionResetError):
                await reader.read()  # then closed, the rest of the body never sent
    assert " 413 " in status, status
    assert sent < cap  # answered long before: the body was not read to its end


async def test_a_stalled_body_is_answered_408_and_closed(server: ServerProcess) -> None:
    async with raw(server) as (reader, writer):
        writer.write(request_head(server, "Content-Length: 100", KEY) + b'{"data": ')
        status, whole = await answer_then_close(reader)  # 9 of 100 bytes, then nothing
    assert " 408 " in status, whole  # body_timeout's answer (the headers were complete)
    assert b"connection: close" in whole.lower()
