"""The bench's stamped socket transport, against real TCP servers on loopback.

The point of it: a frame is timed from when it reached the client's socket, not from
when a busy client got round to reading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from roomcast.bench.stamped import StampedTransport, supported

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Recorder(asyncio.Protocol):
    """Keeps what arrived, with the transport's arrival stamp at each call."""

    def __init__(self) -> None:
        self.transport: StampedTransport | None = None
        self.reads: list[tuple[bytes, float, float]] = []
        self.lost: list[Exception | None] = []
        self.gone = asyncio.get_running_loop().create_future()
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, StampedTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.reads.append((bytes(data), self.transport.arrival, time.time()))
        self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        if not self.gone.done():
            self.gone.set_result(None)

    @property
    def data(self) -> bytes:
        return b"".join(chunk for chunk, _, _ in self.reads)


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def connect(port: int) -> tuple[StampedTransport, Recorder]:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    protocol = Recorder()
    transport = StampedTransport(loop, sock, protocol)
    transport.start()
    return transport, protocol


def test_this_platform_stamps_reads() -> None:
    assert supported()  # CI runs on Linux: the default --latency-at relies on it


async def test_a_read_late_is_stamped_when_its_bytes_arrived() -> None:
    # The server is a thread: it writes while the client's event loop is blocked.
    listener = socket.create_server(("127.0.0.1", 0))
    go, sent = threading.Event(), threading.Event()
    sent_at: list[float] = []

    def server() -> None:
        conn, _ = listener.accept()
        with conn:
            go.wait(10)
            sent_at.append(time.time())
            conn.sendall(b"early")
            sent.set()
            time.sleep(1)

    thread = threading.Thread(target=server, daemon=True)
    thread.start()
    try:
        transport, protocol = await connect(listener.getsockname()[1])
        go.set()
        assert sent.wait(10)  # on a busy machine the thread may take a while to send
        time.sleep(0.5)  # noqa: ASYNC251 (the client is busy: the bytes wait on its socket)
        await asyncio.wait_for(protocol.arrived.wait(), 5)
        data, arrival, read = protocol.reads[0]
        assert data == b"early"
        assert read - arrival >= 0.3  # the stamp is the arrival, not the read
        assert abs(arrival - sent_at[0]) < 0.2  # the same clock as time.time()
        transport.abort()
    finally:
        thread.join(5)
        listener.close()


async def test_a_large_write_is_queued_and_sent_whole_and_close_flushes_it() -> None:
    payload = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than the socket takes at once
    got = bytearray()
    done = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.2)  # let the client's socket buffer fill first
        while chunk := await reader.read(65536):
            got.extend(chunk)
        writer.close()
        done.set()

    async with serve(handler) as port:
        transport, protocol = await connect(port)
        transport.write(payload[:10])
        transport.write(memoryview(payload)[10:])
        assert transport.get_write_buffer_size() > 0  # the rest waits for the writer
        transport.close()
        assert transport.is_closing()
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.wait_for(protocol.gone, 5)
    assert bytes(got) == payload
    assert protocol.lost == [None]


async def test_paused_reading_holds_data_until_resumed_and_eof_ends_the_connection() -> None:
    release = asyncio.Event()

    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"one")
        await writer.drain()
        await release.wait()
        writer.write(b"two")
        await writer.drain()
        writer.close()

    async with serve(handler) as port:
        transport, protocol = await connect(port)
        await asyncio.wait_for(protocol.arrived.wait(), 5)
        transport.pause_reading()
        assert not transport.is_reading()
        release.set()
        await asyncio.sleep(0.2)
        assert protocol.data == b"one"  # "two" is on the socket, unread
        transport.resume_reading()
        await asyncio.wait_for(protocol.gone, 5)
    assert protocol.data == b"onetwo"
    assert protocol.lost == [None]  # the server's close: an end, not an error


async def test_abort_drops_queued_bytes_and_reports_the_loss_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with serve(handler) as port:
        transport, protocol = await connect(port)
        transport.write(b"x" * (16 * 1024 * 1024))
        transport.abort()
        transport.abort()
        transport.write(b"after")  # ignored, as asyncio's transports do once closed
        await asyncio.wait_for(protocol.gone, 5)
        await asyncio.sleep(0.05)
    assert protocol.lost == [None]
    assert transport.get_write_buffer_size() == 0


async def test_a_reset_connection_reports_its_error() -> None:
    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # close with linger 0: an RST

    async with serve(handler) as port:
        _, protocol = await connect(port)
        await asyncio.wait_for(protocol.gone, 5)
    assert len(protocol.lost) == 1
    assert isinstance(protocol.lost[0], ConnectionResetError)
