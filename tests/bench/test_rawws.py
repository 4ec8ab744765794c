"""The bench's own WebSocket client: framing and the control frames it must answer."""

from __future__ import annotations

import asyncio

import pytest

from roomcast.bench.rawws import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, _Protocol, encode_frame


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked frame as a server sends it."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 1 << 16:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def unmask(frame: bytes) -> tuple[int, bytes]:
    """Opcode and payload of a masked client frame."""
    n = frame[1] & 0x7F
    at = 2
    if n == 126:
        n, at = int.from_bytes(frame[2:4], "big"), 4
    elif n == 127:
        n, at = int.from_bytes(frame[2:10], "big"), 10
    assert frame[1] & 0x80, "client frames are masked"
    key, data = frame[at : at + 4], frame[at + 4 : at + 4 + n]
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data))


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


def test_client_frames_are_masked_and_decode_back() -> None:
    for size in (0, 5, 125, 126, 70_000):
        payload = bytes(i % 251 for i in range(size))
        assert unmask(encode_frame(OP_TEXT, payload)) == (OP_TEXT, payload)


async def opened() -> tuple[_Protocol, FakeTransport]:
    protocol = _Protocol(b"GET / HTTP/1.1\r\n\r\n", "dGhlIHNhbXBsZSBub25jZQ==")
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    assert protocol.open.done()
    assert protocol.open.exception() is None
    return protocol, transport


async def test_frames_split_and_joined_across_reads_come_out_whole() -> None:
    protocol, _ = await opened()
    stream = (
        server_frame(OP_TEXT, b"one")
        + server_frame(OP_TEXT, b"x" * 300)
        + server_frame(OP_TEXT, b"frag", fin=False)
        + server_frame(0, b"mented")
        + server_frame(OP_TEXT, b"y" * 70_000)
    )
    for i in range(0, len(stream), 7):
        protocol.data_received(stream[i : i + 7])
    assert list(protocol.frames) == [b"one", b"x" * 300, b"fragmented", b"y" * 70_000]


async def test_pings_are_answered_and_a_close_reports_its_code() -> None:
    protocol, transport = await opened()
    protocol.data_received(server_frame(OP_PING, b"hi"))
    assert unmask(transport.written[-1]) == (OP_PONG, b"hi")
    protocol.data_received(server_frame(OP_CLOSE, (3001).to_bytes(2, "big") + b"slow consumer"))
    assert protocol.closed is not None
    assert (protocol.closed.code, protocol.closed.reason) == ("3001", "slow consumer")
    assert unmask(transport.written[-1]) == (OP_CLOSE, (3001).to_bytes(2, "big"))
    assert transport.closing


async def test_a_refused_upgrade_fails_the_handshake() -> None:
    protocol = _Protocol(b"GET / HTTP/1.1\r\n\r\n", "dGhlIHNhbXBsZSBub25jZQ==")
    protocol.connection_made(FakeTransport())
    protocol.data_received(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
    assert "403" in str(protocol.open.exception())


async def test_deliver_to_hands_over_queued_then_parsed_frames_and_ends_with_the_close() -> None:
    from roomcast.bench.channel import ChannelClosed
    from roomcast.bench.rawws import RawWsChannel

    protocol, _ = await opened()
    protocol.data_received(server_frame(OP_TEXT, b"queued"))
    got: list[bytes] = []
    task = asyncio.ensure_future(RawWsChannel(protocol).deliver_to(got.append))
    await asyncio.sleep(0)
    assert got == [b"queued"]
    protocol.data_received(server_frame(OP_TEXT, b"a") + server_frame(OP_TEXT, b"b"))
    assert got == [b"queued", b"a", b"b"]  # delivered as parsed, nothing queued
    assert not protocol.frames
    assert protocol.waiter is not None
    assert not protocol.waiter.done()  # and the waiting task was not woken for them
    protocol.data_received(server_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
    protocol.connection_lost(None)
    with pytest.raises(ChannelClosed) as closed:
        await asyncio.wait_for(task, 1)
    assert closed.value.code == "1000"


async def test_a_failing_handler_ends_deliver_to_with_its_error() -> None:
    from roomcast.bench.rawws import RawWsChannel

    protocol, _ = await opened()

    def handler(frame: bytes) -> None:
        raise ValueError(frame.decode())

    task = asyncio.ensure_future(RawWsChannel(protocol).deliver_to(handler))
    await asyncio.sleep(0)
    protocol.data_received(server_frame(OP_TEXT, b"boom"))
    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(task, 1)


async def test_one_whole_frame_per_read_arrives_intact_at_every_length_and_masking_is_refused() -> (
    None
):
    from roomcast.bench.channel import ChannelClosed
    from roomcast.bench.rawws import RawWsChannel

    protocol, transport = await opened()
    got: list[bytes] = []
    task = asyncio.ensure_future(RawWsChannel(protocol).deliver_to(got.append))
    await asyncio.sleep(0)
    sizes = (0, 3, 125, 126, 200, 65_535, 65_536, 70_000)
    payloads = [bytes((i * 7 + size) % 256 for i in range(size)) for size in sizes]
    for payload in payloads:  # each read is exactly one frame: 7-bit, 16-bit, 64-bit lengths
        protocol.data_received(server_frame(OP_TEXT, payload))
    first, rest = server_frame(OP_TEXT, b"frag", fin=False), server_frame(0, b"ment")
    protocol.data_received(first)
    protocol.data_received(rest)
    assert got == [*payloads, b"fragment"]
    assert not protocol.buffer
    # a masked frame from the server, whole in one read, is still a protocol error
    key = b"\x01\x02\x03\x04"
    masked = bytes((0x81, 0x80 | 5)) + key + bytes(b ^ key[i % 4] for i, b in enumerate(b"hello"))
    protocol.data_received(masked)
    assert got[-1] == b"fragment"
    assert transport.closing
    with pytest.raises(ChannelClosed) as closed:
        await asyncio.wait_for(task, 1)
    assert closed.value.code == "1002"
