"""A socket transport that knows when each read's bytes reached the socket.

A latency is the time from a publish to a subscriber's receipt. Read in the load
client's event loop, "receipt" includes the client's own queue: on a 2-core machine the
client has one core, and reading a frame costs it more CPU (about 16 µs at a fixed rate,
6 of them in the kernel) than a fast server spends sending one (about 8). At 1,000
subscribers the client then drains an event in ~17 ms whichever server sent it, and
every server's p99 measures the client (docs/performance.md).

The kernel stamps every incoming segment as it queues it on the socket
(``SO_TIMESTAMPNS``, a ``CLOCK_REALTIME`` time, the clock of ``time.time()``); a
``recvmsg`` reports the stamp of the last segment it read. :class:`StampedTransport`
reads with ``recvmsg_into`` and keeps that stamp in :attr:`StampedTransport.arrival`,
so the bench can time a frame from the moment the server's write put it on the
client's socket, whatever the client was doing then. Several frames read at once share
the stamp of the last one: a frame can only look later than it arrived, never earlier.

``data_received`` gets a view of a read buffer shared by the process's transports: it is
valid only during the call (the bench's protocol copies what it keeps).

It is the part of ``asyncio.Transport`` the bench's WebSocket protocol
(:class:`~.rawws._Protocol`) uses, on a non-blocking socket watched with
``loop.add_reader``/``add_writer`` (asyncio's loop and uvloop alike). Plain TCP only;
``wss://`` keeps the loop's own transport. Linux only (:func:`supported`).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time

__all__ = ["READ_SIZE", "StampedTransport", "supported"]

SO_TIMESTAMPNS: int = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux's option number (35 on every Linux architecture but a few; ``socket`` has it)."""
READ_SIZE = 256 * 1024
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


_shared: memoryview | None = None


def _buffer() -> memoryview:
    """The process's one read buffer, shared by every stamped transport: a read and the
    protocol's ``data_received`` run in one go on the loop's thread, and the protocol
    copies what it keeps (a 256 KiB buffer per connection would be 5 GB at 20,000).
    One event loop per process reads through it (the bench's workers)."""
    global _shared
    if _shared is None:
        _shared = memoryview(bytearray(READ_SIZE))
    return _shared


def supported() -> bool:
    """Whether this platform stamps TCP reads (Linux) and Python can read the stamps."""
    return sys.platform.startswith("linux") and _ANCILLARY > 0


class StampedTransport(asyncio.Transport):
    """A connected, non-blocking TCP socket as an asyncio transport, reads stamped."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.Protocol
    ) -> None:
        super().__init__()
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._view = _buffer()
        self._pending = bytearray()
        self._reading = False
        self._closing = False
        self._closed = False
        self.arrival = 0.0
        """When the bytes of the last read reached the socket (``time.time()`` clock)."""

    def start(self) -> None:
        """Hand the transport to the protocol and start reading."""
        self._protocol.connection_made(self)
        if not self._closed:
            self.resume_reading()

    def _readable(self) -> None:
        try:
            n, ancillary, _, _ = self._sock.recvmsg_into((self._view,), _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._finish(exc)
            return
        if not n:  # the server closed its side
            self._finish(None)
            return
        if ancillary:  # the one message asked for: (SOL_SOCKET, SO_TIMESTAMPNS, timespec)
            seconds, nanoseconds = _TIMESPEC.unpack_from(ancillary[0][2])
            self.arrival = seconds + nanoseconds * 1e-9
        else:  # a kernel that does not stamp TCP: the read's own time
            self.arrival = time.time()
        self._protocol.data_received(self._view[:n])  # type: ignore[arg-type]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._closing:
            return
        if self._pending:
            self._pending += data
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._finish(exc)
            return
        if sent < len(data):
            self._pending += memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._finish(exc)
            return
        del self._pending[:sent]
        if not self._pending:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._finish(None)

    def get_write_buffer_size(self) -> int:
        return len(self._pending)

    def is_closing(self) -> bool:
        return self._closing or self._closed

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        if self._reading and not self._closed:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closed:
            self._reading = True
            self._loop.add_reader(self._fd, self._readable)

    def close(self) -> None:
        """Stop reading, send what is queued, then close (as asyncio's transports do)."""
        if self._closing or self._closed:
            return
        self._closing = True
        self.pause_reading()
        if not self._pending:
            self._finish(None)

    def abort(self) -> None:
        self._finish(None)

    def _finish(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
        if self._pending:
            self._pending.clear()
            self._loop.remove_writer(self._fd)
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, exc)
