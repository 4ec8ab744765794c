"""A minimal WebSocket client (RFC 6455) on an asyncio Protocol, built for reading fast.

A load client spends most of its CPU receiving: with the ``websockets`` library every
frame goes through its parser, an assembler and a future, about as much work per frame
as the server spends sending it. :class:`RawWsChannel` parses every frame a socket read
brought in one loop in ``data_received`` and queues the payloads, so a subscriber's
receive loop takes several frames per wake-up without suspending. It does what a
benchmark needs and no more:

- the opening handshake (``Sec-WebSocket-Accept`` checked), no extensions, no
  subprotocols; ``ws://`` and ``wss://``;
- text and binary frames, fragmented messages, unmasked frames only from the server;
- answers pings with pongs; answers a close with a close and reports its code;
- sends masked text frames (a random key per frame, as the RFC requires).

``--ws-client websockets`` switches back to the ``websockets`` library (:class:`WsChannel`)
to cross-check a result.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import os
import socket
import ssl
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

from .channel import ChannelClosed, ChannelError
from .stamped import StampedTransport

__all__ = ["RawWsChannel", "encode_frame"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 16384
_PAUSE_FRAMES = 50_000
"""Frames queued unread before the socket stops reading (resumes at half)."""
CLOSE_TIMEOUT = 2.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class _Protocol(asyncio.Protocol):
    def __init__(self, request: bytes, key: str) -> None:
        self.request = request
        self.accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.frames: collections.deque[bytes] = collections.deque()
        self.fragments: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.closed: ChannelClosed | None = None
        self.close_sent = False
        self.paused = False
        self.gone = asyncio.get_running_loop().create_future()
        self.on_frame: Callable[[bytes], None] | None = None
        """Set by RawWsChannel.deliver_to: complete messages go to it, not ``frames``."""
        self.failure: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; the API is the same
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.on_frame is not None and not self.buffer and len(data) > 4 and data[0] == 0x81:
            # The usual read at a steady rate: exactly one whole, unmasked text frame.
            b1 = data[1]
            if b1 < 126:
                head, length = 2, b1
            elif b1 == 126:
                head, length = 4, data[2] << 8 | data[3]
            else:  # a 64-bit length, or a masked frame (an error): the long way
                head, length = 0, -1
            if len(data) == head + length:
                self._message(bytes(data[head:]))
                return
        self.buffer += data
        if not self.open.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    self._fail_open("response head too long")
                return
            response = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            problem = self._check_head(response)
            if problem:
                self._fail_open(problem)
                return
            self.open.set_result(None)
        self._parse()

    def _check_head(self, head: str) -> str | None:
        status, *lines = head.split("\r\n")
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            return f"HTTP {parts[1] if len(parts) > 1 else status!r}: not upgraded"
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != self.accept:
            return "bad Sec-WebSocket-Accept"
        if headers.get("sec-websocket-extensions"):
            return "the server negotiated an extension that was not offered"
        return None

    def _fail_open(self, reason: str) -> None:
        if not self.open.done():
            self.open.set_exception(ChannelError(f"handshake: {reason}", "handshake"))
        if self.transport is not None:
            self.transport.abort()

    def _parse(self) -> None:
        buf = self.buffer
        size = len(buf)
        pos = 0
        frames = self.frames
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if b1 & 0x80:  # a masked frame from a server is a protocol error
                self._protocol_error("masked frame from the server")
                return
            end = pos + head + length
            if end > size:
                break
            payload = bytes(buf[pos + head : end])
            pos = end
            opcode = b0 & 0x0F
            if opcode in (OP_TEXT, OP_BINARY):
                if b0 & 0x80:
                    self._message(payload)
                else:
                    self.fragments = [payload]
            elif opcode == OP_CONT:
                self.fragments.append(payload)
                if b0 & 0x80:
                    self._message(b"".join(self.fragments))
                    self.fragments = []
            else:
                self._control(opcode, payload)
        del buf[:pos]
        if self.on_frame is not None:
            return  # delivered as parsed: nobody waits for frames
        if len(frames) > _PAUSE_FRAMES and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def _message(self, payload: bytes) -> None:
        on_frame = self.on_frame
        if on_frame is None:
            self.frames.append(payload)
            return
        try:
            on_frame(payload)
        except Exception as exc:  # the handler's bug: stop calling it, end its wait
            self.on_frame = None
            self.failure = exc
            self._wake()

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            code = str(int.from_bytes(payload[:2], "big")) if len(payload) >= 2 else "1005"
            reason = payload[2:].decode(errors="replace")
            if self.closed is None:
                self.closed = ChannelClosed(code, reason)
            if not self.close_sent:
                self.send(OP_CLOSE, payload[:2])
            if self.transport is not None:
                self.transport.close()

    def _protocol_error(self, reason: str) -> None:
        self.closed = ChannelClosed("1002", reason)
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing() or self.close_sent:
            raise ChannelClosed(self.closed.code if self.closed else "1006", "closing")
        if opcode == OP_CLOSE:
            self.close_sent = True
        self.transport.write(encode_frame(opcode, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is None:
            self.closed = ChannelClosed("1006", "connection lost without a close frame")
        if not self.open.done():
            self.open.set_exception(ChannelError("connection lost during the handshake"))
        if not self.gone.done():
            self.gone.set_result(None)
        self._wake()


async def _connect_stamped(
    loop: asyncio.AbstractEventLoop, host: str, port: int, protocol: _Protocol
) -> None:
    """Connect a plain socket as ``loop.create_connection`` would (every address in
    turn, ``TCP_NODELAY``) and start a :class:`StampedTransport` on it."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    failure: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        StampedTransport(loop, sock, protocol).start()
        return
    raise failure


class RawWsChannel:
    """A WebSocket connection on :class:`_Protocol`; see the module docstring."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: _Protocol) -> None:
        self.protocol = protocol

    @classmethod
    async def open(cls, url: str, timeout: float, stamped: bool = False) -> RawWsChannel:
        """Connect and upgrade. ``stamped``: read through a :class:`~.stamped.StampedTransport`
        (``ws://`` only), so :meth:`arrival_clock` gives each read's arrival time."""
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        key = base64.b64encode(os.urandom(16)).decode()
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "User-Agent: roomcast-bench\r\n\r\n"
        ).encode("latin-1")
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if secure else None
        protocol: _Protocol | None = None
        try:
            async with asyncio.timeout(timeout):
                if stamped and not secure:
                    protocol = _Protocol(request, key)
                    await _connect_stamped(loop, host, port, protocol)
                else:
                    _, protocol = await loop.create_connection(
                        lambda: _Protocol(request, key), host, port, ssl=context
                    )
                await protocol.open
        except (OSError, TimeoutError) as exc:
            if protocol is not None and protocol.transport is not None:
                protocol.transport.abort()
            raise ChannelError(f"connect {url}: {exc!r}", f"connect:{type(exc).__name__}") from exc
        return cls(protocol)

    def arrival_clock(self) -> Callable[[], float] | None:
        """When the frame being handled reached the socket, for a stamped channel
        (the time of the read that brought it); None for one read by the loop."""
        transport = self.protocol.transport
        if not isinstance(transport, StampedTransport):
            return None
        return lambda: transport.arrival

    async def recv(self) -> bytes:
        p = self.protocol
        frames = p.frames
        while not frames:
            if p.closed is not None:
                raise p.closed
            p.waiter = asyncio.get_running_loop().create_future()
            await p.waiter
            p.waiter = None
        if p.paused and len(frames) < _PAUSE_FRAMES // 2 and p.transport is not None:
            p.paused = False
            p.transport.resume_reading()
        return frames.popleft()

    async def deliver_to(self, handler: Callable[[bytes], None]) -> None:
        """Call ``handler`` with every message, as it is parsed, until the
        connection closes; then raise its ChannelClosed (or the handler's error).
        Messages already queued go first."""
        p = self.protocol
        while p.frames:
            handler(p.frames.popleft())
        if p.paused and p.transport is not None:
            p.paused = False
            p.transport.resume_reading()
        p.on_frame = handler
        try:
            while p.closed is None and p.failure is None:
                p.waiter = asyncio.get_running_loop().create_future()
                await p.waiter
                p.waiter = None
        finally:
            p.on_frame = None
        if p.failure is not None:
            raise p.failure
        assert p.closed is not None
        raise p.closed

    async def send(self, text: str) -> None:
        self.protocol.send(OP_TEXT, text.encode())

    async def close(self) -> None:
        p = self.protocol
        with contextlib.suppress(ChannelClosed):
            p.send(OP_CLOSE, (1000).to_bytes(2, "big"))
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(p.gone)
        except Exception:
            self.abort()

    def abort(self) -> None:
        if self.protocol.transport is not None:
            self.protocol.transport.abort()
