"""A WebSocket connection's writer task runs only while something is queued
(transports/websocket.py ``_Writer``), on a real server with real sockets: replies
and events go out without one, a replay starts one that ends once it is sent, a
reader that stops reading is still evicted, one that pauses and resumes gets every
event once and in order, and the drain still sends what is queued before its 3000.
Through ASGI sends (uvicorn's own protocol) the writer, once started, stays."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from roomcast import Roomcast, Settings
from roomcast.app import create_app
from roomcast.testing import LiveServer, connect

pytestmark = pytest.mark.timeout(60)

BLOB = "x" * 60_000
"""A message large enough that a few fill a paused connection's socket buffers."""


async def writer_tasks() -> list[str]:
    """The writer tasks of the loop this runs on (the server's, through ``acall``)."""
    return sorted(
        name
        for task in asyncio.all_tasks()
        if (name := task.get_name()).startswith("roomcast-writer-") and not task.done()
    )


async def connections(rc: Roomcast) -> int:
    return rc.hub.connections


async def eventually(server: LiveServer, probe: Callable[[], Any], want: Any) -> None:
    """Wait (at most 10 s) until the coroutine ``probe()`` returns ``want`` on the server."""
    async with asyncio.timeout(10):
        while await server.acall(probe()) != want:
            await asyncio.sleep(0.02)


def standalone(settings: Settings) -> FastAPI:
    return create_app(settings)


def mounted(settings: Settings) -> FastAPI:
    rc = Roomcast(settings)
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router)
    return app


def roomcast_of(app: FastAPI) -> Roomcast:
    """The app's Roomcast (its lifespan puts it on the app's state)."""
    rc: Roomcast = app.state.roomcast
    return rc


async def stalled_client(port: int) -> ClientConnection:
    """A client that reads nothing until told: a tiny receive buffer, and a queue
    of one message, so the server's transport pauses after a few large frames."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return await ws_connect(
        f"ws://127.0.0.1:{port}/ws", sock=sock, max_queue=1, compression=None, open_timeout=10
    )


async def request(ws: ClientConnection, rid: int, op: str, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"op": op, "id": rid, **fields}))
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("id") == rid:
            return frame


async def read_until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame until the server's close, and the close code it sent."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(20):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None


@pytest.mark.parametrize("make", [standalone, mounted], ids=["standalone", "mounted"])
async def test_replies_and_events_go_out_with_no_writer_task(
    make: Callable[[Settings], FastAPI],
) -> None:
    app = make(Settings())
    async with (
        LiveServer(app) as server,
        connect(server.ws_url()) as one,
        connect(server.ws_url()) as two,
    ):
        rc = roomcast_of(app)
        for client in (one, two):
            await client.subscribe("chat:lazy")
            assert (await client.request("ping"))["ok"]
        await one.publish("chat:lazy", {"n": 1})
        await server.acall(rc.publish("chat:lazy", {"n": 2}))
        for client in (one, two):
            assert (await client.next_event("message"))["data"] == {"n": 1}
            assert (await client.next_event("message"))["data"] == {"n": 2}
        assert await server.acall(writer_tasks()) == []


async def test_a_replay_starts_a_writer_that_ends_once_the_replay_is_sent() -> None:
    app = standalone(Settings())
    async with LiveServer(app) as server, connect(server.ws_url()) as first:
        rc = roomcast_of(app)
        start = await first.subscribe("feed:replay")
        for n in range(1, 201):
            await server.acall(rc.publish("feed:replay", {"n": n}))
        async with connect(server.ws_url()) as late:
            result = await late.subscribe("feed:replay", since=start)
            assert result["recovered"] is True
            assert result["replayed"] == 200
            events = [await late.next_event("message") for _ in range(200)]
            assert [e["data"]["n"] for e in events] == list(range(1, 201))
            await eventually(server, writer_tasks, [])
            await server.acall(rc.publish("feed:replay", {"n": 201}))  # live: direct again
            assert (await late.next_event("message"))["data"] == {"n": 201}
            assert (await late.request("ping"))["ok"]
            assert await server.acall(writer_tasks()) == []


async def test_a_reader_that_stops_reading_is_evicted_and_the_others_get_everything() -> None:
    app = standalone(Settings(outbox_max_bytes=1024 * 1024, slow_close_timeout=1))
    async with LiveServer(app) as server, connect(server.ws_url()) as bystander:
        rc = roomcast_of(app)
        stalled = await stalled_client(server.port)
        assert (await request(stalled, 1, "subscribe", room="feed:stall"))["ok"]
        await bystander.subscribe("feed:stall")
        assert await server.acall(writer_tasks()) == []

        async def receive(count: int) -> list[int]:
            return [(await bystander.next_event("message"))["data"]["n"] for _ in range(count)]

        received = asyncio.ensure_future(receive(150))
        for n in range(150):  # far past what the stalled socket and its outbox hold
            await server.acall(rc.publish("feed:stall", {"n": n, "blob": BLOB}))
        assert await received == list(range(150))
        await eventually(server, lambda: connections(rc), 1)  # the stalled one released
        await eventually(server, writer_tasks, [])
        frames, code = await read_until_closed(stalled)
        assert code in (None, 3001)  # the close may not have fitted before the release
        assert len([f for f in frames if f.get("type") == "message"]) < 150
        await server.acall(rc.publish("feed:stall", {"n": "after"}))
        assert (await bystander.next_event("message"))["data"] == {"n": "after"}


async def test_the_drain_closes_idle_connections_3000_with_no_writer_task() -> None:
    app = standalone(Settings())
    async with LiveServer(app) as server:
        rc = roomcast_of(app)
        clients = [await connect(server.ws_url()) for _ in range(3)]
        for client in clients:
            await client.subscribe("chat:drain")
        assert await server.acall(writer_tasks()) == []
        assert await server.acall(rc.drain()) is True
        assert [await client.closed() for client in clients] == [3000] * 3


async def test_the_drain_sends_what_is_queued_then_3000() -> None:
    app = standalone(Settings(drain_timeout=20, outbox_max_bytes=64 * 1024 * 1024))
    async with LiveServer(app) as server:
        rc = roomcast_of(app)
        paused = await stalled_client(server.port)
        assert (await request(paused, 1, "subscribe", room="feed:queued"))["ok"]
        for n in range(150):  # past the socket buffers: the transport pauses, frames queue
            await server.acall(rc.publish("feed:queued", {"n": n, "blob": BLOB}))
        assert len(await server.acall(writer_tasks())) == 1  # blocked on the paused socket

        drain = asyncio.ensure_future(server.acall(rc.drain(), timeout=30))
        frames, code = await read_until_closed(paused)
        assert [f["data"]["n"] for f in frames if f.get("type") == "message"] == list(range(150))
        assert code == 3000
        assert await drain is True
        assert await server.acall(writer_tasks()) == []


async def test_through_asgi_sends_the_writer_starts_at_the_first_frame_and_stays() -> None:
    app = mounted(Settings())
    async with LiveServer(app, ws="websockets-sansio") as server:
        rc = roomcast_of(app)
        async with connect(server.ws_url()) as client:
            assert await server.acall(writer_tasks()) == []
            await client.subscribe("chat:asgi")
            await server.acall(rc.publish("chat:asgi", {"n": 1}))
            assert (await client.next_event("message"))["data"] == {"n": 1}
            assert len(await server.acall(writer_tasks())) == 1
            assert (await client.request("ping"))["ok"]
        await eventually(server, writer_tasks, [])


@pytest.mark.parametrize("make", [standalone, mounted], ids=["standalone", "mounted"])
async def test_a_reader_that_pauses_and_resumes_gets_every_event_once_in_order(
    make: Callable[[Settings], FastAPI],
) -> None:
    """Events written directly, then queued while the connection is paused, then
    direct again (the room's fan-out reuses the transports it recorded only while
    no subscriber's sink changed: hub/audience.py): the reader gets each once, in
    order, and so does everyone else."""
    app = make(Settings(outbox_max_bytes=64 * 1024 * 1024, outbox_max_messages=10_000))
    async with LiveServer(app) as server, connect(server.ws_url()) as bystander:
        rc = roomcast_of(app)
        paused = await stalled_client(server.port)
        assert (await request(paused, 1, "subscribe", room="feed:pause"))["ok"]
        await bystander.subscribe("feed:pause")

        async def publish(first: int, count: int, blob: str = "") -> None:
            for n in range(first, first + count):
                await server.acall(rc.publish("feed:pause", {"n": n, "blob": blob}))

        async def receive(count: int) -> list[int]:
            return [(await bystander.next_event("message"))["data"]["n"] for _ in range(count)]

        await publish(0, 5)  # written directly, the room's transports recorded
        sent = 5
        while not await server.acall(writer_tasks()):  # until its writer runs: the
            assert sent < 400  # socket's buffers are full and the outbox took over
            await publish(sent, 1, BLOB)
            sent += 1
        await publish(sent, 5)  # behind the queue
        total = sent + 5
        received = asyncio.ensure_future(receive(total + 5))

        async def read_paused(frames: list[int], upto: int) -> None:
            async with asyncio.timeout(20):
                while len(frames) < upto:
                    frame = json.loads(await paused.recv())
                    if frame.get("type") == "message":
                        frames.append(frame["data"]["n"])

        frames: list[int] = []
        await read_paused(frames, total)
        assert frames == list(range(total))
        await eventually(server, writer_tasks, [])  # caught up: written directly again
        await publish(total, 5)
        await read_paused(frames, total + 5)
        assert frames == list(range(total + 5))
        assert await received == list(range(total + 5))
        await paused.close()
