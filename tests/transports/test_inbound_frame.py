"""A client's whole text frame read without websockets' parser (inbound_frame.py),
checked against websockets' own parser, and through a real uvicorn server with raw
sockets: the shortcut is taken for one whole frame, and everything else (two frames
in one chunk, a frame in pieces, fragments, control frames, bad UTF-8, a payload
over the limit, reserved bits, an unmasked frame) is answered as websockets answers
it."""

from __future__ import annotations

import asyncio
import base64
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

import roomcast.transports.uvicorn_ws as uvicorn_ws
from roomcast.transports.inbound_frame import whole_text_frame

from .test_uvicorn_ws import serving

pytestmark = pytest.mark.timeout(20)


def client_frame(
    payload: bytes,
    *,
    opcode: int = 1,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    mask: bytes = b"\x11\x22\x33\x44",
    long_form: str = "",
) -> bytes:
    """A client's frame as it goes on the wire. ``long_form``: "16" or "64" writes
    the length in that extended form whatever its size (websockets accepts it)."""
    head = bytes(((0x80 if fin else 0) | rsv << 4 | opcode,))
    bit = 0x80 if masked else 0
    n = len(payload)
    if long_form == "64" or (not long_form and n >= 1 << 16):
        head += bytes((bit | 127,)) + n.to_bytes(8, "big")
    elif long_form == "16" or (not long_form and n >= 126):
        head += bytes((bit | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((bit | n,))
    if not masked:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def websockets_reads(chunk: bytes, max_size: int | None) -> tuple[list[Frame], bool, bool]:
    """What websockets' own parser makes of ``chunk`` on an open server connection:
    its frames, whether it failed the connection, whether bytes are left over."""
    conn = ServerProtocol(state=State.OPEN, max_size=max_size)
    conn.receive_data(chunk)
    frames = [e for e in conn.events_received() if isinstance(e, Frame)]
    return frames, conn.parser_exc is not None, bool(conn.reader.buffer)


def chunks() -> Iterator[tuple[str, bytes]]:
    rng = random.Random(1906)
    for n in (0, 1, 2, 5, 100, 125, 126, 127, 1000, 65535, 65536, 70000):
        payload = bytes(rng.randrange(32, 127) for _ in range(n))
        yield f"text {n}", client_frame(payload)
        if n < 1 << 16:
            yield f"text {n} in the 16-bit form", client_frame(payload, long_form="16")
        yield f"text {n} in the 64-bit form", client_frame(payload, long_form="64")
    body = "é€😀 data".encode()
    one = client_frame(body)
    yield "utf-8", one
    yield "two frames", one + one
    yield "a frame and a half", one + one[:5]
    yield "half a frame", one[: len(one) // 2]
    yield "a header only", one[:2]
    yield "one byte more", one + b"\x81"
    yield "not final", client_frame(body, fin=False)
    yield "a continuation", client_frame(body, opcode=0)
    yield "binary", client_frame(body, opcode=2)
    yield "ping", client_frame(b"hi", opcode=9)
    yield "close", client_frame(b"\x03\xe8", opcode=8)
    yield "reserved opcode", client_frame(body, opcode=3)
    for rsv in (1, 2, 4):
        yield f"rsv {rsv}", client_frame(body, rsv=rsv)
    yield "unmasked", client_frame(body, masked=False)
    yield "not utf-8", client_frame(b"\xff\xfe")
    for _ in range(300):  # arbitrary bytes that start like a text frame
        size = rng.randrange(0, 300)
        yield "random", b"\x81" + bytes(rng.randrange(256) for _ in range(size))


@pytest.mark.parametrize("max_size", [None, 1000, 125])
def test_it_reads_exactly_the_chunks_that_websockets_reads_as_one_whole_text_frame(
    max_size: int | None,
) -> None:
    taken = 0
    for name, chunk in chunks():
        payload = whole_text_frame(chunk, max_size)
        frames, failed, left = websockets_reads(chunk, max_size)
        one_text = (
            not failed
            and not left
            and len(frames) == 1
            and frames[0].opcode is Opcode.TEXT
            and frames[0].fin
            and not (frames[0].rsv1 or frames[0].rsv2 or frames[0].rsv3)
        )
        if payload is not None:
            taken += 1
            assert one_text, name
            assert payload == frames[0].data, name
        else:  # the usual case is never left to websockets
            assert not (one_text and len(frames[0].data) < 1 << 16 and chunk[1] & 0x7F != 127), (
                f"{name}: a whole text frame not taken"
            )
    assert taken >= 10  # the usual case is taken


def test_a_payload_over_the_limit_or_of_64_kib_is_left_to_websockets() -> None:
    assert whole_text_frame(client_frame(b"x" * 126), 125) is None
    assert whole_text_frame(client_frame(b"x" * 125), 125) == b"x" * 125
    assert whole_text_frame(client_frame(b"x" * 65536), None) is None
    assert whole_text_frame(client_frame(b"x" * 65535), None) == b"x" * 65535


# -- through a real uvicorn server, with raw sockets ---------------------------------


class RawClient:
    """A WebSocket client that writes the bytes it is given, as they are given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> RawClient:
        host, port = url.split("//")[1].split("/")[0].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send(self, *pieces: bytes, pause: float = 0.05) -> None:
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(pause)  # separate reads on the server
            self.writer.write(piece)
            await self.writer.drain()

    async def recv(self) -> tuple[int, bytes]:
        """The server's next frame: (opcode, payload)."""
        head = await self.reader.readexactly(2)
        n = head[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        return head[0] & 0x0F, await self.reader.readexactly(n)

    async def text(self) -> str:
        opcode, payload = await self.recv()
        assert opcode == 1, (opcode, payload)
        return payload.decode()

    async def close_code(self) -> int:
        while True:
            opcode, payload = await self.recv()
            if opcode == 8:
                return int.from_bytes(payload[:2], "big")

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every payload the protocol read without websockets' parser."""
    seen: list[bytes] = []
    original = uvicorn_ws.whole_text_frame

    def spy(data: bytes, max_size: int | None) -> Any:
        payload = original(data, max_size)
        if payload is not None:
            seen.append(payload)
        return payload

    monkeypatch.setattr(uvicorn_ws, "whole_text_frame", spy)
    return seen


async def test_a_whole_text_frame_skips_websockets_parser_and_the_rest_does_not(
    taken: list[bytes],
) -> None:
    async with serving() as (_, url):
        ws = await RawClient.open(url)
        try:
            await ws.send(client_frame(b"one"))
            assert await ws.text() == "one"
            assert taken == [b"one"]
            # two in one write (and so, on loopback, in one read): websockets reads them
            await ws.send(client_frame(b"two") + client_frame("drei ✓".encode()))
            assert [await ws.text(), await ws.text()] == ["two", "drei ✓"]
            # one frame in three reads
            frame = client_frame(b"x" * 300)
            await ws.send(frame[:1], frame[1:7], frame[7:])
            assert await ws.text() == "x" * 300
            # a fragmented message, then a ping in its middle, then a whole frame again
            await ws.send(client_frame(b"frag", fin=False))
            await ws.send(client_frame(b"!", opcode=9))
            assert await ws.recv() == (10, b"!")  # the pong
            await ws.send(client_frame(b"mented", opcode=0))
            assert await ws.text() == "fragmented"
            await ws.send(client_frame(b"after"))
            assert await ws.text() == "after"
            assert taken == [b"one", b"after"]
        finally:
            ws.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(b"\xff\xfe not utf-8"), 1007),
        (client_frame(b"x" * 200), 1009),
        (client_frame(b"reserved", rsv=4), 1002),
        (client_frame(b"unmasked", masked=False), 1002),
        (client_frame(b"continued", opcode=0), 1002),
    ],
    ids=["bad utf-8", "over ws_max_size", "reserved bit", "unmasked", "stray continuation"],
)
async def test_a_bad_frame_is_closed_as_websockets_closes_it(
    taken: list[bytes], frame: bytes, code: int
) -> None:
    async with serving(ws_max_size=100) as (_, url):
        ws = await RawClient.open(url)
        other = await RawClient.open(url)
        try:
            await ws.send(client_frame(b"fine"))
            assert await ws.text() == "fine"
            await ws.send(frame)
            assert await ws.close_code() == code
            await other.send(client_frame(b"still served"))
            assert await other.text() == "still served"
            assert (taken[0], taken[-1]) == (b"fine", b"still served")
        finally:
            ws.close()
            other.close()


async def test_frames_are_read_by_websockets_when_its_names_are_missing(
    taken: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uvicorn_ws.RoomcastWebSocketProtocol, "direct_ok", True)  # checked
    monkeypatch.setattr(uvicorn_ws.RoomcastWebSocketProtocol, "frames_ok", False)
    async with serving() as (_, url):
        ws = await RawClient.open(url)
        try:
            await ws.send(client_frame(b"by websockets"))
            assert await ws.text() == "by websockets"
            assert taken == []
        finally:
            ws.close()
