"""Acceptance: slow consumers, bad input, dead peers and shutdown, against a real server."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from ..conftest import ServerProcess
from .client import Client, slow_reader_socket

pytestmark = pytest.mark.e2e

ServerFactory = Callable[..., ServerProcess]


async def read_until_closed(client: Client, timeout: float = 10) -> tuple[int, int | None]:
    """Read until the server closes: (message events seen, close code it sent)."""
    seen = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                seen += json.loads(await client.conn.recv()).get("type") == "message"
    except ConnectionClosed as closed:
        return seen, closed.rcvd.code if closed.rcvd else None


async def close_code_of(client: Client, timeout: float = 10) -> int | None:
    return (await read_until_closed(client, timeout))[1]


async def test_a_stalled_client_is_closed_3001_and_50_others_receive_everything(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(outbox_max_bytes=1024 * 1024, slow_close_timeout=30, presence="false")
    room = "feed:stall"
    sock = slow_reader_socket(server.port)
    stalled = await Client.open(server.ws, sock=sock, max_queue=1)
    assert (await stalled.request("subscribe", room=room))["ok"]
    others = [await Client.open(server.ws) for _ in range(50)]
    for client in others:
        assert (await client.request("subscribe", room=room))["ok"]

    # Loopback socket buffers absorb a few MB before the server's outbox fills, so the
    # frames are large: 150 x 60 kB is well past what a stalled reader can hold.
    count = 150
    blob = "x" * 60_000

    async def receive_all(client: Client) -> list[int]:
        return [m["offset"] for m in await client.messages(count)]

    readers = [asyncio.create_task(receive_all(c)) for c in others]
    publisher = await Client.open(server.ws)
    for n in range(count):
        assert (await publisher.request("publish", room=room, data={"n": n, "blob": blob}))["ok"]
    received = await asyncio.gather(*readers)
    assert all(offsets == list(range(1, count + 1)) for offsets in received)

    # The stalled client reads again: what was already in flight, then the close.
    seen, code = await read_until_closed(stalled, timeout=20)
    assert code == 3001
    assert seen < count
    # And the server still serves everyone else.
    assert (await publisher.request("publish", room=room, data={"after": True}))["ok"]
    assert (await others[0].event())["data"] == {"after": True}


BAD_FRAMES: list[tuple[str, str, int | None]] = [
    ("not json", "bad_request", None),
    ("[1, 2]", "bad_request", None),
    ('{"id": 5}', "bad_request", 5),
    ('{"op": "nope", "id": 6}', "unknown_op", 6),
    ('{"op": "subscribe", "id": 7}', "bad_request", 7),
    ('{"op": "subscribe", "id": 8, "room": "bad room!"}', "room_invalid", 8),
    ('{"op": "subscribe", "id": "9", "room": "r"}', "bad_request", None),
    ('{"op": "unsubscribe", "id": 10, "room": "never"}', "not_subscribed", 10),
    ('{"op": "connect", "id": 11, "name": "late"}', "bad_request", 11),
    ('{"op": "history", "id": 12, "room": "r", "limit": 0}', "bad_request", 12),
    (json.dumps({"op": "publish", "id": 13, "room": "r", "data": "x" * 70_000}), "too_large", 13),
    ('{"op": "subscribe", "id": 14, "room": "chat:bad"}', "bad_request", 14),  # already
]


async def test_each_malformed_frame_gets_its_error_reply_and_others_are_served(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    room = "chat:bad"
    bystander = await Client.open(server.ws, "bystander")
    await bystander.request("subscribe", room=room)
    publisher = await Client.open(server.ws, "pub")
    offender = await Client.open(server.ws, "offender")
    assert (await offender.request("subscribe", room=room))["ok"]
    for n, (text, code, rid) in enumerate(BAD_FRAMES):
        await offender.conn.send(text)
        reply = await offender.reply(rid)
        assert reply["ok"] is False, text
        assert reply["error"]["code"] == code, text
        assert reply["error"]["message"]
        assert (await publisher.request("publish", room=room, data=n))["ok"]
        assert (await bystander.event())["data"] == n
    assert (await offender.request("ping"))["ok"]  # still connected


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        pytest.param(lambda c: c.conn.send(b"\x00\x01"), 1003, id="binary-1003"),
        pytest.param(lambda c: c.conn.send("x" * 200_000), 1009, id="too-big-1009"),
    ],
)
async def test_protocol_breaches_close_with_their_code_and_others_are_served(
    server_factory: ServerFactory, send: Callable[[Client], Any], expected: int
) -> None:
    server = server_factory()
    bystander = await Client.open(server.ws)
    await bystander.request("subscribe", room="r")
    offender = await Client.open(server.ws)
    await send(offender)
    assert await close_code_of(offender) == expected
    assert (await bystander.request("publish", room="r", data=1))["ok"]
    assert (await bystander.event())["data"] == 1


async def test_repeated_malformed_frames_close_with_3502(server_factory: ServerFactory) -> None:
    server = server_factory(max_bad_frames=5)
    offender = await Client.open(server.ws)
    for _ in range(4):
        await offender.conn.send("garbage")
        assert (await offender.reply(None))["error"]["code"] == "bad_request"
    await offender.conn.send("garbage")
    assert await close_code_of(offender) == 3502


def raw_websocket(port: int) -> socket.socket:
    """A WebSocket that completes the handshake and then never reads or answers pings."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1024)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def send_text(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.sendall(Frame(Opcode.TEXT, json.dumps(obj).encode()).serialize(mask=True, extensions=[]))


async def test_a_dead_peer_is_dropped_and_leaves_presence(server_factory: ServerFactory) -> None:
    server = server_factory(ws_ping_interval=0.3, ws_ping_timeout=0.5)
    room = "chat:dead"
    watcher = await Client.open(server.ws, "watcher")
    await watcher.request("subscribe", room=room)
    dead = raw_websocket(server.port)
    try:
        send_text(dead, {"op": "connect", "id": 0, "name": "ghost"})
        send_text(dead, {"op": "subscribe", "id": 1, "room": room})
        join = await watcher.event("join")
        while join["user"] != "ghost":
            join = await watcher.event("join")
        leave = await watcher.event("leave", timeout=10)
        assert (leave["user"], leave["conn"]) == ("ghost", join["conn"])
        members = (await watcher.request("presence", room=room))["result"]["members"]
        assert [m["user"] for m in members] == ["watcher"]
    finally:
        dead.close()


async def test_sigterm_closes_every_connection_with_3000_and_exits(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    clients = [await Client.open(server.ws) for _ in range(5)]
    for client in clients:
        await client.request("subscribe", room="chat:bye")
    server.process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(close_code_of(c) for c in clients))
    assert codes == [3000] * 5
    # uvicorn re-raises the SIGTERM it captured once shutdown is complete.
    assert await asyncio.to_thread(server.process.wait, 15) in (0, -signal.SIGTERM)
    assert "Traceback" not in server.log()


async def test_a_reader_that_stops_with_no_new_traffic_is_released_by_the_send_watchdog(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(
        outbox_max_bytes=256 * 1024 * 1024, send_timeout=1, slow_close_timeout=1
    )
    room = "feed:watchdog"
    watcher = await Client.open(server.ws, "watcher")
    await watcher.request("subscribe", room=room)
    sock = slow_reader_socket(server.port)
    stalled = await Client.open(server.ws, "stalled", sock=sock, max_queue=1)
    await stalled.request("subscribe", room=room)
    # Enough to block the stalled writer, then silence: the outbox never overflows.
    publisher = await Client.open(server.ws)
    for n in range(120):
        await publisher.request("publish", room=room, data={"n": n, "blob": "x" * 60_000})
    await watcher.messages(120)
    leave = await watcher.event("leave", timeout=15)
    assert leave["user"] == "stalled"
    members = (await watcher.request("presence", room=room))["result"]["members"]
    assert [m["user"] for m in members] == ["watcher"]
    _, code = await read_until_closed(stalled, timeout=15)
    assert code in (None, 3001)  # the close frame may not have fitted before release
