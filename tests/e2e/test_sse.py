"""Acceptance: Server-Sent Events against a real uvicorn, with a streaming client."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
from collections.abc import Callable
from typing import Any

import httpx
import httpx_sse
import pytest

from ..conftest import ServerProcess
from .client import Client, slow_reader_socket
from .sse_client import open_stream

pytestmark = pytest.mark.e2e

ServerFactory = Callable[..., ServerProcess]


async def test_live_events_carry_epoch_offset_ids_after_a_subscribed_event(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    room = "feed:live"
    async with open_stream(f"{server.http}/rooms/{room}/events", name="dash") as stream:
        response = stream.response
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-store"
        first = await stream.next()
        assert first.event == "subscribed"
        assert first.data["room"] == room
        assert first.id == f"{first.data['epoch']}:0"
        assert stream.retry == 2000
        assert (await stream.until("join")).data["user"] == "dash"
        publisher = await Client.open(server.ws, "pub")
        for n in range(3):
            await publisher.request("publish", room=room, data={"n": n})
        got = await stream.messages(3)
        assert [e.id for e in got] == [f"{first.data['epoch']}:{o}" for o in (1, 2, 3)]
        assert [e.data["data"]["n"] for e in got] == [0, 1, 2]
        assert got[0].data["sender"] == "pub"


async def first_block(url: str, **params: Any) -> str:
    """The text of a stream's first block (up to its blank line), read raw."""
    text = ""
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", url, params=params) as response,
        asyncio.timeout(10),
    ):
        async for chunk in response.aiter_text():
            text += chunk
            if "\n\n" in text:
                return text.partition("\n\n")[0]
    raise AssertionError(f"the stream ended before its first block: {text!r}")


async def test_retry_is_a_field_of_the_first_event_not_a_block_of_its_own(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(presence="false", sse_retry_ms=1500)
    one = (await first_block(f"{server.http}/rooms/feed:retry/events")).split("\n")
    assert one[0] == "retry: 1500"
    assert one[1] == "event: subscribed"
    several = await first_block(f"{server.http}/events", room=["a", "b"])
    assert several.startswith("retry: 1500\nevent: subscribed\nid: a=")
    # An SSE client library sees the subscribed event first, with the retry, and no
    # empty message before it.
    async with (
        httpx.AsyncClient(timeout=10) as client,
        httpx_sse.aconnect_sse(client, "GET", f"{server.http}/rooms/feed:retry/events") as source,
        asyncio.timeout(10),
    ):
        events = source.aiter_sse()
        first = await anext(events)
        await events.aclose()
    assert first.event == "subscribed"
    assert first.retry == 1500
    assert json.loads(first.data)["room"] == "feed:retry"


async def test_last_event_id_resumes_with_no_gap_and_no_duplicate_while_others_publish(
    server_factory: ServerFactory,
) -> None:
    # Each resume replays from where the last stream stopped reading, far behind the
    # publisher: the history must hold all of it, however fast the publisher runs.
    server = server_factory(presence="false", history_size=1_000_000)
    room = "feed:resume"
    url = f"{server.http}/rooms/{room}/events"
    publisher = await Client.open(server.ws)
    stop = asyncio.Event()
    acked: list[int] = []

    async def publish() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            acked.append(
                (await publisher.request("publish", room=room, data=n))["result"]["offset"]
            )

    pump = asyncio.create_task(publish())
    seen: list[int] = []
    last_id = None
    for _ in range(4):  # connect, read a little, drop, resume from the last id
        async with open_stream(url, last_event_id=last_id) as stream:
            subscribed = await stream.next()
            assert subscribed.event == "subscribed"
            if last_id is not None:
                assert subscribed.data["recovered"] is True
                assert subscribed.id == last_id
            for event in await stream.messages(15):
                seen.append(event.data["offset"])
            last_id = stream.last_id
        await asyncio.sleep(0.05)  # miss some while disconnected
    stop.set()
    await pump
    async with open_stream(url, last_event_id=last_id) as stream:
        assert (await stream.next()).data["recovered"] is True
        while not seen or seen[-1] < acked[-1]:
            seen.append((await stream.until("message")).data["offset"])
    assert seen == list(range(seen[0], acked[-1] + 1)), "gap or duplicate"


async def test_one_stream_of_several_rooms_resumes_them_all(server_factory: ServerFactory) -> None:
    server = server_factory(presence="false")
    publisher = await Client.open(server.ws)
    url = f"{server.http}/events"
    async with open_stream(url, room=["a", "b:x"]) as stream:
        assert {(await stream.next()).data["room"] for _ in range(2)} == {"a", "b:x"}
        await publisher.request("publish", room="a", data=1)
        await publisher.request("publish", room="b:x", data=2)
        await stream.messages(2)
        last_id = stream.last_id
    assert last_id is not None
    assert last_id.startswith("a=")
    assert ";b:x=" in last_id
    for room, n in (("a", 3), ("b:x", 4), ("a", 5)):
        await publisher.request("publish", room=room, data=n)
    async with open_stream(url, last_event_id=last_id, room=["a", "b:x"]) as stream:
        events = [await stream.next() for _ in range(5)]  # each room: subscribed, replay
    subscribed = [e for e in events if e.event == "subscribed"]
    assert [(s.data["room"], s.data["recovered"]) for s in subscribed] == [
        ("a", True),
        ("b:x", True),
    ]
    got = [e for e in events if e.event == "message"]
    assert sorted(e.data["data"] for e in got) == [3, 4, 5]
    assert [e.data["offset"] for e in got if e.data["room"] == "a"] == [2, 3]


async def test_a_websocket_and_an_sse_client_see_the_same_events_and_ids(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(presence="false")
    room = "chat:both"
    ws = await Client.open(server.ws)
    await ws.request("subscribe", room=room)
    async with open_stream(f"{server.http}/rooms/{room}/events") as stream:
        await stream.next()
        for n in range(5):
            await ws.request("publish", room=room, data=n)
        over_sse = await stream.messages(5)
    over_ws = await ws.messages(5)
    assert [e.data for e in over_sse] == over_ws
    assert [e.id for e in over_sse] == [f"{m['epoch']}:{m['offset']}" for m in over_ws]


async def test_bad_stream_requests_get_clear_errors(server_factory: ServerFactory) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        bad_id = await http.get("/rooms/r/events", headers={"Last-Event-ID": "nonsense"})
        assert bad_id.status_code == 400
        assert "not a position" in bad_id.json()["detail"]
        bad_room = await http.get("/rooms/bad room/events")
        assert bad_room.status_code == 422
        no_room = await http.get("/events")
        assert no_room.status_code == 422
        several = await http.get("/events", params={"room": ["a", "b"], "last_event_id": "e:1"})
        assert several.status_code == 400


async def test_a_stalled_sse_reader_is_evicted_and_others_keep_receiving(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(
        outbox_max_bytes=1024 * 1024, send_timeout=1, slow_close_timeout=1, presence="true"
    )
    room = "feed:stall"
    watcher = await Client.open(server.ws, "watcher")
    await watcher.request("subscribe", room=room)
    stalled = slow_reader_socket(server.port)
    stalled.sendall(f"GET /rooms/{room}/events?name=stalled HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        while (await watcher.event("join"))["user"] != "stalled":
            pass
        publisher = await Client.open(server.ws)
        reader = asyncio.create_task(watcher.messages(150, timeout=20))
        for n in range(150):
            await publisher.request("publish", room=room, data={"n": n, "blob": "x" * 60_000})
        assert [m["offset"] for m in await reader] == list(range(1, 151))
        leave = await watcher.event("leave", timeout=20)
        assert leave["user"] == "stalled"
    finally:
        stalled.close()


async def test_sigterm_ends_streams_with_a_close_event(server_factory: ServerFactory) -> None:
    server = server_factory()
    async with open_stream(f"{server.http}/rooms/r/events") as stream:
        await stream.next()
        server.process.send_signal(signal.SIGTERM)
        close = await stream.until("close")
        assert close.data == {"code": 3000, "reason": "server shutdown"}
        with pytest.raises((EOFError, httpx.HTTPError)):
            await stream.next(timeout=5)
    assert await asyncio.to_thread(server.process.wait, 15) in (0, -signal.SIGTERM)
